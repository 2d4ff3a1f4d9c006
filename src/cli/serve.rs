//! The arguments of `serve`, `agi` and `check`: how a call is screened and answered, the
//! database pool, the knock page, the runtime.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand};

use ipcountry::decision::Trust;
use ipcountry::session::ReplyMode;

use super::values::{cidr, duration, heartbeat, knock_ttl, max_sessions, positive_duration};
use super::FirewallOpts;

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
