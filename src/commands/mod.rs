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

pub(crate) mod check;
pub(crate) mod config;
pub(crate) mod countries;
pub(crate) mod rules;
pub(crate) mod serve;
pub(crate) mod text;

use anyhow::{Context as _, Result};

use ipcountry::resolve::HostResolver;
use ipcountry::store::Store;

use crate::cli;

pub(crate) async fn open_store(db: &str) -> Result<Store> {
    Store::open(db)
        .await
        .with_context(|| format!("cannot open database {}", cli::db_display(db).display()))
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
