//! The subcommands, one module per group of related commands. Each takes its parsed
//! arguments and returns an exit code; errors go up as `anyhow` to `main`.

/// `println!` for command output that ends the process quietly when stdout is a closed pipe
/// (`ipcountry countries | head`) instead of panicking.
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        if let Err(e) = writeln!(std::io::stdout().lock(), $($arg)*) {
            $crate::commands::stdout_failed(e);
        }
    }};
}

pub(crate) mod audit;
pub(crate) mod check;
pub(crate) mod config;
pub(crate) mod countries;
pub(crate) mod firewall;
pub(crate) mod knock;
pub(crate) mod rules;
pub(crate) mod serve;
pub(crate) mod servers;
pub(crate) mod text;
pub(crate) mod watch;
pub(crate) mod whitelist;

use anyhow::Result;

use ipcountry::resolve::HostResolver;
use ipcountry::store::{PoolSettings, Store};

use crate::cli;

/// Opens the store with the pool settings of `IPCOUNTRY_DB_POOL` / `IPCOUNTRY_DB_TIMEOUT`
/// (`serve` has flags for them too), or the defaults. The error names the database without its
/// password.
pub(crate) async fn open_store(db: &str) -> Result<Store> {
    Ok(Store::open_with(db, &pool_settings_from_env()).await?)
}

/// [`PoolSettings`] from the environment; values that do not parse are ignored.
fn pool_settings_from_env() -> PoolSettings {
    let mut settings = PoolSettings::default();
    if let Some(n) = std::env::var("IPCOUNTRY_DB_POOL")
        .ok()
        .and_then(|v| v.trim().parse::<u32>().ok())
        .filter(|n| (1..=64).contains(n))
    {
        settings.max_connections = n;
    }
    if let Some(d) = std::env::var("IPCOUNTRY_DB_TIMEOUT")
        .ok()
        .and_then(|v| humantime::parse_duration(v.trim()).ok())
        .filter(|d| !d.is_zero())
    {
        settings.acquire_timeout = d;
    }
    settings
}

/// The resolver the DNS flags ask for: one name server, or the system's configuration.
pub(crate) fn resolver(dns: &cli::DnsArgs) -> HostResolver {
    match dns.dns_server {
        Some(s) => HostResolver::with_nameserver(s, dns.dns_timeout, dns.dns_failure_ttl),
        None => HostResolver::system(dns.dns_timeout, dns.dns_failure_ttl),
    }
}

/// Stdout went away: a closed pipe is a normal end (exit 0), anything else an error (exit 2).
pub(crate) fn stdout_failed(e: std::io::Error) -> ! {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        std::process::exit(0);
    }
    eprintln!("ipcountry: cannot write to stdout: {e}");
    std::process::exit(2);
}
