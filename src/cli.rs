//! The command line (clap derive): raw arguments only, each checked as it is parsed (a zero
//! deadline, a session cap out of range or an unknown flag is refused before anything starts).
//! The library's settings types know nothing of clap: [`TrustArg`] and [`ReplyArg`] map onto
//! them here. `main.rs` runs the command.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use ipcountry::decision::Trust;
use ipcountry::server::MAX_SESSIONS;
use ipcountry::session::ReplyMode;
use ipcountry::store::MAX_HEARTBEAT;

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

/// `--trust`: which addresses of a call are checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum TrustArg {
    /// The signalling source and the From host; a stranger if either is.
    Both,
    /// The signalling source only.
    Source,
    /// The From host only (forgeable: anyone can write a permitted address into a From).
    From,
}

impl From<TrustArg> for Trust {
    fn from(t: TrustArg) -> Trust {
        match t {
            TrustArg::Both => Trust::Both,
            TrustArg::Source => Trust::Source,
            TrustArg::From => Trust::From,
        }
    }
}

/// `--reply`: how the verdict is written back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum ReplyArg {
    /// One `EXEC MSet` (one round trip; commas, double quotes and backslashes in the reason
    /// become `;`, `'` and `/`).
    Mset,
    /// Three `SET VARIABLE`s (three round trips; the reason arrives as it is).
    SetVariable,
}

impl From<ReplyArg> for ReplyMode {
    fn from(r: ReplyArg) -> ReplyMode {
        match r {
            ReplyArg::SetVariable => ReplyMode::SetVariable,
            ReplyArg::Mset => ReplyMode::MSet,
        }
    }
}

/// Hostname resolution, shared by everything that screens or checks.
#[derive(Debug, Args)]
pub(crate) struct DnsArgs {
    /// Deadline for resolving a From hostname.
    #[arg(long, default_value = "500ms", value_parser = positive_duration)]
    pub(crate) dns_timeout: Duration,
    /// How long a failed or timed-out lookup is remembered (0 s: not at all).
    #[arg(long, default_value = "30s", value_parser = duration)]
    pub(crate) dns_failure_ttl: Duration,
    /// Ask this DNS server (ip:port) instead of the system resolver.
    #[arg(long)]
    pub(crate) dns_server: Option<SocketAddr>,
}

/// Settings shared by everything that screens (serve, agi).
#[derive(Debug, Args)]
pub(crate) struct ScreenArgs {
    /// Which addresses to check: the signalling source, the From host, or both.
    #[arg(long, value_enum, default_value_t = TrustArg::Both)]
    pub(crate) trust: TrustArg,
    /// How From hostnames are resolved.
    #[command(flatten)]
    pub(crate) dns: DnsArgs,
}

/// `agi`: plain AGI, whose arguments come on the command line.
#[derive(Debug, Args)]
pub(crate) struct AgiArgs {
    /// Screening settings (before the call's arguments).
    #[command(flatten)]
    pub(crate) screen: ScreenArgs,
    /// What the dialplan passes after `agi`: the source address, then the From header (as
    /// many arguments as Asterisk split it into). Everything from the first one on is taken
    /// as it is, flags included: the From is written by the caller.
    #[arg(
        value_name = "SOURCE [FROM]...",
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    pub(crate) call: Vec<String>,
}

#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// Address to listen on; repeat for several (IPv6: `[::1]:4573`).
    #[arg(long = "listen", default_value = "127.0.0.1:4573")]
    pub(crate) listen: Vec<SocketAddr>,
    /// Calls handled at once; more connections wait in the backlog.
    #[arg(long, default_value_t = 1024, value_parser = max_sessions)]
    pub(crate) max_sessions: usize,
    /// How often to check the store for changes.
    #[arg(long, default_value = "5s", value_parser = positive_duration)]
    pub(crate) poll: Duration,
    /// How often the server rewrites its row in the database's `server` table (what
    /// `ipcountry status` lists); also at the first --poll after it loaded a new generation.
    /// At most 30s, since a row older than 90s counts as a server that is gone.
    #[arg(long, default_value = "30s", value_parser = heartbeat)]
    pub(crate) heartbeat: Duration,
    /// Time calls in flight get to finish on SIGINT/SIGTERM.
    #[arg(long, default_value = "5s", value_parser = duration)]
    pub(crate) grace: Duration,
    /// Deadline for the AGI environment block.
    #[arg(long, default_value = "1s", value_parser = positive_duration)]
    pub(crate) env_timeout: Duration,
    /// Deadline for each reply from Asterisk.
    #[arg(long, default_value = "2s", value_parser = positive_duration)]
    pub(crate) reply_timeout: Duration,
    /// How the verdict is written back: one `EXEC MSet` (one round trip; commas, double quotes
    /// and backslashes in the reason become `;`, `'` and `/`), or three `SET VARIABLE`s.
    #[arg(long, value_enum, default_value_t = ReplyArg::Mset)]
    pub(crate) reply: ReplyArg,
    /// Async runtime: one single-threaded runtime per worker thread (`per-core`), or tokio's
    /// work-stealing `multi-thread` runtime.
    #[arg(long, value_enum, default_value_t = Runtime::PerCore)]
    pub(crate) runtime: Runtime,
    /// Worker threads, each with its own listening socket (`SO_REUSEPORT`): 1 by default, to
    /// leave the other cores to Asterisk; 0 for one per CPU.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(0..=1024))]
    pub(crate) threads: u16,
    /// Peers that may connect besides loopback ones (CIDR, repeatable). FastAGI has no
    /// authentication, so listening off loopback requires it; other peers are closed at once.
    #[arg(long = "allow-client", value_name = "CIDR", value_parser = cidr)]
    pub(crate) allow_client: Vec<ipnet::IpNet>,
    /// Decide and log every call as usual, but let every caller through (`STRANGER=false`,
    /// with `IPCOUNTRY_VERDICT` the real verdict): watch before enforcing.
    #[arg(long)]
    pub(crate) monitor: bool,
    /// Serve Prometheus metrics at `http://ADDR/metrics` and a health check at `/healthz`
    /// (off by default; `--metrics` alone: 127.0.0.1:9573).
    #[arg(long, value_name = "ADDR", num_args = 0..=1, default_missing_value = "127.0.0.1:9573")]
    pub(crate) metrics: Option<SocketAddr>,
    /// Run this shell command (`/bin/sh -c`) for each caller not let through, with one JSON
    /// event on its stdin (time, uniqueid, callerid, from, source, verdict, reason, rule,
    /// country); deduplicated per source address and rate-limited, never slowing a call.
    #[arg(long, value_name = "CMD")]
    pub(crate) on_stranger: Option<String>,
    /// One alert per source address within this window.
    #[arg(long, default_value = "10m", value_parser = duration)]
    pub(crate) alert_dedup: Duration,
    /// At most this many alert commands a minute.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..))]
    pub(crate) alert_rate: u32,
    /// `/healthz` answers 200 while the snapshot was loaded or found current within this.
    #[arg(long, default_value = "60s", value_parser = positive_duration)]
    pub(crate) healthz_max_age: Duration,
    /// Screening settings.
    #[command(flatten)]
    pub(crate) screen: ScreenArgs,
    /// Database connections and the snapshot cache.
    #[command(flatten)]
    pub(crate) store: StoreArgs,
    /// Keep the nftables table `inet ipcountry` in step with every snapshot (`firewall
    /// --apply` at each change; needs CAP_NET_ADMIN). Off by default.
    #[arg(long)]
    pub(crate) firewall: bool,
    /// The firewall's ports and state directory.
    #[command(flatten)]
    pub(crate) kernel: FirewallOpts,
    /// The knock page.
    #[command(flatten)]
    pub(crate) knock: KnockArgs,
}

/// `knock-user`: the knock page's users.
#[derive(Debug, Subcommand)]
pub(crate) enum KnockUserAction {
    /// Add a user and print their token, once (only a hash of it is stored).
    Add {
        /// The name the token starts with (a-z, 0-9, '-', '_').
        name: String,
        /// How long a knock's permit entry lasts.
        #[arg(long, default_value = "12h", value_parser = knock_ttl)]
        ttl: Duration,
    },
    /// List the users and their live knock entries.
    List,
    /// Remove a user, and the permit entries their knocks added.
    Rm {
        /// The user.
        name: String,
    },
    /// Give a user a new token (printed once); the old one stops working at once.
    Rotate {
        /// The user.
        name: String,
    },
}

/// `serve`'s knock page (issue 16): a user types their token and the address they came from
/// is permitted for their `--ttl`.
#[derive(Debug, Args)]
pub(crate) struct KnockArgs {
    /// Serve the knock page at http://ADDR/knock (off by default). Put TLS in front (README:
    /// "Knock page"); plain HTTP is refused off loopback unless --knock-allow-http.
    #[arg(long = "knock", value_name = "ADDR")]
    pub(crate) knock: Option<SocketAddr>,
    /// Proxies whose X-Forwarded-For and X-Forwarded-Proto are believed (CIDR, repeatable).
    #[arg(long = "knock-trusted-proxy", value_name = "CIDR", value_parser = cidr)]
    pub(crate) knock_trusted_proxy: Vec<ipnet::IpNet>,
    /// Serve the page over plain HTTP to clients off loopback too (tokens then travel in clear).
    #[arg(long)]
    pub(crate) knock_allow_http: bool,
    /// Knock attempts a minute from one address (IPv6: one /64).
    #[arg(long, default_value_t = 6, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub(crate) knock_rate_address: u32,
    /// Knock attempts a minute naming one user.
    #[arg(long, default_value_t = 6, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub(crate) knock_rate_user: u32,
    /// Live knock entries a user may have; at the cap, the oldest is replaced.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=1000))]
    pub(crate) knock_max_entries: u16,
}

/// `knock-user add --ttl`: a whole number of seconds, 1 s to 366 days.
fn knock_ttl(s: &str) -> Result<Duration, String> {
    match positive_duration(s)? {
        d if d > Duration::from_secs(366 * 86_400) => Err("at most 366 days".to_owned()),
        d if d.subsec_nanos() > 0 || d.as_secs() == 0 => {
            Err("a whole number of seconds (e.g. 12h, 30m, 90s)".to_owned())
        }
        d => Ok(d),
    }
}

/// `serve`'s database pool and snapshot cache. (Other commands take the pool settings from
/// the same environment variables.)
#[derive(Debug, Args)]
pub(crate) struct StoreArgs {
    /// Database connections the server opens at most (PostgreSQL's listener takes one more).
    #[arg(long, env = "IPCOUNTRY_DB_POOL", default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub(crate) db_pool: u32,
    /// How long a database call waits for a connection (connecting included) before failing.
    #[arg(long, env = "IPCOUNTRY_DB_TIMEOUT", default_value = "5s", value_parser = positive_duration)]
    pub(crate) db_timeout: Duration,
    /// Keep the last snapshot read from the database in this file, and serve it if the server
    /// starts while the database is unreachable (`ipcountry status` reads it too).
    #[arg(long, env = "IPCOUNTRY_SNAPSHOT_CACHE", value_name = "FILE")]
    pub(crate) snapshot_cache: Option<PathBuf>,
}

/// A network (`192.0.2.10/32`) or one address (`192.0.2.10`, `::1`).
fn cidr(s: &str) -> Result<ipnet::IpNet, String> {
    let s = s.trim();
    s.parse::<ipnet::IpNet>()
        .or_else(|_| s.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
        .map(|n| n.trunc())
        .map_err(|_| format!("not a network or an address: {s:?} (e.g. 192.0.2.10/32)"))
}

/// The async runtime `serve` runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Runtime {
    /// One current-thread runtime per worker thread, all accepting on the same sockets.
    PerCore,
    /// tokio's multi-threaded, work-stealing runtime.
    MultiThread,
}

#[derive(Debug, Args)]
pub(crate) struct CheckArgs {
    /// The signalling source address (`203.0.113.7`, `203.0.113.7:5060`, `[2001:db8::1]:5060`),
    /// as the dialplan's first argument.
    pub(crate) source: String,
    /// The From header as it is on the wire (`"Bob" <sip:bob@203.0.113.7>;tag=1`), if the call
    /// has one. It goes through Asterisk's argument splitting, as in a call.
    pub(crate) from: Option<String>,
    /// Which addresses to check.
    #[arg(long, value_enum, default_value_t = TrustArg::Both)]
    pub(crate) trust: TrustArg,
    /// How hostnames are resolved.
    #[command(flatten)]
    pub(crate) dns: DnsArgs,
}

/// A duration: `500ms`, `5s`, `2m`, `1h 30m` (humantime's format), or plain seconds.
fn duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        return s
            .parse::<u64>()
            .map(Duration::from_secs)
            .map_err(|e| format!("{s:?}: {e}"));
    }
    humantime::parse_duration(s)
        .map_err(|e| format!("not a duration: {s:?} ({e}; use 500ms, 5s, 2m)"))
}

/// A [`duration`] that is not zero.
fn positive_duration(s: &str) -> Result<Duration, String> {
    match duration(s)? {
        d if d.is_zero() => Err("must be more than zero".to_owned()),
        d => Ok(d),
    }
}

/// `--heartbeat`: more than zero, at most [`MAX_HEARTBEAT`].
fn heartbeat(s: &str) -> Result<Duration, String> {
    match positive_duration(s)? {
        d if d > MAX_HEARTBEAT => Err(format!(
            "at most {} (a server row older than {} counts as gone)",
            humantime::format_duration(MAX_HEARTBEAT),
            humantime::format_duration(ipcountry::store::STALE_AFTER)
        )),
        d => Ok(d),
    }
}

/// `--max-sessions`: 1 to [`MAX_SESSIONS`].
fn max_sessions(s: &str) -> Result<usize, String> {
    match s.trim().parse::<usize>() {
        Ok(n) if (1..=MAX_SESSIONS).contains(&n) => Ok(n),
        _ => Err(format!("must be a whole number from 1 to {MAX_SESSIONS}")),
    }
}

/// Where `--db` points, for messages: a SQLite file as a path (`sqlite://x.db` → `x.db`), a
/// server URL without its password.
pub(crate) fn db_display(url: &str) -> PathBuf {
    PathBuf::from(ipcountry::store::redact_url(
        url.strip_prefix("sqlite://").unwrap_or(url),
    ))
}

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

fn port_range(s: &str) -> Result<ipcountry::firewall::PortRange, String> {
    s.parse()
        .map_err(|e: ipcountry::firewall::FirewallError| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(duration("2"), Ok(Duration::from_secs(2)));
        assert_eq!(duration("1m"), Ok(Duration::from_secs(60)));
        assert_eq!(duration("0s"), Ok(Duration::ZERO));
        assert!(duration("x").is_err());
        assert!(duration("5 parsecs").is_err());
        assert!(positive_duration("0").is_err());
        assert!(positive_duration("0ms").is_err());
        assert_eq!(positive_duration("1ms"), Ok(Duration::from_millis(1)));
        assert!(max_sessions("0").is_err());
        assert!(max_sessions(&(MAX_SESSIONS + 1).to_string()).is_err());
        assert_eq!(max_sessions("1024"), Ok(1024));
    }

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
