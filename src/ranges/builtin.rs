//! Built-in permit rules for private and local address space.
//!
//! Calls from the LAN, the loopback interface or a carrier-grade NAT are never strangers, so
//! these ranges are permitted without being stored. They are compiled in and handed to
//! `RangeTable::build` next to the stored rules (deny rules still beat them). Their ids are
//! negative (`-1`, `-2`, ...) so they never collide with the store's row ids.

use super::range::IpRange;
use super::rule::{Rule, RuleKind, RuleSource};

/// The built-in PERMIT rules: RFC 1918 private space, loopback, link-local and RFC 6598 shared
/// space for IPv4; loopback, unique local and link-local for IPv6.
///
/// Each has source [`RuleSource::Builtin`], an empty country, a note naming the kind of space,
/// and a distinct negative id.
pub fn rules() -> Vec<Rule> {
    BUILTINS
        .iter()
        .zip(1i64..)
        .map(|(&(range, note), n)| Rule {
            id: -n,
            kind: RuleKind::Permit,
            range,
            country: String::new(),
            source: RuleSource::Builtin,
            note: note.to_owned(),
            terms: Default::default(),
        })
        .collect()
}

/// The built-in ranges and their notes, in id order.
const BUILTINS: [(IpRange, &str); 9] = [
    (v4_net([10, 0, 0, 0], 8), "RFC 1918 private"),
    (v4_net([172, 16, 0, 0], 12), "RFC 1918 private"),
    (v4_net([192, 168, 0, 0], 16), "RFC 1918 private"),
    (v4_net([127, 0, 0, 0], 8), "loopback"),
    (v4_net([169, 254, 0, 0], 16), "link-local"),
    (v4_net([100, 64, 0, 0], 10), "RFC 6598 shared (CGNAT)"),
    (v6_net(1, 128), "IPv6 loopback"),
    (v6_net(0xfc00 << 112, 7), "IPv6 unique local"),
    (v6_net(0xfe80 << 112, 10), "IPv6 link-local"),
];

/// The range of the IPv4 network `octets/prefix` (`prefix` in `1..=32`, host bits clear).
const fn v4_net(octets: [u8; 4], prefix: u32) -> IpRange {
    let start = u32::from_be_bytes(octets);
    let host_mask = u32::MAX >> prefix;
    // `start <= start | host_mask`, so the `IpRange` invariant holds.
    IpRange::V4 {
        start,
        end: start | host_mask,
    }
}

/// The range of the IPv6 network `start/prefix` (`prefix` in `1..=128`, host bits clear).
const fn v6_net(start: u128, prefix: u32) -> IpRange {
    let host_mask = if prefix >= 128 {
        0
    } else {
        u128::MAX >> prefix
    };
    // `start <= start | host_mask`, so the `IpRange` invariant holds.
    IpRange::V6 {
        start,
        end: start | host_mask,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::net::IpAddr;

    use super::*;

    #[test]
    fn ranges_and_notes_match_the_rfcs() {
        let got: Vec<(String, String)> = rules()
            .into_iter()
            .map(|r| (r.range.to_string(), r.note))
            .collect();
        let want = [
            ("10.0.0.0/8", "RFC 1918 private"),
            ("172.16.0.0/12", "RFC 1918 private"),
            ("192.168.0.0/16", "RFC 1918 private"),
            ("127.0.0.0/8", "loopback"),
            ("169.254.0.0/16", "link-local"),
            ("100.64.0.0/10", "RFC 6598 shared (CGNAT)"),
            ("::1/128", "IPv6 loopback"),
            ("fc00::/7", "IPv6 unique local"),
            ("fe80::/10", "IPv6 link-local"),
        ];
        let want: Vec<(String, String)> = want
            .iter()
            .map(|(r, n)| (r.to_string(), n.to_string()))
            .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn ranges_equal_their_parsed_cidrs() {
        for rule in rules() {
            let parsed: IpRange = rule.range.to_string().parse().unwrap();
            assert_eq!(parsed, rule.range);
            assert_eq!(rule.range.to_cidrs().len(), 1, "{rule}");
        }
        assert_eq!("172.16.0.0/12".parse::<IpRange>(), Ok(rules()[1].range));
        assert_eq!("fe80::/10".parse::<IpRange>(), Ok(rules()[8].range));
    }

    #[test]
    fn all_permit_builtin_with_distinct_negative_ids() {
        let rules = rules();
        let ids: HashSet<i64> = rules.iter().map(|r| r.id).collect();
        assert_eq!(ids.len(), rules.len());
        for (n, rule) in rules.iter().enumerate() {
            assert_eq!(rule.id, -(n as i64) - 1);
            assert_eq!(rule.kind, RuleKind::Permit);
            assert_eq!(rule.source, RuleSource::Builtin);
            assert_eq!(rule.country, "");
        }
    }

    #[test]
    fn edges_of_the_ranges() {
        let hit = |ip: &str| {
            let ip: IpAddr = ip.parse().unwrap();
            rules().iter().any(|r| r.range.contains(ip))
        };
        for inside in [
            "10.0.0.0",
            "10.255.255.255",
            "172.16.0.0",
            "172.31.255.255",
            "192.168.1.1",
            "127.0.0.1",
            "169.254.0.1",
            "100.64.0.0",
            "100.127.255.255",
            "::1",
            "fc00::1",
            "fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
            "fe80::1",
            "febf:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
            "::ffff:192.168.0.1",
        ] {
            assert!(hit(inside), "{inside} should be built-in");
        }
        for outside in [
            "9.255.255.255",
            "11.0.0.0",
            "172.15.255.255",
            "172.32.0.0",
            "100.63.255.255",
            "100.128.0.0",
            "8.8.8.8",
            "::",
            "::2",
            "fbff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
            "fe00::",
            "fec0::",
            "2001:db8::1",
        ] {
            assert!(!hit(outside), "{outside} should not be built-in");
        }
    }

    #[test]
    fn display_names_the_builtin() {
        assert_eq!(
            rules()[0].to_string(),
            "permit builtin 10.0.0.0/8 RFC 1918 private"
        );
    }
}
