//! `audit`: every registered peer, from the AMI or from CLI text on stdin, screened with the
//! policy from the store (`ipcountry::audit::judge`, the calls' decision code), printed as a
//! table or as JSON, with the country it was last seen from (`watch` remembers it).

use std::collections::HashMap;
use std::io::Read as _;
use std::net::IpAddr;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context as _, Result};
use serde::Serialize;

use super::{open_store, resolver};
use crate::cli::{AmiArgs, AuditArgs, CliFormat};
use ipcountry::ami::{self, cli_text, Inventory, Peer, Secret, Target};
use ipcountry::audit::{self, Finding};
use ipcountry::escape::Escaped;
use ipcountry::policy::{Builtins, Policy};
use ipcountry::reload;
use ipcountry::resolve::HostResolver;
use ipcountry::store::{SeenPeer, Store};

/// CLI text read from stdin, at most.
const MAX_STDIN: u64 = 16 * 1024 * 1024;

pub(crate) async fn audit(
    db: &str,
    builtins: Builtins,
    json: bool,
    args: AuditArgs,
) -> Result<ExitCode> {
    let inventory = match args.from_cli {
        Some(format) => from_stdin(format)?,
        None => from_ami(&args.ami).await?,
    };
    for note in &inventory.notes {
        eprintln!("note: {note}");
    }
    let store = open_store(db).await?;
    let policy = reload::build(&store, builtins)
        .await
        .context("cannot load the tables")?;
    let findings = screen(&store, &policy, inventory.peers, &resolver(&args.dns)).await?;
    let seen = store.seen_peers().await?;
    store.close().await;
    print(&findings, &seen, json)?;
    Ok(exit_code(&findings))
}

/// 0 when every peer is ok, 1 otherwise.
pub(crate) fn exit_code(findings: &[Finding]) -> ExitCode {
    if findings.iter().all(Finding::ok) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// The AMI target of the flags, with the secret file read if given.
pub(crate) fn target(args: &AmiArgs) -> Result<Target> {
    let Some(url) = &args.ami else {
        bail!("no AMI given: --ami ami://user:secret@host:5038 (or IPCOUNTRY_AMI, or `ami` in the configuration file)");
    };
    let secret = match &args.ami_secret_file {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read the AMI secret file {}", path.display()))?;
            let line = text.lines().next().unwrap_or("").trim().to_owned();
            Some(Secret::new(line)?)
        }
        None => None,
    };
    Ok(Target::parse(url, secret)?)
}

/// The peers over AMI, under an overall deadline of twenty message deadlines.
pub(crate) async fn from_ami(args: &AmiArgs) -> Result<Inventory> {
    let target = target(args)?;
    let settings = ami::Settings {
        timeout: args.ami_timeout,
        ..ami::Settings::default()
    };
    let overall = args
        .ami_timeout
        .saturating_mul(20)
        .max(Duration::from_secs(1));
    match tokio::time::timeout(overall, ami::collect(&target, settings)).await {
        Ok(Ok(inventory)) => Ok(inventory),
        Ok(Err(e)) => Err(anyhow::Error::new(e).context(format!("AMI {target}"))),
        Err(_) => bail!(
            "AMI {target}: the audit took longer than {}",
            humantime::format_duration(overall)
        ),
    }
}

fn from_stdin(format: CliFormat) -> Result<Inventory> {
    let mut bytes = Vec::new();
    std::io::stdin()
        .take(MAX_STDIN)
        .read_to_end(&mut bytes)
        .context("cannot read stdin")?;
    let text = String::from_utf8_lossy(&bytes);
    let peers = match format {
        CliFormat::Pjsip => cli_text::pjsip_contacts(&text),
        CliFormat::Sip => cli_text::sip_peers(&text),
    };
    Ok(Inventory {
        peers,
        notes: Vec::new(),
    })
}

/// Every peer judged, with the catalog's country for addresses no `geolite` rule names
/// (looked up once per address).
pub(crate) async fn screen(
    store: &Store,
    policy: &Policy,
    peers: Vec<Peer>,
    resolver: &HostResolver,
) -> Result<Vec<Finding>> {
    let mut countries: HashMap<IpAddr, Option<String>> = HashMap::new();
    let mut out = Vec::with_capacity(peers.len());
    for peer in peers {
        let mut finding = audit::judge(policy, peer, resolver).await;
        if let (None, Some(ip)) = (&finding.country, finding.ip) {
            let country = match countries.get(&ip) {
                Some(c) => c.clone(),
                None => {
                    let c = store.catalog_country(ip).await?;
                    countries.insert(ip, c.clone());
                    c
                }
            };
            finding.country = country;
        }
        out.push(finding);
    }
    Ok(out)
}

/// What `watch` saw of this peer on its last pass that saw it: an address (one with a known
/// country if any), and the countries (`GB`, or `GB/SE` for contacts in two).
pub(crate) fn last_seen(seen: &[SeenPeer], finding: &Finding) -> (Option<String>, Option<String>) {
    let mine: Vec<&SeenPeer> = seen
        .iter()
        .filter(|s| s.kind == finding.peer.kind.as_str() && s.name == finding.peer.name)
        .collect();
    let Some(newest) = mine.iter().map(|s| s.last_seen).max() else {
        return (None, None);
    };
    let last: Vec<&SeenPeer> = mine.into_iter().filter(|s| s.last_seen == newest).collect();
    let mut countries: Vec<&str> = last
        .iter()
        .map(|s| s.country.as_str())
        .filter(|c| !c.is_empty())
        .collect();
    countries.sort_unstable();
    countries.dedup();
    let ip = last
        .iter()
        .find(|s| !s.country.is_empty())
        .or(last.first())
        .map(|s| s.ip.clone());
    let country = (!countries.is_empty()).then(|| countries.join("/"));
    (ip, country)
}

fn print(findings: &[Finding], seen: &[SeenPeer], json: bool) -> Result<()> {
    if json {
        #[derive(Serialize)]
        struct Row<'a> {
            peer: &'a str,
            kind: &'a str,
            address: &'a str,
            ip: Option<String>,
            verdict: &'a str,
            rule: Option<&'a str>,
            reason: &'a str,
            country: Option<&'a str>,
            ok: bool,
            status: &'a str,
            last_ip: Option<String>,
            last_country: Option<String>,
        }
        let rows: Vec<Row<'_>> = findings
            .iter()
            .map(|f| {
                let (last_ip, last_country) = last_seen(seen, f);
                Row {
                    peer: &f.peer.name,
                    kind: f.peer.kind.as_str(),
                    address: &f.peer.address,
                    ip: f.ip.map(|ip| ip.to_string()),
                    verdict: f.verdict.as_str(),
                    rule: f.rule.as_deref(),
                    reason: &f.reason,
                    country: f.country.as_deref(),
                    ok: f.ok(),
                    status: &f.peer.status,
                    last_ip,
                    last_country,
                }
            })
            .collect();
        outln!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    let rows: Vec<[String; 6]> = findings
        .iter()
        .map(|f| {
            let rule = match (&f.rule, &f.country) {
                (Some(rule), _) => rule.clone(),
                (None, Some(country)) => format!("- {country}"),
                (None, None) => "-".to_owned(),
            };
            // Names and addresses are Asterisk's, partly written by the devices: escaped.
            [
                Escaped(&f.peer.name).to_string(),
                f.peer.kind.to_string(),
                Escaped(&f.peer.address).to_string(),
                f.verdict.to_string(),
                rule,
                if f.ok() { "ok" } else { "ko" }.to_owned(),
            ]
        })
        .collect();
    let header = ["peer", "kind", "address", "verdict", "rule / country", "ok"].map(String::from);
    let mut widths = header.clone().map(|h| h.chars().count());
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    for row in std::iter::once(&header).chain(&rows) {
        let mut line = String::new();
        for (i, (cell, w)) in row.iter().zip(widths).enumerate() {
            if i + 1 == row.len() {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<w$}  "));
            }
        }
        outln!("{}", line.trim_end());
    }
    Ok(())
}
