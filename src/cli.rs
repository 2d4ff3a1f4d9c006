//! The command line (clap derive): raw arguments only. `main.rs` turns them into settings and
//! runs the command.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use ipcountry::decision::Trust;
use ipcountry::session::ReplyMode;

/// Screen inbound Asterisk/FreePBX calls by the caller's IP address.
#[derive(Debug, Parser)]
#[command(name = "ipcountry", version, about, long_about = None)]
pub(crate) struct Cli {
    /// Database URL or SQLite file path (`sqlite://ipcountry.db`, `./ipcountry.db`).
    #[arg(
        long,
        global = true,
        env = "IPCOUNTRY_DB",
        default_value = "sqlite://ipcountry.db"
    )]
    pub(crate) db: String,
    /// Machine-readable JSON output instead of human text.
    #[arg(long, global = true)]
    pub(crate) json: bool,
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
    Serve(ServeArgs),
    /// Screen one call as a plain AGI over stdin/stdout: `AGI(ipcountry,agi,${FROM},${SRC})`.
    Agi(ScreenArgs),
    /// Show the verdict for an IP address or a From header (exit 0 permitted, 1 denied or stranger, 2 error).
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
    /// Make running servers reload the tables now.
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
    },
    /// Remove a host pattern (by pattern or id).
    Rm {
        /// The pattern or id.
        what: String,
    },
    /// List the host patterns.
    List,
}

/// Hostname resolution, shared by everything that screens or checks.
#[derive(Debug, Args)]
pub(crate) struct DnsArgs {
    /// Deadline for resolving a From hostname.
    #[arg(long, default_value = "500ms", value_parser = parse_duration)]
    pub(crate) dns_timeout: Duration,
    /// Ask this DNS server (ip:port) instead of the system resolver.
    #[arg(long)]
    pub(crate) dns_server: Option<SocketAddr>,
}

/// Settings shared by everything that screens (serve, agi).
#[derive(Debug, Args)]
pub(crate) struct ScreenArgs {
    /// Which addresses to check: the signalling source, the From host, or both.
    #[arg(long, value_enum, default_value_t = Trust::Both)]
    pub(crate) trust: Trust,
    /// How From hostnames are resolved.
    #[command(flatten)]
    pub(crate) dns: DnsArgs,
    /// Arguments Asterisk passes on the command line in plain-AGI mode (ignored: the
    /// `agi_arg_N` lines of the environment carry the same values).
    #[arg(hide = true, trailing_var_arg = true, allow_hyphen_values = true)]
    pub(crate) rest: Vec<String>,
}

#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// Address to listen on; repeat for several (IPv6: `[::1]:4573`).
    #[arg(long = "listen", default_value = "127.0.0.1:4573")]
    pub(crate) listen: Vec<SocketAddr>,
    /// Calls handled at once; more connections wait in the backlog.
    #[arg(long, default_value_t = 1024)]
    pub(crate) max_sessions: usize,
    /// How often to check the store for changes.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub(crate) poll: Duration,
    /// Time calls in flight get to finish on SIGINT/SIGTERM.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub(crate) grace: Duration,
    /// Deadline for the AGI environment block.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub(crate) env_timeout: Duration,
    /// Deadline for each reply from Asterisk.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub(crate) reply_timeout: Duration,
    /// How the verdict is written back: three `SET VARIABLE`s, or one `EXEC MSet` (one round
    /// trip; commas, double quotes and backslashes in the reason become `;`, `'` and `/`).
    #[arg(long, value_enum, default_value_t = ReplyMode::SetVariable)]
    pub(crate) reply: ReplyMode,
    /// Async runtime: one single-threaded runtime per worker thread (`per-core`), or tokio's
    /// work-stealing `multi-thread` runtime.
    #[arg(long, value_enum, default_value_t = Runtime::PerCore)]
    pub(crate) runtime: Runtime,
    /// Worker threads (0: one per CPU).
    #[arg(long, default_value_t = 0)]
    pub(crate) threads: usize,
    /// Screening settings.
    #[command(flatten)]
    pub(crate) screen: ScreenArgs,
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
    /// An IP address, a host name, or a From header (`"Bob" <sip:bob@203.0.113.7>;tag=1`).
    pub(crate) subject: String,
    /// The signalling source address, if any (`203.0.113.7:5060`).
    #[arg(long)]
    pub(crate) source: Option<String>,
    /// Which addresses to check.
    #[arg(long, value_enum, default_value_t = Trust::Both)]
    pub(crate) trust: Trust,
    /// How hostnames are resolved.
    #[command(flatten)]
    pub(crate) dns: DnsArgs,
}

/// `500ms`, `5s`, `2m`, or plain seconds.
fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| !c.is_ascii_digit() && c != '.') {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: f64 = num
        .parse()
        .map_err(|_| format!("not a duration: {s:?} (use 500ms, 5s, 2m)"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        _ => return Err(format!("unknown unit in {s:?} (use ms, s or m)")),
    };
    Duration::try_from_secs_f64(secs).map_err(|e| format!("{s:?}: {e}"))
}

/// Where `--db` points, as a path for messages (`sqlite://x.db` → `x.db`).
pub(crate) fn db_display(url: &str) -> PathBuf {
    PathBuf::from(url.strip_prefix("sqlite://").unwrap_or(url))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("2"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("1m"), Ok(Duration::from_secs(60)));
        assert!(parse_duration("x").is_err());
        assert!(parse_duration("5h").is_err());
    }

    #[test]
    fn cli_is_well_formed() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
