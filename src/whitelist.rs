//! `whitelist-gen`: the hosts FreePBX's trunks and extensions name, as permit rules to be.
//!
//! Pure: [`wanted`] turns the rows `store::freepbx` read into [`Wanted`] hosts, each with the
//! note its rule carries (`freepbx:trunk:sipgate`, `freepbx:extension:101`); the command
//! resolves the names and adds the rules through the store's ordinary rule API. What is read:
//!
//! - chan_sip and IAX2 trunks: `host` of the `tr-peer-<trunkid>` row in `sip` / `iax`, named
//!   by `trunks.name`; disabled trunks are left out;
//! - PJSIP trunks: `sip_server` and every item of `match` in `pjsip` (id = trunk id);
//! - extensions: `host` (unless `dynamic`) and `match` of their rows in `sip` and `iax`.
//!
//! A value is an address, a network (`match` allows `203.0.113.0/24`), or a host name.

use std::collections::HashMap;
use std::net::IpAddr;

use crate::ranges::IpRange;
use crate::store::freepbx::FreePbxRows;

/// The note prefix of the rules whitelist-gen manages (the only ones it reports as stale).
pub const NOTE_PREFIX: &str = "freepbx:";

/// A host a trunk or extension names.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Wanted {
    /// The rule's note: `freepbx:trunk:<name>` or `freepbx:extension:<id>`.
    pub note: String,
    /// Where it came from: `sip host`, `pjsip sip_server`, `pjsip match`.
    pub origin: String,
    /// The address, network or name.
    pub host: Host,
}

/// An address range, or a name still to resolve.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Host {
    /// A literal address or network.
    Range(IpRange),
    /// A host name.
    Name(String),
}

/// The hosts of every enabled trunk and every extension with a fixed host, sorted, no
/// duplicates.
pub fn wanted(rows: &FreePbxRows) -> Vec<Wanted> {
    let trunks: HashMap<i64, &crate::store::freepbx::TrunkRow> =
        rows.trunks.iter().map(|t| (t.id, t)).collect();
    let pjsip_names: HashMap<&str, &str> = rows
        .tech
        .iter()
        .filter(|r| r.table == "pjsip" && r.keyword == "trunk_name")
        .map(|r| (r.id.as_str(), r.data.as_str()))
        .collect();
    let mut out = Vec::new();
    for row in &rows.tech {
        if row.keyword == "trunk_name" {
            continue;
        }
        let note = if row.table == "pjsip" {
            // PJSIP trunks only in `pjsip` (extensions live in `sip`).
            let Ok(id) = row.id.parse::<i64>() else {
                continue;
            };
            if trunks.get(&id).is_some_and(|t| t.disabled) {
                continue;
            }
            let name = trunks
                .get(&id)
                .map(|t| t.name.as_str())
                .or_else(|| pjsip_names.get(row.id.as_str()).copied())
                .unwrap_or(row.id.as_str());
            format!("{NOTE_PREFIX}trunk:{}", label(name))
        } else if let Some(n) = row.id.strip_prefix("tr-peer-") {
            let Ok(id) = n.parse::<i64>() else { continue };
            let trunk = trunks.get(&id);
            if trunk.is_some_and(|t| t.disabled) {
                continue;
            }
            let name = trunk.map_or(n, |t| t.name.as_str());
            format!("{NOTE_PREFIX}trunk:{}", label(name))
        } else if row.id.starts_with("tr-") {
            continue; // tr-user-, tr-reg-: the same trunk's other halves
        } else {
            format!("{NOTE_PREFIX}extension:{}", label(&row.id))
        };
        let values: Vec<&str> = if row.keyword == "match" {
            row.data.split([',', ' ']).collect()
        } else {
            vec![row.data.as_str()]
        };
        for v in values {
            if let Some(host) = parse_host(v) {
                out.push(Wanted {
                    note: note.clone(),
                    origin: format!("{} {}", row.table, row.keyword),
                    host,
                });
            }
        }
    }
    out.sort_by(|a, b| (&a.note, &a.host).cmp(&(&b.note, &b.host)));
    out.dedup_by(|a, b| a.note == b.note && a.host == b.host);
    out
}

/// `203.0.113.5`, `[2001:db8::5]`, `203.0.113.0/24`, `203.0.113.0/255.255.255.0`,
/// `sip.example.com`; `None` for `dynamic`, empty values and anything else.
fn parse_host(v: &str) -> Option<Host> {
    let v = v.trim();
    let v = v
        .strip_prefix('[')
        .and_then(|s| s.strip_suffix(']'))
        .unwrap_or(v);
    if v.is_empty() || v.eq_ignore_ascii_case("dynamic") {
        return None;
    }
    if let Ok(ip) = v.parse::<IpAddr>() {
        return Some(Host::Range(IpRange::single(ip)));
    }
    if let Some((addr, mask)) = v.split_once('/') {
        if let (Ok(IpAddr::V4(a)), Ok(IpAddr::V4(m))) = (addr.parse(), mask.parse()) {
            let len = u32::from(m).leading_ones() as u8;
            return ipnet::Ipv4Net::new(a, len)
                .ok()
                .and_then(|n| n.trunc().to_string().parse().ok())
                .map(Host::Range);
        }
        return v.parse::<IpRange>().ok().map(Host::Range);
    }
    let name_ok = v.len() <= 253
        && v.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    name_ok.then(|| Host::Name(v.to_ascii_lowercase()))
}

/// A name safe in a note: letters, digits, `.`, `_`, `-`; anything else becomes `_`.
fn label(s: &str) -> String {
    let l: String = s
        .trim()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    if l.is_empty() {
        "_".to_owned()
    } else {
        l
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::freepbx::{TechRow, TrunkRow};

    fn row(table: &'static str, id: &str, keyword: &str, data: &str) -> TechRow {
        TechRow {
            table,
            id: id.into(),
            keyword: keyword.into(),
            data: data.into(),
        }
    }

    #[test]
    fn trunks_and_extensions_become_notes_and_hosts() {
        let rows = FreePbxRows {
            tech: vec![
                row("sip", "tr-peer-1", "host", "sipgate.de"),
                row("sip", "tr-user-1", "host", "sipgate.de"),
                row("sip", "tr-peer-4", "host", "192.0.2.99"), // disabled trunk
                row("sip", "101", "host", "dynamic"),
                row("sip", "102", "host", "[2001:db8::102]"),
                row(
                    "sip",
                    "103",
                    "match",
                    "198.51.100.0/255.255.255.0, 203.0.113.3",
                ),
                row("pjsip", "2", "sip_server", "203.0.113.50"),
                row("pjsip", "2", "match", "203.0.113.48/29,bad_name!"),
                row("pjsip", "2", "trunk_name", "My Carrier"),
                row("iax", "tr-peer-3", "host", "iax.example.net"),
            ],
            trunks: vec![
                TrunkRow {
                    id: 1,
                    name: "sipgate".into(),
                    tech: "sip".into(),
                    disabled: false,
                },
                TrunkRow {
                    id: 2,
                    name: "My Carrier".into(),
                    tech: "pjsip".into(),
                    disabled: false,
                },
                TrunkRow {
                    id: 3,
                    name: "iaxpeer".into(),
                    tech: "iax".into(),
                    disabled: false,
                },
                TrunkRow {
                    id: 4,
                    name: "old".into(),
                    tech: "sip".into(),
                    disabled: true,
                },
            ],
            missing: vec![],
        };
        let got: Vec<(String, String)> = wanted(&rows)
            .into_iter()
            .map(|w| {
                let h = match w.host {
                    Host::Range(r) => r.to_string(),
                    Host::Name(n) => n,
                };
                (w.note, h)
            })
            .collect();
        let want = [
            ("freepbx:extension:102", "2001:db8::102/128"),
            ("freepbx:extension:103", "198.51.100.0/24"),
            ("freepbx:extension:103", "203.0.113.3/32"),
            ("freepbx:trunk:My_Carrier", "203.0.113.48/29"),
            ("freepbx:trunk:My_Carrier", "203.0.113.50/32"),
            ("freepbx:trunk:iaxpeer", "iax.example.net"),
            ("freepbx:trunk:sipgate", "sipgate.de"),
        ];
        let want: Vec<(String, String)> = want
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        assert_eq!(got, want);
    }
}
