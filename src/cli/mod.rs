//! The command line (clap derive): raw arguments only, each checked as it is parsed (a zero
//! deadline, a session cap out of range or an unknown flag is refused before anything starts).
//! The library's settings types know nothing of clap: [`TrustArg`] and [`ReplyArg`] map onto
//! them here. `main.rs` runs the command. Here: the commands and the rule, country and host
//! actions; `serve.rs`: screening, serving and the knock page; `ops.rs`: audit, watch,
//! firewall and whitelist; `values.rs`: the value parsers.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

mod ops;
mod serve;
mod values;

pub(crate) use ops::*;
pub(crate) use serve::*;
use values::positive_duration;

/// Screen inbound Asterisk/FreePBX calls by the caller's IP address.
#[derive(Debug, Parser)]
#[command(name = "ipcountry", version, about, long_about = None)]
pub(crate) struct Cli {
    /// The configuration file (default: /etc/ipcountry/ipcountry.toml when it exists); flags
    /// and IPCOUNTRY_* variables override it.
    #[arg(long, global = true, value_name = "FILE")]
    pub(crate) config: Option<PathBuf>,
    /// Database URL or SQLite file path: `sqlite://ipcountry.db`, `./ipcountry.db`,
    /// `mysql://user:password@host/db` (or `mariadb://`), `postgres://user:password@host/db`.
    #[arg(
        long,
        global = true,
        env = "IPCOUNTRY_DB",
        hide_env_values = true,
        default_value = "sqlite://ipcountry.db"
    )]
    pub(crate) db: String,
    /// Machine-readable JSON output instead of human text.
    #[arg(long, global = true)]
    pub(crate) json: bool,
    /// Log lines as text or as one JSON object per line.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub(crate) log_format: LogFormat,
    /// Do not permit private and local address space (RFC 1918, loopback, link-local, ...) by default.
    #[arg(long, global = true)]
    pub(crate) no_builtins: bool,
    /// The command.
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Run the FastAGI server (default 127.0.0.1:4573).
    Serve(Box<ServeArgs>),
    /// Screen one call as a plain AGI over stdin/stdout: `AGI(ipcountry,agi,${SRC},${FROM})`.
    Agi(AgiArgs),
    /// Show the verdict a call would get: a source address, and the From header if any
    /// (exit 0 permitted, 1 denied or stranger, 2 error).
    Check(CheckArgs),
    /// Print the integer value of IP addresses (or the address of an integer).
    Ip {
        /// One or two IP addresses or integers.
        #[arg(required = true, num_args = 1..=2)]
        values: Vec<String>,
    },
    /// Manage the permit table.
    Permit {
        #[command(subcommand)]
        action: RuleAction,
    },
    /// Manage the deny table (deny beats permit).
    Deny {
        #[command(subcommand)]
        action: RuleAction,
    },
    /// Manage host names permitted by name (`sipgate.com`, `*.example.com`).
    AllowHost {
        #[command(subcommand)]
        action: HostAction,
    },
    /// Load a country catalog (.mmdb, GeoLite2 CSV, or start,end,country CSV). Changes no
    /// verdict, except that permitted countries' rules follow the new catalog (as `refresh`).
    Import(ImportArgs),
    /// List the catalog's countries: code, name, IPv4/IPv6 range counts, permitted or not.
    Countries,
    /// Permit countries of the catalog (their ranges become `geolite` permit rules), or stop.
    Country {
        #[command(subcommand)]
        action: CountryAction,
    },
    /// Replace the catalog and regenerate the permitted countries' rules in one transaction;
    /// custom permit entries and the deny table are untouched.
    Refresh {
        /// The files to read.
        #[command(flatten)]
        import: ImportArgs,
        /// Show the per-country changes without writing anything.
        #[arg(long)]
        dry_run: bool,
    },
    /// Catalog source and build date, table counts, generation, compiled snapshot memory.
    Status,
    /// Delete the permit and deny rules and allowed hosts that have expired (`--for`).
    Purge,
    /// The configuration file: `config check` validates it and shows the effective settings.
    Config {
        #[command(subcommand)]
        action: ConfigAction,
    },
    /// Write the man page and the shell completions into DIR (for packaging).
    #[command(hide = true)]
    GenerateAssets {
        /// Where to write `ipcountry.1` and the bash, zsh and fish completions.
        dir: PathBuf,
    },
    /// List every registered SIP/IAX peer with its address and the verdict a call from it
    /// would get (exit 0 all ok, 1 any ko, 2 error).
    Audit(AuditArgs),
    /// Audit the peers every interval (or `--once`), remember their addresses, and alert on a
    /// new ko peer or a peer that registers from another country.
    Watch(WatchArgs),
    /// The policy in the kernel: an nftables table (or ipset + iptables input) whose chain
    /// filters the VoIP ports only; printed, applied (`--apply`) or rolled back.
    Firewall(FirewallArgs),
    /// Permit the hosts of FreePBX's trunks and extensions, read from its database (rules noted
    /// `freepbx:trunk:NAME`, `freepbx:extension:N`); idempotent.
    WhitelistGen(WhitelistArgs),
    /// Users of the knock page (`serve --knock`): `add` and `rotate` print a token once.
    KnockUser {
        #[command(subcommand)]
        action: KnockUserAction,
    },
    /// Make running servers reload the tables now (exit 1 when no server answered).
    Reload {
        /// A server to poke directly (besides bumping the store's generation).
        #[arg(long, default_value = "127.0.0.1:4573")]
        server: SocketAddr,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum RuleAction {
    /// Add a range: an IP, a CIDR, `A-B`, or two integers.
    Add {
        /// `203.0.113.0/24`, `203.0.113.66`, `203.0.113.10-203.0.113.20`, or `3405803776 3405804031`.
        #[arg(required = true, num_args = 1..=2)]
        range: Vec<String>,
        /// A note shown in listings and logs.
        #[arg(long, default_value = "")]
        note: String,
        /// Stop matching after this long (`7d`, `12h`, `30m`); listed as expired until
        /// `ipcountry purge` removes it.
        #[arg(long = "for", value_name = "DURATION", value_parser = positive_duration)]
        lasts: Option<Duration>,
        /// Log calls the rule matches as if it decided them, and decide nothing: to try a rule
        /// before enforcing it.
        #[arg(long)]
        shadow: bool,
    },
    /// Remove a rule by id (`12`, `#12`) or by its exact range.
    Rm {
        /// The rule id or range.
        what: String,
    },
    /// List the rules.
    List,
}

#[derive(Debug, Subcommand)]
pub(crate) enum ConfigAction {
    /// Validate the configuration (`--config FILE`, or the default file) and print the
    /// settings `serve` would run with, each with where it came from.
    Check,
}

#[derive(Debug, Subcommand)]
pub(crate) enum CountryAction {
    /// Permit countries: `country add US CA` (codes as listed by `ipcountry countries`).
    Add {
        /// Two-letter country codes (case-insensitive).
        #[arg(required = true)]
        codes: Vec<String>,
    },
    /// Stop permitting countries; their `geolite` rules go, custom entries stay.
    Rm {
        /// Two-letter country codes (case-insensitive).
        #[arg(required = true)]
        codes: Vec<String>,
    },
}

/// The files of a catalog and how to read them (`import`, `refresh`).
#[derive(Debug, Args)]
pub(crate) struct ImportArgs {
    /// A `.mmdb`, the GeoLite2 CSV files (Blocks-IPv4, Blocks-IPv6, Locations-en), or range
    /// CSVs (`start,end,country_code`, optionally `.gz`). The format is detected.
    #[arg(required = true, value_name = "FILE")]
    pub(crate) files: Vec<PathBuf>,
    /// Which GeoIP2 field gives a network's country.
    #[arg(long, value_enum, default_value_t = CountryFieldArg::CountryThenRegistered)]
    pub(crate) country_field: CountryFieldArg,
}

/// `--country-field`: which GeoIP2 field gives a network's country.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum CountryFieldArg {
    /// `country.iso_code` only (networks without it are skipped).
    Country,
    /// `registered_country.iso_code` only.
    Registered,
    /// `country.iso_code`, else `registered_country.iso_code`.
    CountryThenRegistered,
}

#[derive(Debug, Subcommand)]
pub(crate) enum HostAction {
    /// Permit a host name or a `*.domain` wildcard.
    Add {
        /// `sipgate.com` or `*.example.com`.
        pattern: String,
        /// A note shown in listings.
        #[arg(long, default_value = "")]
        note: String,
        /// Stop matching after this long (`7d`, `12h`); listed as expired until `ipcountry
        /// purge` removes it.
        #[arg(long = "for", value_name = "DURATION", value_parser = positive_duration)]
        lasts: Option<Duration>,
    },
    /// Remove a host pattern (by pattern or id).
    Rm {
        /// The pattern or id.
        what: String,
    },
    /// List the host patterns.
    List,
}

/// `--log-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum LogFormat {
    /// `2026-12-01T21:37:22Z  INFO ipcountry::session: screened call uniqueid=…`
    Text,
    /// One JSON object per line (`{"timestamp":…,"level":"INFO","fields":{…}}`).
    Json,
}

/// Where `--db` points, for messages: a SQLite file as a path (`sqlite://x.db` → `x.db`), a
/// server URL without its password.
pub(crate) fn db_display(url: &str) -> PathBuf {
    PathBuf::from(ipcountry::store::redact_url(
        url.strip_prefix("sqlite://").unwrap_or(url),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn misspelt_flags_and_stray_arguments_are_refused() {
        use clap::Parser as _;
        for args in [
            &["ipcountry", "serve", "--lisen", "0.0.0.0:4573"][..],
            &["ipcountry", "serve", "extra"],
            &["ipcountry", "serve", "--trust", "sorce"],
            &["ipcountry", "serve", "--poll", "0"],
            &["ipcountry", "serve", "--env-timeout", "0s"],
            &["ipcountry", "serve", "--reply-timeout", "0"],
            &["ipcountry", "serve", "--max-sessions", "0"],
            &["ipcountry", "serve", "--max-sessions", "99999999999"],
            &["ipcountry", "serve", "--db-pool", "0"],
            &["ipcountry", "serve", "--db-timeout", "0s"],
            &["ipcountry", "check", "198.51.100.9", "<sip:a@b.c>", "stray"],
            &["ipcountry", "check", "198.51.100.9", "--sorce", "x"],
        ] {
            assert!(Cli::try_parse_from(args).is_err(), "{args:?} was accepted");
        }
        // `agi` takes what Asterisk appends, flags included, once the source is there.
        let cli = Cli::try_parse_from([
            "ipcountry",
            "agi",
            "--trust",
            "source",
            "198.51.100.9",
            "--trust=from",
            "<sip:a@b.c>",
        ])
        .expect("agi args");
        let Command::Agi(agi) = cli.command else {
            panic!("not agi");
        };
        assert_eq!(agi.screen.trust, TrustArg::Source);
        assert_eq!(agi.call, ["198.51.100.9", "--trust=from", "<sip:a@b.c>"]);
    }

    #[test]
    fn cli_is_well_formed() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
