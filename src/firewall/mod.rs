//! The policy in the kernel: the compiled snapshot as firewall sets and one VoIP-only chain.
//!
//! Data flows one way: a [`Policy`] (the same snapshot every call is decided on) becomes
//! [`Sets`], the merged, non-overlapping permit and deny intervals per family (builtins
//! included; expired entries and shadow rules left out, as the snapshot already leaves them
//! out of its table); [`nft`] renders them as one `inet ipcountry` table, [`iptables`] as
//! `ipset restore` and `iptables-restore --noflush` input; [`apply`] loads a ruleset with
//! `nft` (check first, one transaction, a backup to roll back to).
//!
//! Only the VoIP ports ([`VoipPorts`]) are filtered: denied sources are dropped, permitted
//! ones accepted, the rest dropped. Every other port (SSH, the web UI) is left alone, so a
//! ruleset cannot lock the admin out.

pub mod apply;
pub mod iptables;
pub mod keeper;
pub mod nft;

use std::fmt;
use std::str::FromStr;

use crate::policy::Policy;
use crate::ranges::{IpRange, RuleKind};

/// Why a firewall operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FirewallError {
    /// A port specification did not parse.
    #[error("not a port specification: {0:?} (use udp/5060-5061, tcp/5060, udp/4569)")]
    Ports(String),
    /// A tool could not be started.
    #[error("cannot run {tool}: {source}")]
    Spawn {
        /// The program.
        tool: String,
        /// Why.
        source: std::io::Error,
    },
    /// A tool refused the ruleset (its stderr).
    #[error("{tool} refused the ruleset: {stderr}")]
    Refused {
        /// The program and its arguments.
        tool: String,
        /// What it said.
        stderr: String,
    },
    /// The state directory could not be written or read.
    #[error("{what} {path}: {source}")]
    State {
        /// What was being done.
        what: &'static str,
        /// The file or directory.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// `--rollback` with no backup to go back to.
    #[error("no backup to roll back to in {0}")]
    NoBackup(String),
}

/// The permit and deny intervals of a snapshot, merged and sorted, per family.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sets {
    /// IPv4 permit intervals.
    pub permit4: Vec<IpRange>,
    /// IPv6 permit intervals.
    pub permit6: Vec<IpRange>,
    /// IPv4 deny intervals.
    pub deny4: Vec<IpRange>,
    /// IPv6 deny intervals.
    pub deny6: Vec<IpRange>,
}

impl Sets {
    /// The deciding rules of `policy` (its compiled table: builtins when on, no expired entry,
    /// no shadow rule), merged per kind and family. Deny beats permit in the chain (denied
    /// sources are dropped before permitted ones are accepted), so overlaps between the two
    /// kinds need no resolving here.
    pub fn from_policy(policy: &Policy) -> Sets {
        let mut sets = Sets::default();
        for rule in policy.table().rules() {
            let list = match (rule.kind, rule.range) {
                (RuleKind::Permit, IpRange::V4 { .. }) => &mut sets.permit4,
                (RuleKind::Permit, IpRange::V6 { .. }) => &mut sets.permit6,
                (RuleKind::Deny, IpRange::V4 { .. }) => &mut sets.deny4,
                (RuleKind::Deny, IpRange::V6 { .. }) => &mut sets.deny6,
            };
            list.push(rule.range);
        }
        for list in [
            &mut sets.permit4,
            &mut sets.permit6,
            &mut sets.deny4,
            &mut sets.deny6,
        ] {
            *list = merge(std::mem::take(list));
        }
        sets
    }

    /// The four sets with their names (`permit4`, `permit6`, `deny4`, `deny6`).
    pub fn named(&self) -> [(&'static str, &[IpRange]); 4] {
        [
            ("permit4", &self.permit4),
            ("permit6", &self.permit6),
            ("deny4", &self.deny4),
            ("deny6", &self.deny6),
        ]
    }
}

/// Sorts `ranges` (all of one family) and merges overlapping and adjacent ones.
fn merge(mut ranges: Vec<IpRange>) -> Vec<IpRange> {
    ranges.sort_by_key(|r| bounds(r).0);
    let mut out: Vec<IpRange> = Vec::with_capacity(ranges.len());
    for r in ranges {
        let (start, end) = bounds(&r);
        if let Some(last) = out.last_mut() {
            let (ls, le) = bounds(last);
            if start <= le.saturating_add(1) {
                if end > le {
                    *last = rebuild(last, ls, end);
                }
                continue;
            }
        }
        out.push(r);
    }
    out
}

fn bounds(r: &IpRange) -> (u128, u128) {
    match *r {
        IpRange::V4 { start, end } => (u128::from(start), u128::from(end)),
        IpRange::V6 { start, end } => (start, end),
    }
}

/// `like`'s family over `[start, end]` (both taken from ranges of that family).
fn rebuild(like: &IpRange, start: u128, end: u128) -> IpRange {
    match like {
        // Both bounds came from IPv4 ranges, so they fit.
        IpRange::V4 { .. } => IpRange::V4 {
            start: start as u32,
            end: end as u32,
        },
        IpRange::V6 { .. } => IpRange::V6 { start, end },
    }
}

/// Transport protocols the chain filters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Proto {
    /// UDP (SIP, IAX2, RTP).
    Udp,
    /// TCP (SIP over TCP/TLS).
    Tcp,
}

impl Proto {
    /// `udp` or `tcp`.
    pub fn as_str(self) -> &'static str {
        match self {
            Proto::Udp => "udp",
            Proto::Tcp => "tcp",
        }
    }
}

/// One protocol's port range: `udp/10000-20000`, `tcp/5061`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortRange {
    /// The protocol.
    pub proto: Proto,
    /// First port.
    pub first: u16,
    /// Last port (inclusive, `>= first`).
    pub last: u16,
}

impl FromStr for PortRange {
    type Err = FirewallError;

    /// `udp/5060-5061`, `tcp/5060`, `udp:4569` (case-insensitive).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || FirewallError::Ports(s.to_owned());
        let t = s.trim().to_ascii_lowercase();
        let (proto, ports) = t.split_once(['/', ':']).ok_or_else(bad)?;
        let proto = match proto {
            "udp" => Proto::Udp,
            "tcp" => Proto::Tcp,
            _ => return Err(bad()),
        };
        let (a, b) = ports.split_once('-').unwrap_or((ports, ports));
        let first: u16 = a.trim().parse().map_err(|_| bad())?;
        let last: u16 = b.trim().parse().map_err(|_| bad())?;
        if first == 0 || last < first {
            return Err(bad());
        }
        Ok(PortRange { proto, first, last })
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.first == self.last {
            write!(f, "{}/{}", self.proto.as_str(), self.first)
        } else {
            write!(f, "{}/{}-{}", self.proto.as_str(), self.first, self.last)
        }
    }
}

/// The ports the chain filters; nothing else is touched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VoipPorts(Vec<PortRange>);

/// The default VoIP ports: SIP on UDP and TCP 5060-5061, IAX2 on UDP 4569, RTP on UDP
/// 10000-20000 (Asterisk's `rtp.conf` default).
pub const DEFAULT_PORTS: &[&str] = &[
    "udp/5060-5061",
    "tcp/5060-5061",
    "udp/4569",
    "udp/10000-20000",
];

impl VoipPorts {
    /// These port ranges.
    pub fn new(ranges: Vec<PortRange>) -> VoipPorts {
        VoipPorts(ranges)
    }

    /// The ranges of one protocol, sorted, as `(first, last)`.
    pub fn of(&self, proto: Proto) -> Vec<(u16, u16)> {
        let mut v: Vec<(u16, u16)> = self
            .0
            .iter()
            .filter(|p| p.proto == proto)
            .map(|p| (p.first, p.last))
            .collect();
        v.sort_unstable();
        v.dedup();
        v
    }

    /// The ranges of one protocol as the rule languages write them: `5060`, or `first` and
    /// `last` joined by `sep` (`-` for nftables, `:` for iptables' multiport).
    pub fn spelled(&self, proto: Proto, sep: char) -> Vec<String> {
        self.of(proto)
            .into_iter()
            .map(|(a, b)| {
                if a == b {
                    a.to_string()
                } else {
                    format!("{a}{sep}{b}")
                }
            })
            .collect()
    }
}

impl Default for VoipPorts {
    fn default() -> Self {
        VoipPorts(
            DEFAULT_PORTS
                .iter()
                .filter_map(|s| s.parse().ok())
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests;
