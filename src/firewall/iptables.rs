//! iptables + ipset, for boxes without nftables: the same sets and chain in the older tools.
//!
//! [`ipset_restore`] is input for `ipset restore`: per set and family, a `hash:net` set filled
//! under a temporary name, then `swap`ped with the live one in one step (the rules that use a
//! set never see it half-filled) and the temporary one destroyed. The strangers sets
//! (`hash:ip` with a one-day timeout) are created if missing and never flushed.
//! [`restore_fragment`] is input for `iptables-restore --noflush` (IPv4) or
//! `ip6tables-restore --noflush` (IPv6): chains of ipcountry's own, `ipcountry` (the VoIP
//! ports, jumping to `ipcountry-voip`) and `ipcountry-voip` (deny, blocked, permit, drop), each
//! flushed and refilled by the restore; no other chain is touched. The jump from `INPUT` is
//! added once by the admin (`iptables -C INPUT -j ipcountry || iptables -I INPUT -j ipcountry`).

use std::fmt::Write as _;

use super::{Proto, Sets, VoipPorts};
use crate::ranges::IpRange;

/// Every `hash:net` set gets this `maxelem` (the same each time, so that `create -exist` of an
/// existing set always matches; elements cost memory only as they are added).
pub const MAXELEM: usize = 1 << 21;

/// Seconds an entry of the strangers sets lasts unless added with its own timeout.
pub const STRANGER_TIMEOUT_SECS: u32 = 86_400;

/// The IP family of a fragment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IpFamily {
    /// `iptables-restore`.
    V4,
    /// `ip6tables-restore`.
    V6,
}

impl IpFamily {
    fn suffix(self) -> &'static str {
        match self {
            IpFamily::V4 => "4",
            IpFamily::V6 => "6",
        }
    }

    fn ipset_family(self) -> &'static str {
        match self {
            IpFamily::V4 => "inet",
            IpFamily::V6 => "inet6",
        }
    }
}

/// Why a set does not fit.
#[derive(Debug, thiserror::Error)]
#[error("set {set} would hold {count} networks, more than ipset's maxelem {MAXELEM}")]
pub struct TooLarge {
    /// The set.
    pub set: String,
    /// Its networks.
    pub count: usize,
}

/// `ipset restore` input for both families.
pub fn ipset_restore(sets: &Sets) -> Result<String, TooLarge> {
    let mut out = String::new();
    for (name, ranges) in sets.named() {
        let family = if name.ends_with('4') {
            IpFamily::V4
        } else {
            IpFamily::V6
        };
        let live = format!("ipcountry-{name}");
        let tmp = format!("{live}-tmp");
        let fam = family.ipset_family();
        let nets: Vec<ipnet::IpNet> = ranges.iter().flat_map(|r: &IpRange| r.to_cidrs()).collect();
        if nets.len() > MAXELEM {
            return Err(TooLarge {
                set: live,
                count: nets.len(),
            });
        }
        let _ = writeln!(
            out,
            "create {tmp} hash:net family {fam} maxelem {MAXELEM} -exist\nflush {tmp}"
        );
        for net in nets {
            let _ = writeln!(out, "add {tmp} {net}");
        }
        let _ = writeln!(
            out,
            "create {live} hash:net family {fam} maxelem {MAXELEM} -exist\nswap {tmp} {live}\ndestroy {tmp}"
        );
    }
    for family in [IpFamily::V4, IpFamily::V6] {
        let _ = writeln!(
            out,
            "create ipcountry-strangers{} hash:ip family {} timeout {STRANGER_TIMEOUT_SECS} -exist",
            family.suffix(),
            family.ipset_family()
        );
    }
    Ok(out)
}

/// `iptables-restore --noflush` (or `ip6tables-restore --noflush`) input for one family.
pub fn restore_fragment(family: IpFamily, ports: &VoipPorts) -> String {
    let v = family.suffix();
    let mut out = String::from("*filter\n:ipcountry - [0:0]\n:ipcountry-voip - [0:0]\n");
    for proto in [Proto::Udp, Proto::Tcp] {
        let list: Vec<String> = ports.spelled(proto, ':');
        // multiport takes at most 15 ports, a range counting as two.
        let mut chunk: Vec<&str> = Vec::new();
        let mut weight = 0;
        let flush = |chunk: &mut Vec<&str>, out: &mut String| {
            if !chunk.is_empty() {
                let _ = writeln!(
                    out,
                    "-A ipcountry -p {p} -m {p} -m multiport --dports {} -j ipcountry-voip",
                    chunk.join(","),
                    p = proto.as_str()
                );
                chunk.clear();
            }
        };
        for item in &list {
            let w = if item.contains(':') { 2 } else { 1 };
            if weight + w > 15 {
                flush(&mut chunk, &mut out);
                weight = 0;
            }
            chunk.push(item);
            weight += w;
        }
        flush(&mut chunk, &mut out);
    }
    let _ = write!(
        out,
        concat!(
            "-A ipcountry-voip -m set --match-set ipcountry-deny{v} src -j DROP\n",
            "-A ipcountry-voip -m set --match-set ipcountry-strangers{v} src -j DROP\n",
            "-A ipcountry-voip -m set --match-set ipcountry-permit{v} src -j ACCEPT\n",
            "-A ipcountry-voip -j DROP\n",
            "COMMIT\n"
        ),
        v = v
    );
    out
}
