//! `check` and `ip`: answer questions about one caller or address, without a server.

use super::{open_store, resolver};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::process::ExitCode;

use anyhow::{bail, Context as _, Result};
use serde::Serialize;

use crate::cli::CheckArgs;
use ipcountry::decision::{self, Verdict};
use ipcountry::policy::Builtins;
use ipcountry::reload;
use ipcountry::request::ScreenRequest;

pub(crate) async fn check(
    db: &str,
    builtins: Builtins,
    json: bool,
    args: CheckArgs,
) -> Result<ExitCode> {
    let store = open_store(db).await?;
    let policy = reload::build(&store, builtins)
        .await
        .context("cannot load the tables")?;
    store.close().await;
    let request = ScreenRequest::new(&args.subject, args.source.as_deref());
    let dns = match decision::host_to_resolve(&policy, &request, args.trust) {
        Some(name) => Some(resolver(&args.dns).lookup(name).await),
        None => None,
    };
    let d = decision::decide(&policy, &request, args.trust, dns.as_ref());
    if json {
        outln!("{}", serde_json::to_string_pretty(&d)?);
    } else {
        outln!("{} ({})", d.verdict, d.reason);
        if d.checks.len() > 1 {
            for c in &d.checks {
                outln!("  {:?} {}: {} ({})", c.role, c.subject, c.verdict, c.reason);
            }
        }
    }
    Ok(if d.verdict == Verdict::Permit {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
pub(crate) fn ip(values: &[String], json: bool) -> Result<ExitCode> {
    #[derive(Serialize)]
    struct Out {
        input: String,
        address: String,
        integer: String,
        family: u8,
    }
    let mut out = Vec::new();
    for v in values {
        let v = v.trim();
        let (addr, int, family) = if let Ok(ip) = v.parse::<IpAddr>() {
            match ip.to_canonical() {
                IpAddr::V4(a) => (a.to_string(), u32::from(a).to_string(), 4),
                IpAddr::V6(a) => (a.to_string(), u128::from(a).to_string(), 6),
            }
        } else if let Ok(n) = v.parse::<u128>() {
            match u32::try_from(n) {
                Ok(n4) => (Ipv4Addr::from(n4).to_string(), n.to_string(), 4),
                Err(_) => (Ipv6Addr::from(n).to_string(), n.to_string(), 6),
            }
        } else {
            bail!("not an IP address or integer: {v:?}");
        };
        out.push(Out {
            input: v.to_owned(),
            address: addr,
            integer: int,
            family,
        });
    }
    if json {
        outln!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        for o in &out {
            if o.input == o.integer {
                outln!("{}", o.address);
            } else {
                outln!("{}", o.integer);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
