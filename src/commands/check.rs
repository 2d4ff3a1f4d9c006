//! `check` and `ip`: answer questions about one caller or address, without a server.

use super::{open_store, resolver};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::process::ExitCode;

use anyhow::{bail, Context as _, Result};
use serde::Serialize;

use crate::cli::CheckArgs;
use ipcountry::agi::args::separate_args;
use ipcountry::decision::{self, Verdict};
use ipcountry::escape::Escaped;
use ipcountry::policy::Builtins;
use ipcountry::reload;
use ipcountry::request::{CallArgs, ScreenRequest};

/// The arguments a call would deliver for `AGI(url,${source},${From})` with this source and
/// From on the wire: the dialplan's text split as Asterisk splits it.
fn call_args(source: &str, from: Option<&str>) -> Vec<String> {
    let text = match from {
        Some(from) => format!("{source},{from}"),
        None => source.to_owned(),
    };
    separate_args(text.as_bytes())
        .into_iter()
        .map(|a| String::from_utf8_lossy(&a).into_owned())
        .collect()
}

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
    let trust = args.trust.into();
    let texts = call_args(&args.source, args.from.as_deref());
    let call = CallArgs::new(texts.iter().map(String::as_str));
    let request = ScreenRequest::parse(&call);
    let dns = match decision::host_to_resolve(&policy, &request, trust) {
        Some(name) => Some(resolver(&args.dns).lookup(name).await),
        None => None,
    };
    let d = decision::decide(&policy, &request, trust, dns.as_ref());
    let shadow = policy
        .shadow()
        .and_then(|view| decision::shadow_match(view, &request, trust, dns.as_ref()));
    if json {
        /// The decision, and what a shadow rule would have made of it.
        #[derive(Serialize)]
        struct Out<'a, 'p> {
            #[serde(flatten)]
            decision: &'a decision::Decision<'p>,
            #[serde(skip_serializing_if = "Option::is_none")]
            shadow: Option<Shadow<'a>>,
        }
        #[derive(Serialize)]
        struct Shadow<'a> {
            would_be: Verdict,
            rule: &'a str,
        }
        let out = Out {
            decision: &d,
            shadow: shadow.as_ref().map(|(would_be, rule)| Shadow {
                would_be: *would_be,
                rule,
            }),
        };
        outln!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        outln!("{} ({})", d.verdict, d.reason);
        if d.checks.len() > 1 {
            for c in &d.checks {
                let subject = c.subject.to_string();
                outln!(
                    "  {:?} {}: {} ({})",
                    c.role,
                    Escaped(&subject),
                    c.verdict,
                    c.reason
                );
            }
        }
        if let Some((would_be, rule)) = &shadow {
            outln!("  shadow: would be {would_be} ({rule}); not applied");
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_from_is_split_as_in_a_call() {
        assert_eq!(call_args("198.51.100.9", None), ["198.51.100.9"]);
        assert_eq!(
            call_args(
                "127.0.0.1:5060",
                Some(r#""Doe, John" <sip:john@203.0.113.7>;tag=1"#)
            ),
            ["127.0.0.1:5060", "Doe, John <sip:john@203.0.113.7>;tag=1"]
        );
        assert_eq!(
            call_args("127.0.0.1", Some("203.0.113.7,,<sip:eve@198.51.100.9>")),
            ["127.0.0.1", "203.0.113.7", "", "<sip:eve@198.51.100.9>"]
        );
    }
}
