//! `permit`, `deny` and `allow-host`: the admin's own entries.

use super::open_store;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context as _, Result};

use crate::cli::{HostAction, RuleAction};
use ipcountry::hosts::HostPattern;
use ipcountry::policy::Builtins;
use ipcountry::ranges::{IpRange, Rule, RuleKind, RuleSource, Terms, CUSTOM_COUNTRY};
use ipcountry::store::cache::now as now_unix;
use ipcountry::store::{expiry_after, StoreError};

fn parse_range(words: &[String]) -> Result<IpRange> {
    match words {
        [one] => one.parse::<IpRange>().map_err(Into::into),
        [a, b] => IpRange::from_integers(a, b)
            .or_else(|_| {
                IpRange::from_addrs(a.trim().parse()?, b.trim().parse()?)
                    .map_err(anyhow::Error::from)
            })
            .with_context(|| format!("not a range: {a} {b}")),
        _ => bail!("give one range, or two integers"),
    }
}
pub(crate) async fn rules(
    db: &str,
    kind: RuleKind,
    action: RuleAction,
    json: bool,
    builtins: Builtins,
) -> Result<ExitCode> {
    let store = open_store(db).await?;
    let code = match action {
        RuleAction::Add {
            range,
            note,
            lasts,
            shadow,
        } => {
            let range = parse_range(&range)?;
            let terms = Terms {
                expires_at: lasts.map(expiry).transpose()?,
                shadow,
            };
            match store
                .add_rule(
                    kind,
                    range,
                    CUSTOM_COUNTRY,
                    RuleSource::Custom,
                    note.trim(),
                    terms,
                )
                .await
            {
                Ok(rule) => {
                    print_rules(std::slice::from_ref(&rule), json, Some("added"))?;
                    ExitCode::SUCCESS
                }
                Err(e) => refusal(e)?,
            }
        }
        RuleAction::Rm { what } => {
            let w = what.trim().trim_start_matches('#');
            let removed = match w.parse::<i64>() {
                Ok(id) if !w.contains('.') && !w.contains(':') && id < (1 << 31) => {
                    store.remove_rule(kind, id).await
                }
                _ => {
                    store
                        .remove_rule_by_range(kind, w.parse::<IpRange>()?)
                        .await
                }
            };
            match removed {
                Ok(rule) => {
                    print_rules(std::slice::from_ref(&rule), json, Some("removed"))?;
                    ExitCode::SUCCESS
                }
                Err(e) => refusal(e)?,
            }
        }
        RuleAction::List => {
            let mut list = store.list_rules(kind).await?;
            // The built-in permits are part of the policy too: list them, marked `builtin`.
            if kind == RuleKind::Permit && builtins == Builtins::On {
                list.extend(ipcountry::ranges::builtin::rules());
            }
            print_rules(&list, json, None)?;
            ExitCode::SUCCESS
        }
    };
    store.close().await;
    Ok(code)
}
fn print_rules(rules: &[Rule], json: bool, verb: Option<&str>) -> Result<()> {
    if json {
        outln!("{}", serde_json::to_string_pretty(rules)?);
        return Ok(());
    }
    let now = now_unix();
    for r in rules {
        let note = if r.note.is_empty() {
            String::new()
        } else {
            format!(" {:?}", r.note)
        };
        let id = match r.source {
            RuleSource::Builtin => "-".to_owned(),
            _ => format!("#{}", r.id),
        };
        let line = format!(
            "{id:<7} {:<43} {:<2} {:<7}{}{}",
            r.range.to_string(),
            r.country,
            r.source,
            note,
            terms_text(r.terms.expires_at, r.terms.shadow, now)
        );
        match verb {
            Some(v) => outln!("{v} {}: {}", r.kind, line.trim_end()),
            None => outln!("{}", line.trim_end()),
        }
    }
    Ok(())
}
pub(crate) async fn hosts(db: &str, action: HostAction, json: bool) -> Result<ExitCode> {
    let store = open_store(db).await?;
    let code = match action {
        HostAction::Add {
            pattern,
            note,
            lasts,
        } => {
            let p = HostPattern::parse(&pattern).with_context(|| format!("{pattern:?}"))?;
            let expires_at = lasts.map(expiry).transpose()?;
            match store
                .add_allow_host(p.as_str(), note.trim(), expires_at)
                .await
            {
                Ok(h) => {
                    if json {
                        outln!("{}", serde_json::to_string_pretty(&h)?);
                    } else {
                        outln!(
                            "added allow-host: #{} {}{}",
                            h.id,
                            h.pattern,
                            terms_text(h.expires_at, false, now_unix())
                        );
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => refusal(e)?,
            }
        }
        HostAction::Rm { what } => match store.remove_allow_host(what.trim()).await {
            Ok(h) => {
                outln!("removed allow-host: #{} {}", h.id, h.pattern);
                ExitCode::SUCCESS
            }
            Err(e) => refusal(e)?,
        },
        HostAction::List => {
            let list = store.list_allow_hosts().await?;
            let now = now_unix();
            if json {
                outln!("{}", serde_json::to_string_pretty(&list)?);
            } else {
                for h in &list {
                    let note = if h.note.is_empty() {
                        String::new()
                    } else {
                        format!(" {:?}", h.note)
                    };
                    outln!(
                        "#{:<6} {}{}{}",
                        h.id,
                        h.pattern,
                        note,
                        terms_text(h.expires_at, false, now)
                    );
                }
            }
            ExitCode::SUCCESS
        }
    };
    store.close().await;
    Ok(code)
}
/// `purge`: deletes the expired entries, and says how many of each.
pub(crate) async fn purge(db: &str, json: bool) -> Result<ExitCode> {
    let store = open_store(db).await?;
    let purged = store.purge_expired(now_unix()).await;
    store.close().await;
    let purged = purged?;
    if json {
        outln!("{}", serde_json::to_string_pretty(&purged)?);
    } else if purged.total() == 0 {
        outln!("nothing has expired");
    } else {
        outln!(
            "purged {} expired: {} permit, {} deny, {} allow-host",
            purged.total(),
            purged.permit,
            purged.deny,
            purged.allow_hosts
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// The expiry time of an entry that lasts `lasts` from now, in Unix seconds.
fn expiry(lasts: Duration) -> Result<i64> {
    expiry_after(lasts).context("--for is too long")
}

/// What a listing says of an entry's terms: ` [shadow]`, ` [expires 2026-12-09 01:00:00 UTC,
/// in 7days]`, ` [expired 2026-12-02 01:00:00 UTC]`; nothing for a plain entry.
fn terms_text(expires_at: Option<i64>, shadow: bool, now: i64) -> String {
    let mut parts = Vec::new();
    if shadow {
        parts.push("shadow".to_owned());
    }
    if let Some(at) = expires_at {
        let when = super::text::utc(at);
        parts.push(if at <= now {
            format!("expired {when}")
        } else {
            let left = humantime::format_duration(Duration::from_secs((at - now).unsigned_abs()));
            format!("expires {when}, in {left}")
        });
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!(" [{}]", parts.join(", "))
    }
}

/// An entry that is already there, or not there to remove, is printed and exits 1; any other
/// failure is an error (exit 2).
fn refusal(e: StoreError) -> Result<ExitCode> {
    match e {
        StoreError::Duplicate { .. }
        | StoreError::DuplicateHost { .. }
        | StoreError::NotFound { .. } => {
            eprintln!("{e}");
            Ok(ExitCode::from(1))
        }
        e => Err(e.into()),
    }
}
