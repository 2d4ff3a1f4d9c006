//! `whitelist-gen`: permit rules for the hosts of FreePBX's trunks and extensions.
//!
//! Reads FreePBX's tables (`store::freepbx`), turns them into hosts with notes
//! (`whitelist::wanted`), resolves names, and adds what is missing through the store's rule API
//! (`Store::add_rule`, as `permit add` does). Idempotent: a rule already there with its note is
//! kept; a range some other rule already permits is reported and left alone; `freepbx:` rules
//! nobody names any more are reported as stale (removed with `--prune`). Exit 0, or 1 when a
//! name did not resolve.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;

use crate::cli::WhitelistArgs;
use ipcountry::ranges::{IpRange, RuleKind, RuleSource, Terms, CUSTOM_COUNTRY};
use ipcountry::store::StoreError;
use ipcountry::whitelist::{self, Host, NOTE_PREFIX};

use super::open_store;

/// How long one name may take to resolve.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(5);

pub(crate) async fn whitelist_gen(db: &str, args: WhitelistArgs) -> Result<ExitCode> {
    let rows = ipcountry::store::freepbx::read(&args.freepbx).await?;
    for table in &rows.missing {
        eprintln!("note: the FreePBX database has no `{table}` table; skipped");
    }
    let mut wanted: Vec<(IpRange, String, String)> = Vec::new();
    let mut unresolved = 0;
    for w in whitelist::wanted(&rows) {
        match &w.host {
            Host::Range(r) => wanted.push((*r, w.note.clone(), w.origin.clone())),
            Host::Name(name) => match resolve(name).await {
                Some(addrs) if !addrs.is_empty() => {
                    for ip in addrs {
                        wanted.push((
                            IpRange::single(ip),
                            w.note.clone(),
                            format!("{} {name}", w.origin),
                        ));
                    }
                }
                _ => {
                    unresolved += 1;
                    outln!("unresolved {name} ({}, {}): no rule", w.note, w.origin);
                }
            },
        }
    }
    // Like the old script: the admin's own way in, so that the firewall cannot lock him out.
    let extras = [
        (
            ssh_client(),
            args.permit_ssh_client,
            "whitelist-gen:ssh-session",
            "your SSH session comes from",
            "--permit-ssh-client",
        ),
        (
            own_address(),
            args.permit_self,
            "whitelist-gen:server",
            "this server's address is",
            "--permit-self",
        ),
    ];
    for (found, permit, note, what, flag) in extras {
        match (found, permit) {
            (Some(ip), true) => wanted.push((IpRange::single(ip), note.into(), flag.into())),
            (Some(ip), false) => eprintln!("note: {what} {ip}; {flag} permits it"),
            (None, true) => eprintln!("note: {flag}: no address found, nothing added"),
            (None, false) => {}
        }
    }
    let mut seen = BTreeSet::new();
    wanted.retain(|(r, note, _)| seen.insert((r.to_string(), note.clone())));

    let store = open_store(db).await?;
    let existing = store.list_rules(RuleKind::Permit).await?;
    let (mut added, mut kept, mut stale) = (0, 0, 0);
    for (range, note, origin) in &wanted {
        if let Some(r) = existing
            .iter()
            .find(|r| r.range == *range && r.note == *note)
        {
            kept += 1;
            outln!("kept    #{:<5} {:<43} {note}", r.id, range.to_string());
            continue;
        }
        if args.dry_run {
            added += 1;
            outln!("would add     {:<43} {note} ({origin})", range.to_string());
            continue;
        }
        match store
            .add_rule(
                RuleKind::Permit,
                *range,
                CUSTOM_COUNTRY,
                RuleSource::Custom,
                note,
                Terms::default(),
            )
            .await
        {
            Ok(rule) => {
                added += 1;
                outln!(
                    "added   #{:<5} {:<43} {note} ({origin})",
                    rule.id,
                    range.to_string()
                );
            }
            Err(StoreError::Duplicate { existing }) => {
                kept += 1;
                outln!(
                    "kept    #{:<5} {:<43} {note}: already permitted as {existing}",
                    existing.id,
                    range.to_string()
                );
            }
            Err(e) => return Err(e.into()),
        }
    }
    let wanted_keys: BTreeSet<(String, String)> = wanted
        .iter()
        .map(|(r, n, _)| (r.to_string(), n.clone()))
        .collect();
    for r in existing.iter().filter(|r| r.note.starts_with(NOTE_PREFIX)) {
        if wanted_keys.contains(&(r.range.to_string(), r.note.clone())) {
            continue;
        }
        stale += 1;
        if args.prune && !args.dry_run {
            store.remove_rule(RuleKind::Permit, r.id).await?;
            outln!(
                "removed #{:<5} {:<43} {} (stale)",
                r.id,
                r.range.to_string(),
                r.note
            );
        } else {
            outln!(
                "stale   #{:<5} {:<43} {} (no trunk or extension names it; --prune removes it)",
                r.id,
                r.range.to_string(),
                r.note
            );
        }
    }
    store.close().await;
    outln!("added {added}, kept {kept}, stale {stale}, unresolved {unresolved}");
    Ok(if unresolved > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// The system resolver's addresses for `name` (`/etc/hosts` included), as Asterisk resolves it.
async fn resolve(name: &str) -> Option<Vec<IpAddr>> {
    let found = tokio::time::timeout(RESOLVE_TIMEOUT, tokio::net::lookup_host((name, 0))).await;
    let mut ips: Vec<IpAddr> = found.ok()?.ok()?.map(|a| a.ip()).collect();
    ips.sort();
    ips.dedup();
    Some(ips)
}

/// The client address of the SSH session this runs in (`SSH_CONNECTION`'s first field).
fn ssh_client() -> Option<IpAddr> {
    std::env::var("SSH_CONNECTION")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// This machine's address on its default route: the source address the kernel picks for a
/// public destination (a UDP `connect` sends nothing).
fn own_address() -> Option<IpAddr> {
    let s = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    s.connect("192.0.2.1:9").ok()?;
    let ip = s.local_addr().ok()?.ip();
    (!ip.is_unspecified()).then_some(ip)
}
