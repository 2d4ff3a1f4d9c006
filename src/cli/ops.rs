//! The arguments of the operations commands: the Manager Interface audit, `watch`, the
//! firewall and the FreePBX whitelist.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use super::values::{duration, port_range, positive_duration};
use super::DnsArgs;

/// Where the Manager Interface is.
#[derive(Debug, Args)]
pub(crate) struct AmiArgs {
    /// The AMI: `ami://user:secret@127.0.0.1:5038` (the secret may come from
    /// --ami-secret-file instead). Never printed.
    #[arg(
        long,
        env = "IPCOUNTRY_AMI",
        hide_env_values = true,
        hide_default_value = true
    )]
    pub(crate) ami: Option<String>,
    /// Read the AMI secret from this file (its first line), instead of the URL.
    #[arg(long, value_name = "FILE")]
    pub(crate) ami_secret_file: Option<PathBuf>,
    /// Deadline for connecting and for each message from Asterisk.
    #[arg(long, default_value = "5s", value_parser = positive_duration)]
    pub(crate) ami_timeout: Duration,
}

/// `audit`.
#[derive(Debug, Args)]
pub(crate) struct AuditArgs {
    /// The Manager Interface.
    #[command(flatten)]
    pub(crate) ami: AmiArgs,
    /// Read `asterisk -rx 'pjsip show contacts'` (pjsip) or `'sip show peers'` (sip) output
    /// from stdin instead of asking the AMI.
    #[arg(long, value_enum, value_name = "FORMAT")]
    pub(crate) from_cli: Option<CliFormat>,
    /// How host names in contact URIs are resolved.
    #[command(flatten)]
    pub(crate) dns: DnsArgs,
}

/// `--from-cli`: which command's text is on stdin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum CliFormat {
    /// `pjsip show contacts`.
    Pjsip,
    /// `sip show peers`.
    Sip,
}

/// `watch`.
#[derive(Debug, Args)]
pub(crate) struct WatchArgs {
    /// The Manager Interface.
    #[command(flatten)]
    pub(crate) ami: AmiArgs,
    /// Time between audits.
    #[arg(long, default_value = "60s", value_parser = positive_duration)]
    pub(crate) every: Duration,
    /// One audit, then exit (for a systemd timer or cron): exit 0 all ok, 1 any ko.
    #[arg(long)]
    pub(crate) once: bool,
    /// Add the address of a new ko peer to the deny table, expiring after --block-for, with
    /// the note `watch:<peer>`.
    #[arg(long)]
    pub(crate) block: bool,
    /// How long a --block entry lasts.
    #[arg(long, default_value = "1d", value_parser = positive_duration)]
    pub(crate) block_for: Duration,
    /// With --block, also put the address in the kernel's strangers set (table inet
    /// ipcountry, loaded by `firewall --apply` or `serve --firewall`) for --block-for: dropped
    /// on the VoIP ports at once. Needs CAP_NET_ADMIN; a failure is logged, the deny stays.
    #[arg(long, requires = "block")]
    pub(crate) block_kernel: bool,
    /// Run this shell command for each new ko peer or registration drift, with one JSON event
    /// on its stdin (the `serve --on-stranger` format); deduplicated per peer and address.
    #[arg(long, value_name = "CMD")]
    pub(crate) on_stranger: Option<String>,
    /// One alert per peer and address within this window.
    #[arg(long, default_value = "10m", value_parser = duration)]
    pub(crate) alert_dedup: Duration,
    /// At most this many alert commands a minute.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..))]
    pub(crate) alert_rate: u32,
    /// How host names in contact URIs are resolved.
    #[command(flatten)]
    pub(crate) dns: DnsArgs,
}

/// `firewall`.
#[derive(Debug, Args)]
pub(crate) struct FirewallArgs {
    /// What to print: an `nft -f` file, `ipset restore` input, or `iptables-restore
    /// --noflush` / `ip6tables-restore --noflush` input.
    #[arg(long, value_enum, default_value_t = FirewallFormat::Nft)]
    pub(crate) format: FirewallFormat,
    /// Check the nftables table (`nft -c`), save the current one, and load the new one in one
    /// transaction; prints the rollback command.
    #[arg(long, conflicts_with = "rollback")]
    pub(crate) apply: bool,
    /// Load the newest saved table back (and mark that backup used).
    #[arg(long)]
    pub(crate) rollback: bool,
    /// Ports and state directory.
    #[command(flatten)]
    pub(crate) kernel: FirewallOpts,
}

/// `--format` of `firewall`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum FirewallFormat {
    /// `table inet ipcountry` for `nft -f`.
    Nft,
    /// `hash:net` sets for `ipset restore`.
    Ipset,
    /// The IPv4 chains for `iptables-restore --noflush`.
    Iptables,
    /// The IPv6 chains for `ip6tables-restore --noflush`.
    Ip6tables,
}

/// The firewall's settings shared by `firewall` and `serve --firewall`.
#[derive(Debug, Args)]
pub(crate) struct FirewallOpts {
    /// A VoIP port range the chain filters (repeatable; replaces the defaults): `udp/5060-5061`,
    /// `tcp/5061`. Every other port is left alone.
    #[arg(
        long = "voip-port",
        value_name = "PROTO/PORTS",
        default_values = ipcountry::firewall::DEFAULT_PORTS,
        value_parser = port_range
    )]
    pub(crate) voip_port: Vec<ipcountry::firewall::PortRange>,
    /// Where the applied ruleset and the backups of the table are kept.
    #[arg(
        long,
        env = "IPCOUNTRY_STATE_DIR",
        default_value = "/var/lib/ipcountry"
    )]
    pub(crate) state_dir: PathBuf,
}

/// `whitelist-gen`.
#[derive(Debug, Args)]
pub(crate) struct WhitelistArgs {
    /// FreePBX's database: `mysql://freepbxuser:PASSWORD@localhost/asterisk` (read only; the
    /// password is never printed). Prefer the variable to the flag, which `ps` shows.
    #[arg(long, env = "IPCOUNTRY_FREEPBX_DB", hide_env_values = true)]
    pub(crate) freepbx: String,
    /// Also permit the address this SSH session comes from (`SSH_CONNECTION`).
    #[arg(long)]
    pub(crate) permit_ssh_client: bool,
    /// Also permit this server's own address (the source address of its default route).
    #[arg(long)]
    pub(crate) permit_self: bool,
    /// Remove the `freepbx:` rules no trunk or extension names any more.
    #[arg(long)]
    pub(crate) prune: bool,
    /// Show what would be added, write nothing.
    #[arg(long)]
    pub(crate) dry_run: bool,
}
