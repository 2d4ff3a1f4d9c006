//! `watch`: the audit every `--every` (or once), remembering each peer's addresses in the
//! store (`peer_seen`). A peer that is ko at an address it was not ko at before is logged in
//! one line, alerted (the `--on-stranger` hook of `serve`, same event format, deduplicated per
//! peer and address) and, with `--block`, denied for `--block-for`. **Registration drift**: a
//! peer that was permitted last time and now registers from a new address in another country,
//! or inside a deny range, is alerted even when the new address is permitted
//! ("101 moved from GB to SE").

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, Result};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use super::audit::{exit_code, from_ami, screen};
use super::{open_store, resolver};
use crate::cli::WatchArgs;
use ipcountry::alerts::{AlertSettings, Alerts, Event};
use ipcountry::audit::{Finding, PeerVerdict};
use ipcountry::escape::Escaped;
use ipcountry::firewall::apply::Nft;
use ipcountry::policy::Builtins;
use ipcountry::ranges::{IpRange, RuleKind, RuleSource, Terms, CUSTOM_COUNTRY};
use ipcountry::reload;
use ipcountry::resolve::HostResolver;
use ipcountry::store::{expiry_after, SeenPeer, Store, StoreError};

/// Rows of addresses not seen for this long (milliseconds) are forgotten.
const FORGET_AFTER: i64 = 90 * 24 * 3600 * 1000;

/// How long `--once` waits for the alert commands it queued.
const DRAIN: Duration = Duration::from_secs(35);

pub(crate) async fn watch(db: &str, builtins: Builtins, args: WatchArgs) -> Result<ExitCode> {
    let store = open_store(db).await?;
    let resolver = resolver(&args.dns);
    let shutdown = if args.once {
        CancellationToken::new()
    } else {
        ipcountry::shutdown::on_signals().context("cannot install the signal handlers")?
    };
    let (alerts, task) = match &args.on_stranger {
        Some(command) => {
            let (alerts, task) = Alerts::start_joinable(
                AlertSettings {
                    command: command.clone(),
                    dedup: args.alert_dedup,
                    per_minute: args.alert_rate,
                    queue: ipcountry::alerts::QUEUE,
                },
                shutdown.clone(),
            );
            (Some(alerts), Some(task))
        }
        None => (None, None),
    };
    let code = if args.once {
        let code = pass(&store, builtins, &args, &resolver, alerts.as_ref()).await?;
        drop(alerts);
        if let Some(task) = task {
            // The queue is closed: the task ends once the commands queued have run.
            let _ = tokio::time::timeout(DRAIN, task).await;
        }
        code
    } else {
        info!(every = %humantime::format_duration(args.every), "watching the registered peers");
        loop {
            let result = tokio::select! {
                _ = shutdown.cancelled() => break,
                r = pass(&store, builtins, &args, &resolver, alerts.as_ref()) => r,
            };
            if let Err(e) = result {
                error!(
                    cause = format!("{e:#}"),
                    "audit failed; trying again next time"
                );
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(args.every) => {}
            }
        }
        shutdown.cancel();
        ExitCode::SUCCESS
    };
    store.close().await;
    Ok(code)
}

/// One audit: screen, compare with what is remembered, alert, block, remember.
async fn pass(
    store: &Store,
    builtins: Builtins,
    args: &WatchArgs,
    resolver: &HostResolver,
    alerts: Option<&Alerts>,
) -> Result<ExitCode> {
    let inventory = from_ami(&args.ami).await?;
    for note in &inventory.notes {
        info!(note = note.as_str(), "skipped");
    }
    let policy = reload::build(store, builtins)
        .await
        .context("cannot load the tables")?;
    let findings = screen(store, &policy, inventory.peers, resolver).await?;
    let seen = store.seen_peers().await?;
    // Milliseconds: two passes within a second must still be told apart.
    let now = now_millis();
    let mut rows = Vec::new();
    for f in &findings {
        let Some(ip) = f.ip.filter(|_| f.verdict != PeerVerdict::Unreachable) else {
            continue;
        };
        let ip_text = ip.to_string();
        let kind = f.peer.kind.as_str();
        let mine = |s: &&SeenPeer| s.kind == kind && s.name == f.peer.name;
        let here = seen.iter().filter(mine).find(|s| s.ip == ip_text);
        let country = f.country.clone().unwrap_or_default();
        let drift = here
            .is_none()
            .then(|| drift(seen.iter().filter(mine).collect(), f, &country))
            .flatten();
        let new_ko = !f.ok() && here.is_none_or(|h| h.verdict == PeerVerdict::Permitted.as_str());
        if let Some(moved) = &drift {
            warn!(
                peer = %Escaped(&f.peer.name),
                kind,
                address = %Escaped(&f.peer.address),
                verdict = f.verdict.as_str(),
                reason = f.reason.as_str(),
                "registration drift: {}", Escaped(moved)
            );
        } else if new_ko {
            warn!(
                peer = %Escaped(&f.peer.name),
                kind,
                address = %Escaped(&f.peer.address),
                verdict = f.verdict.as_str(),
                reason = f.reason.as_str(),
                "new ko peer"
            );
        }
        if drift.is_some() || new_ko {
            if let Some(alerts) = alerts {
                alerts.offer(event(f, drift.as_deref()));
            }
            if args.block && !f.ok() {
                block(store, f, args.block_for).await?;
                if args.block_kernel {
                    block_in_kernel(f, args.block_for).await;
                }
            }
        }
        rows.push(SeenPeer {
            kind: kind.to_owned(),
            name: f.peer.name.clone(),
            ip: ip_text,
            country,
            verdict: f.verdict.as_str().to_owned(),
            first_seen: here.map_or(now, |h| h.first_seen),
            last_seen: now,
        });
    }
    store.record_peers(&rows, now - FORGET_AFTER).await?;
    let ko = findings.iter().filter(|f| !f.ok()).count();
    info!(peers = findings.len(), ko, "audited the registered peers");
    Ok(exit_code(&findings))
}

/// "101 moved from GB to SE": the peer was permitted last time (its newest permitted rows,
/// other addresses), and its new address is in a country none of those were in, or denied.
fn drift(rows: Vec<&SeenPeer>, f: &Finding, country: &str) -> Option<String> {
    let permitted: Vec<&SeenPeer> = rows
        .into_iter()
        .filter(|s| s.verdict == PeerVerdict::Permitted.as_str())
        .collect();
    let newest = permitted.iter().map(|s| s.last_seen).max()?;
    let mut before: Vec<&str> = permitted
        .iter()
        .filter(|s| s.last_seen == newest && !s.country.is_empty())
        .map(|s| s.country.as_str())
        .collect();
    before.sort_unstable();
    before.dedup();
    let moved = !country.is_empty() && !before.is_empty() && !before.contains(&country);
    if !moved && f.verdict != PeerVerdict::Denied {
        return None;
    }
    let from = if before.is_empty() {
        "an unknown country".to_owned()
    } else {
        before.join("/")
    };
    Some(format!(
        "{} moved from {from} to {}",
        f.peer.name,
        or_unknown(country)
    ))
}

fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn or_unknown(country: &str) -> &str {
    if country.is_empty() {
        "an unknown country"
    } else {
        country
    }
}

/// The alert: `serve`'s event, with the peer as the caller-ID and its address as reported in
/// `from`.
fn event(f: &Finding, drift: Option<&str>) -> Event {
    Event {
        time: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
        uniqueid: String::new(),
        callerid: f.peer.name.clone(),
        from: f.peer.address.clone(),
        source: f.ip.map(|ip| ip.to_string()).unwrap_or_default(),
        verdict: f.verdict.as_str(),
        reason: match drift {
            Some(moved) => format!("registration drift: {moved} ({})", f.reason),
            None => f.reason.clone(),
        },
        rule: f.rule.clone(),
        country: f.country.clone(),
        source_ip: f.ip,
        peer: Some(format!("{}/{}", f.peer.kind, f.peer.name)),
    }
}

/// Adds the peer's address to the kernel's strangers set for `lasts` (`watch --block-kernel`);
/// a failure (no table, no CAP_NET_ADMIN) is logged and changes nothing else: the deny
/// entry stands and reaches the kernel's deny set at the next apply.
async fn block_in_kernel(f: &Finding, lasts: Duration) {
    let Some(ip) = f.ip else { return };
    let added = tokio::task::spawn_blocking(move || Nft::default().add_stranger(ip, lasts)).await;
    match added {
        Ok(Ok(())) => warn!(peer = %Escaped(&f.peer.name), %ip, "blocked in the kernel"),
        Ok(Err(error)) => {
            warn!(peer = %Escaped(&f.peer.name), %ip, %error, "cannot block in the kernel")
        }
        Err(error) => warn!(%error, "cannot block in the kernel"),
    }
}

/// Denies the peer's address for `lasts`, noted `watch:<peer>`; an address already in the
/// deny table is left as it is.
async fn block(store: &Store, f: &Finding, lasts: Duration) -> Result<()> {
    let Some(ip) = f.ip else { return Ok(()) };
    let range = IpRange::from_addrs(ip, ip)?;
    let terms = Terms {
        expires_at: Some(expiry_after(lasts).context("--block-for is too long")?),
        shadow: false,
    };
    let note = format!("watch:{}", f.peer.name);
    match store
        .add_rule(
            RuleKind::Deny,
            range,
            CUSTOM_COUNTRY,
            RuleSource::Custom,
            &note,
            terms,
        )
        .await
    {
        Ok(rule) => {
            warn!(peer = %Escaped(&f.peer.name), rule = %rule, "blocked");
            Ok(())
        }
        Err(StoreError::Duplicate { .. }) => Ok(()),
        Err(e) => Err(e.into()),
    }
}
