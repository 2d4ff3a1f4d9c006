//! Tests of `table.rs` (kept in their own file to keep the module readable).

use std::net::{Ipv4Addr, Ipv6Addr};

use proptest::prelude::*;

use super::*;
use crate::ranges::builtin;
use crate::ranges::index::WINDOW;
use crate::ranges::range::Family;
use crate::ranges::rule::RuleSource;
use RuleKind::{Deny as D, Permit as P};

/// The oracle: scan every rule, keep those containing `ip`, pick by the documented
/// precedence (deny first, then smallest range, then lowest id, then earliest).
fn naive_lookup(rules: &[Rule], ip: IpAddr) -> Option<&Rule> {
    let size = |r: &IpRange| match *r {
        IpRange::V4 { start, end } => u128::from(end - start),
        IpRange::V6 { start, end } => end - start,
    };
    let mut best: Option<&Rule> = None;
    for rule in rules.iter().filter(|r| r.range.contains(ip)) {
        let better = match best {
            None => true,
            Some(b) => {
                let rank = |r: &Rule| {
                    (
                        r.kind == RuleKind::Deny,
                        Reverse(size(&r.range)),
                        Reverse(r.id),
                    )
                };
                rank(rule) > rank(b)
            }
        };
        if better {
            best = Some(rule);
        }
    }
    best
}

/// [`RangeTable::build`], for rule sets far below [`MAX_RULES`].
fn build(rules: Vec<Rule>) -> RangeTable {
    RangeTable::build(rules).unwrap()
}

/// [`BinarySearchTable::build`], likewise.
fn build_reference(rules: Vec<Rule>) -> BinarySearchTable {
    BinarySearchTable::build(rules).unwrap()
}

fn rule(id: i64, kind: RuleKind, range: &str) -> Rule {
    rule_at(id, kind, range.parse().unwrap(), format!("{kind} {id}"))
}

/// A custom rule of country `AA`.
fn rule_at(id: i64, kind: RuleKind, range: IpRange, note: String) -> Rule {
    Rule {
        id,
        kind,
        range,
        country: "AA".into(),
        source: RuleSource::Custom,
        note,
        terms: Default::default(),
    }
}

fn permit(id: i64, range: &str) -> Rule {
    rule(id, RuleKind::Permit, range)
}

fn deny(id: i64, range: &str) -> Rule {
    rule(id, RuleKind::Deny, range)
}

/// `(kind, id)` of the rule that decides `ip`, checked against the oracle.
fn decide(table: &RangeTable, ip: &str) -> Option<(RuleKind, i64)> {
    let ip: IpAddr = ip.parse().unwrap();
    let got = table.lookup(ip);
    assert_eq!(
        got,
        naive_lookup(table.rules(), ip),
        "oracle disagrees at {ip}"
    );
    let reference = build_reference(table.rules().to_vec());
    assert_eq!(got, reference.lookup(ip), "binary search disagrees at {ip}");
    got.map(|r| (r.kind, r.id))
}

/// What a case table says an address is decided by: `(kind, id)`, or no rule.
type Decided = Option<(RuleKind, i64)>;

/// Asserts that `table` decides each address of `cases` as its row says (see [`decide`]).
fn assert_decides(table: &RangeTable, cases: &[(&str, Decided)]) {
    for &(ip, want) in cases {
        assert_eq!(decide(table, ip), want, "at {ip}");
    }
}

/// Asserts that `table` and the binary search over `rules` agree on every IPv4 address of
/// `keys`, on the rule and on its kind.
fn assert_agrees_with_reference(
    table: &RangeTable,
    rules: Vec<Rule>,
    keys: impl IntoIterator<Item = u32>,
) {
    let reference = build_reference(rules);
    for k in keys {
        let ip = IpAddr::V4(Ipv4Addr::from(k));
        let want = reference.lookup(ip);
        assert_eq!(table.lookup(ip), want, "at {ip}");
        assert_eq!(table.kind(ip), want.map(|r| r.kind), "kind at {ip}");
    }
}

#[test]
fn empty_table() {
    for table in [RangeTable::default(), build(Vec::new())] {
        assert_decides(&table, &[("203.0.113.7", None), ("::", None)]);
        assert_eq!(table.segment_counts(), (0, 0));
        assert_eq!(table.heap_bytes(), 0);
        assert!(table.rules().is_empty());
    }
}

#[test]
fn deny_inside_permit() {
    let t = build(vec![permit(1, "10.0.0.0/8"), deny(2, "10.1.0.0/16")]);
    assert_decides(
        &t,
        &[
            ("10.0.255.255", Some((P, 1))),
            ("10.1.0.0", Some((D, 2))),
            ("10.1.2.3", Some((D, 2))),
            ("10.1.255.255", Some((D, 2))),
            ("10.2.0.0", Some((P, 1))),
            ("9.255.255.255", None),
            ("11.0.0.0", None),
        ],
    );
    assert_eq!(t.segment_counts(), (3, 0));
}

#[test]
fn permit_inside_deny_is_still_denied() {
    let t = build(vec![deny(1, "203.0.0.0/8"), permit(2, "203.0.113.0/24")]);
    assert_decides(
        &t,
        &[
            ("203.0.113.7", Some((D, 1))),
            ("203.0.113.0", Some((D, 1))),
            ("203.255.255.255", Some((D, 1))),
        ],
    );
    // The permit never wins anywhere, so the deny is one merged segment.
    assert_eq!(t.segment_counts(), (1, 0));
}

#[test]
fn nested_permits_pick_the_most_specific() {
    let t = build(vec![
        permit(1, "0.0.0.0/0"),
        permit(2, "203.0.113.0/24"),
        permit(3, "203.0.0.0/8"),
        permit(4, "203.0.113.64-203.0.113.70"),
    ]);
    assert_decides(
        &t,
        &[
            ("8.8.8.8", Some((P, 1))),
            ("203.1.0.0", Some((P, 3))),
            ("203.0.113.63", Some((P, 2))),
            ("203.0.113.64", Some((P, 4))),
            ("203.0.113.70", Some((P, 4))),
            ("203.0.113.71", Some((P, 2))),
        ],
    );
}

#[test]
fn nested_denies_pick_the_most_specific() {
    let t = build(vec![
        deny(5, "2001:db8::/32"),
        deny(6, "2001:db8:1::/48"),
        permit(7, "2001:db8:1:2::/64"),
    ]);
    assert_decides(
        &t,
        &[
            ("2001:db8::1", Some((D, 5))),
            ("2001:db8:1:2::1", Some((D, 6))),
            ("2001:db8:2::", Some((D, 5))),
        ],
    );
}

#[test]
fn identical_ranges_pick_the_lowest_id() {
    let cases = [
        (
            vec![
                permit(7, "198.51.100.0/24"),
                permit(3, "198.51.100.0/24"),
                permit(5, "198.51.100.0/24"),
            ],
            ("198.51.100.1", Some((P, 3))),
        ),
        // Same range as a permit with a lower id: the deny still wins.
        (
            vec![permit(1, "198.51.100.0/24"), deny(9, "198.51.100.0/24")],
            ("198.51.100.1", Some((D, 9))),
        ),
        // Negative (builtin) ids are lower than stored ones.
        (
            vec![permit(1, "10.0.0.0/8"), permit(-1, "10.0.0.0/8")],
            ("10.9.9.9", Some((P, -1))),
        ),
    ];
    for (rules, case) in cases {
        assert_decides(&build(rules), &[case]);
    }
}

#[test]
fn identical_rules_pick_the_first() {
    let a = permit(4, "198.51.100.0/24");
    let mut b = a.clone();
    b.note = "second".into();
    let t = build(vec![a.clone(), b]);
    assert_eq!(t.lookup("198.51.100.9".parse().unwrap()), Some(&a));
}

#[test]
fn adjacent_ranges_keep_their_boundaries() {
    let t = build(vec![
        permit(1, "192.0.2.0-192.0.2.127"),
        permit(2, "192.0.2.128-192.0.2.255"),
        deny(3, "192.0.3.0/24"),
    ]);
    assert_decides(
        &t,
        &[
            ("192.0.1.255", None),
            ("192.0.2.127", Some((P, 1))),
            ("192.0.2.128", Some((P, 2))),
            ("192.0.2.255", Some((P, 2))),
            ("192.0.3.0", Some((D, 3))),
            ("192.0.4.0", None),
        ],
    );
    assert_eq!(t.segment_counts(), (3, 0));
}

#[test]
fn segments_of_one_rule_are_merged() {
    // 100.0.0.0/24 wins on both sides of the point where the wider rule starts.
    let t = build(vec![
        permit(1, "100.0.0.0/24"),
        permit(2, "100.0.0.128-100.0.3.255"),
    ]);
    assert_eq!(t.segment_counts(), (2, 0));
    assert_decides(
        &t,
        &[("100.0.0.200", Some((P, 1))), ("100.0.1.0", Some((P, 2)))],
    );
    // A deny in the middle splits a permit in three.
    let t = build(vec![permit(1, "100.0.0.0/16"), deny(2, "100.0.5.0/24")]);
    assert_eq!(t.segment_counts(), (3, 0));
}

#[test]
fn edges_at_zero_and_max() {
    const V6_MAX: &str = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff";
    let t = build(vec![
        permit(1, "0.0.0.0/0"),
        deny(2, "0.0.0.0"),
        deny(3, "255.255.255.255"),
        permit(4, "::/0"),
        deny(5, "::"),
        deny(6, V6_MAX),
    ]);
    assert_decides(
        &t,
        &[
            ("0.0.0.0", Some((D, 2))),
            ("0.0.0.1", Some((P, 1))),
            ("255.255.255.254", Some((P, 1))),
            ("255.255.255.255", Some((D, 3))),
            ("::", Some((D, 5))),
            ("::1", Some((P, 4))),
            ("ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe", Some((P, 4))),
            (V6_MAX, Some((D, 6))),
        ],
    );
    assert_eq!(t.segment_counts(), (3, 3));

    let t = build(vec![permit(1, "255.255.255.0/24"), permit(2, "ffff::/16")]);
    assert_decides(
        &t,
        &[
            ("255.255.255.255", Some((P, 1))),
            ("255.255.254.255", None),
            (V6_MAX, Some((P, 2))),
            ("fffe:ffff:ffff:ffff:ffff:ffff:ffff:ffff", None),
        ],
    );
}

#[test]
fn families_do_not_mix() {
    let t = build(vec![permit(1, "0.0.0.0/0")]);
    assert_decides(&t, &[("2001:db8::1", None), ("::", None)]);
    let t = build(vec![permit(1, "::/0")]);
    assert_decides(&t, &[("1.2.3.4", None)]);
}

#[test]
fn v4_mapped_lookup_hits_the_ipv4_rule() {
    let t = build(vec![permit(1, "203.0.113.0/24"), deny(2, "198.51.100.7")]);
    assert_decides(
        &t,
        &[
            ("::ffff:203.0.113.7", Some((P, 1))),
            ("::ffff:198.51.100.7", Some((D, 2))),
            ("::ffff:198.51.100.8", None),
        ],
    );
    // A mapped rule was canonicalized at parse time, so it is an IPv4 rule too.
    let t = build(vec![permit(3, "::ffff:192.0.2.0/120")]);
    assert_decides(&t, &[("192.0.2.1", Some((P, 3)))]);
    assert_eq!(t.segment_counts(), (1, 0));
}

#[test]
fn builtins_permit_local_space_but_lose_to_deny() {
    let t = build(builtin::rules());
    for (ip, note) in [
        ("192.168.1.10", Some("RFC 1918 private")),
        ("172.20.0.1", Some("RFC 1918 private")),
        ("127.0.0.1", Some("loopback")),
        ("100.100.0.1", Some("RFC 6598 shared (CGNAT)")),
        ("::ffff:10.0.0.1", Some("RFC 1918 private")),
        ("::1", Some("IPv6 loopback")),
        ("fd00::1", Some("IPv6 unique local")),
        ("fe80::1", Some("IPv6 link-local")),
        ("8.8.8.8", None),
        ("2001:db8::1", None),
    ] {
        let hit = t.lookup(ip.parse().unwrap()).map(|r| r.note.as_str());
        assert_eq!(hit, note, "at {ip}");
    }
    assert_eq!(t.segment_counts(), (6, 3));

    let mut rules = builtin::rules();
    rules.push(deny(1, "192.168.66.0/24"));
    let t = build(rules);
    assert_decides(
        &t,
        &[
            ("192.168.66.6", Some((D, 1))),
            ("192.168.67.0", Some((P, -3))),
        ],
    );
}

#[test]
fn rules_are_kept_in_order_and_segments_are_counted() {
    let rules = vec![
        permit(2, "10.0.0.0/8"),
        deny(1, "2001:db8::/32"),
        permit(9, "::1"),
    ];
    let t = build(rules.clone());
    assert_eq!(t.rules(), &rules[..]);
    assert_eq!(t.segment_counts(), (1, 2));
    assert!(t.heap_bytes() >= 4 + 4 + 4 + 2 * (16 + 16 + 4));
}

// ---- property tests against the oracle ----

/// A key crowded near 0, near `max`, and in one small window in the middle, so that
/// random ranges overlap a lot and touch both edges.
fn key(max: u128, middle: u128) -> impl Strategy<Value = u128> {
    prop_oneof![
        0..24u128,
        (0..24u128).prop_map(move |d| max - d),
        (0..48u128).prop_map(move |d| middle + d),
    ]
}

fn v4_key() -> impl Strategy<Value = u128> {
    key(u128::from(u32::MAX), 0x8000_0000)
}

/// The middle window straddles the IPv4-mapped block `::ffff:0:0/96`.
fn v6_key() -> impl Strategy<Value = u128> {
    key(u128::MAX, 0xffff_0000_0000 - 24)
}

/// A range of either family, its ends drawn from `v4` (as IPv4 addresses) or from `v6`.
fn range_of<S4, S6>(v4: fn() -> S4, v6: fn() -> S6) -> impl Strategy<Value = IpRange>
where
    S4: Strategy<Value = u128>,
    S6: Strategy<Value = u128>,
{
    prop_oneof![
        (v4(), v4()).prop_map(|(a, b)| IpRange::V4 {
            start: a.min(b) as u32,
            end: a.max(b) as u32
        }),
        (v6(), v6()).prop_map(|(a, b)| IpRange::V6 {
            start: a.min(b),
            end: a.max(b)
        }),
    ]
}

/// Up to 23 rules on `range`s, of either kind, with ids that collide (builtin ones included).
fn rules_of(range: impl Strategy<Value = IpRange>) -> impl Strategy<Value = Vec<Rule>> {
    prop::collection::vec((range, any::<bool>(), -3i64..8), 0..24).prop_map(|specs| {
        specs
            .into_iter()
            .enumerate()
            .map(|(n, (range, is_deny, id))| {
                let kind = if is_deny {
                    RuleKind::Deny
                } else {
                    RuleKind::Permit
                };
                rule_at(id, kind, range, format!("rule {n}"))
            })
            .collect()
    })
}

fn rules_strategy() -> impl Strategy<Value = Vec<Rule>> {
    rules_of(range_of(v4_key, v6_key))
}

fn addr(v4: bool, key: u128) -> IpAddr {
    if v4 {
        IpAddr::V4(Ipv4Addr::from(key as u32))
    } else {
        IpAddr::V6(Ipv6Addr::from(key))
    }
}

/// Every rule's boundaries ±1, plus the random probes, in both families; IPv4 probes are
/// also tried in their IPv4-mapped form.
fn probes(rules: &[Rule], v4: &[u128], v6: &[u128]) -> Vec<IpAddr> {
    let mut out = Vec::new();
    let mut near = |is_v4: bool, k: u128, max: u128| {
        for k in [
            k.checked_sub(1),
            Some(k),
            k.checked_add(1).filter(|&k| k <= max),
        ] {
            out.extend(k.map(|k| addr(is_v4, k)));
        }
    };
    for rule in rules {
        match rule.range {
            IpRange::V4 { start, end } => {
                near(true, start.into(), u32::MAX.into());
                near(true, end.into(), u32::MAX.into());
            }
            IpRange::V6 { start, end } => {
                near(false, start, u128::MAX);
                near(false, end, u128::MAX);
            }
        }
    }
    out.extend(v4.iter().map(|&k| addr(true, k)));
    out.extend(v6.iter().map(|&k| addr(false, k)));
    let mapped: Vec<IpAddr> = out
        .iter()
        .filter_map(|ip| match ip {
            IpAddr::V4(a) => Some(IpAddr::V6(a.to_ipv6_mapped())),
            IpAddr::V6(_) => None,
        })
        .collect();
    out.extend(mapped);
    out
}

fn check_segments<K: Key>(s: &Segments<K>, rules: &[Rule]) -> Result<(), TestCaseError> {
    prop_assert_eq!(s.starts.len(), s.ends.len());
    prop_assert_eq!(s.starts.len(), s.rule.len());
    for i in 0..s.len() {
        prop_assert!(s.starts[i] <= s.ends[i]);
        prop_assert!(((s.rule[i] & INDEX_MASK) as usize) < rules.len());
        if i + 1 < s.len() {
            prop_assert!(
                s.ends[i] < s.starts[i + 1],
                "segments overlap or are unsorted"
            );
            let touching = s.ends[i].successor() == Some(s.starts[i + 1]);
            prop_assert!(
                !(touching && s.rule[i] == s.rule[i + 1]),
                "unmerged segments"
            );
        }
    }
    Ok(())
}

/// The IPv4 layout: the reference's segments, each labelled with its rule's index and kind.
fn check_v4_layout(
    t: &V4Table,
    reference: &Segments<u32>,
    rules: &[Rule],
) -> Result<(), TestCaseError> {
    let segs = t.index.segments();
    prop_assert_eq!(segs.len(), reference.len());
    for (i, seg) in segs.iter().enumerate() {
        let (start, end, label) = (seg.start, seg.end, seg.label);
        prop_assert_eq!((start, end), (reference.starts[i], reference.ends[i]));
        prop_assert_eq!(label & INDEX_MASK, reference.rule[i]);
        let deny = rules[reference.rule[i] as usize].kind == RuleKind::Deny;
        prop_assert_eq!(
            label >> CODE_SHIFT,
            if deny { DENY_CODE } else { PERMIT_CODE }
        );
    }
    Ok(())
}

/// The IPv6 layout: coarse segments sorted, disjoint and merged; every coarse rule a real
/// index or FINE; fine segments sorted, disjoint, each inside a block marked FINE.
fn check_v6_layout(t: &V6Table, rules: &[Rule]) -> Result<(), TestCaseError> {
    let c = t.coarse.segments();
    for i in 0..c.len() {
        let (start, end, label) = (c[i].start, c[i].end, c[i].label);
        prop_assert!(start <= end);
        prop_assert!(label == FINE || ((label & INDEX_MASK) as usize) < rules.len());
        if let Some(next) = c.get(i + 1) {
            let (next_start, next_label) = (next.start, next.label);
            prop_assert!(end < next_start, "coarse overlap or unsorted");
            let touching = end.successor() == Some(next_start);
            prop_assert!(!(touching && label == next_label), "unmerged coarse");
        }
    }
    check_segments(&t.fine, rules)?;
    // Adjacent fine parts of one rule may merge across a block edge; every block they
    // touch must be marked.
    for i in 0..t.fine.len() {
        let (a, b) = (
            (t.fine.starts[i] >> 64) as u64,
            (t.fine.ends[i] >> 64) as u64,
        );
        prop_assert!(b - a <= 1, "a fine segment spans whole blocks");
        prop_assert_eq!(
            t.coarse.lookup(a),
            FINE,
            "fine segment in an unmarked block"
        );
        prop_assert_eq!(
            t.coarse.lookup(b),
            FINE,
            "fine segment in an unmarked block"
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn lookup_matches_the_oracle(
        rules in rules_strategy(),
        v4 in prop::collection::vec(v4_key(), 0..16),
        v6 in prop::collection::vec(v6_key(), 0..16),
    ) {
        let table = build(rules.clone());
        prop_assert_eq!(table.rules(), &rules[..]);
        for ip in probes(&rules, &v4, &v6) {
            prop_assert_eq!(table.lookup(ip), naive_lookup(&rules, ip), "at {}", ip);
        }
    }

    #[test]
    fn segments_are_sorted_disjoint_and_merged(rules in rules_strategy()) {
        let table = build(rules.clone());
        let reference = build_reference(rules.clone());
        check_segments(&reference.v4, &rules)?;
        check_segments(&reference.v6, &rules)?;
        check_v4_layout(&table.v4, &reference.v4, &rules)?;
        check_v6_layout(&table.v6, &rules)?;
        prop_assert_eq!(table.segment_counts(), reference.segment_counts());
        let (n4, n6) = table.segment_counts();
        let count = |v4: bool| rules.iter().filter(|r| (r.range.family() == Family::V4) == v4).count();
        prop_assert!(n4 <= (2 * count(true)).saturating_sub(1));
        prop_assert!(n6 <= (2 * count(false)).saturating_sub(1));
    }

    /// Exhaustive over the low and high IPv4 windows, where most boundaries fall.
    #[test]
    fn lookup_matches_the_oracle_on_every_edge_address(rules in rules_strategy()) {
        let table = build(rules.clone());
        let low = 0..=30u32;
        let high = (u32::MAX - 30)..=u32::MAX;
        for k in low.chain(high) {
            let ip = IpAddr::V4(Ipv4Addr::from(k));
            prop_assert_eq!(table.lookup(ip), naive_lookup(&rules, ip), "at {}", ip);
        }
    }
}

// ---- the fast layout against the reference, where its own edges are ----

/// Keys crowded at the edges of the IPv4 buckets of a 16-bit index.
fn v4_bucket_key() -> impl Strategy<Value = u128> {
    (
        prop_oneof![Just(0u128), Just(1), Just(0x8000), Just(0xffff)],
        0..6u128,
        any::<bool>(),
    )
        .prop_map(|(bucket, d, below)| {
            let edge = bucket << 16;
            if below {
                edge.saturating_sub(d)
            } else {
                edge + d
            }
        })
}

/// Keys crowded at the edges of a few `/64` blocks (0, 1, 2, 2^63, MAX).
fn v6_block_key() -> impl Strategy<Value = u128> {
    (
        prop_oneof![
            Just(0u128),
            Just(1),
            Just(2),
            Just(1 << 63),
            Just(u128::from(u64::MAX))
        ],
        0..4u128,
        any::<bool>(),
    )
        .prop_map(|(block, d, at_end)| {
            if at_end {
                (block << 64) | (LOW64 - d)
            } else {
                (block << 64) + d
            }
        })
}

fn edge_rules_strategy() -> impl Strategy<Value = Vec<Rule>> {
    rules_of(range_of(v4_bucket_key, v6_block_key))
}

/// Index shapes the fast layout is checked at: one-bit nodes with no depth limit (the
/// deepest trees), a depth limit that leaves binary-searched leaves, and the default.
const SHAPES: [Shapes; 5] = [
    Shapes::both(Shape {
        root_bits: 0,
        node_bits: 1,
        max_depth: 128,
    }),
    Shapes::both(Shape {
        root_bits: 3,
        node_bits: 1,
        max_depth: 2,
    }),
    Shapes::both(Shape {
        root_bits: 16,
        node_bits: 2,
        max_depth: 1,
    }),
    Shapes::both(Shape {
        root_bits: 16,
        node_bits: 8,
        max_depth: 4,
    }),
    Shapes::DEFAULT,
];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// The bucket index (forced to 16 bits even for small tables, and also at 0 and 3
    /// bits) and the coarse/fine IPv6 split agree with the binary search and the naive
    /// scan, at every rule boundary ±1 and at every bucket and block edge.
    #[test]
    fn fast_layout_matches_binary_search_and_naive(
        rules in edge_rules_strategy(),
        v4 in prop::collection::vec(v4_bucket_key(), 0..16),
        v6 in prop::collection::vec(v6_block_key(), 0..16),
    ) {
        let reference = build_reference(rules.clone());
        for shape in SHAPES {
            let table = RangeTable::build_with(rules.clone(), shape, MAX_RULES).unwrap();
            check_v6_layout(&table.v6, &rules)?;
            for ip in probes(&rules, &v4, &v6) {
                let want = naive_lookup(&rules, ip);
                prop_assert_eq!(reference.lookup(ip), want, "binary search at {}", ip);
                prop_assert_eq!(table.lookup(ip), want, "fast layout ({:?}) at {}", shape, ip);
                prop_assert_eq!(table.kind(ip), want.map(|r| r.kind), "kind at {}", ip);
            }
        }
    }

    /// The same on the original crowded keys, with the full 16-bit index.
    #[test]
    fn fast_layout_with_full_index_matches(
        rules in rules_strategy(),
        v4 in prop::collection::vec(v4_key(), 0..16),
        v6 in prop::collection::vec(v6_key(), 0..16),
    ) {
        let reference = build_reference(rules.clone());
        for shape in SHAPES {
            let table = RangeTable::build_with(rules.clone(), shape, MAX_RULES).unwrap();
            for ip in probes(&rules, &v4, &v6) {
                prop_assert_eq!(table.lookup(ip), reference.lookup(ip), "at {}", ip);
                prop_assert_eq!(table.kind(ip), reference.lookup(ip).map(|r| r.kind), "kind at {}", ip);
            }
        }
    }
}

#[test]
fn v4_index_sizes_follow_the_table() {
    let t = build(vec![
        permit(1, "0.0.0.0-0.0.255.255"),
        permit(2, "0.1.0.5-0.3.0.0"),
        deny(3, "0.2.0.0/16"),
        permit(4, "255.255.0.0/16"),
    ]);
    // permit 2 is split by deny 3: 5 segments give a 3-bit root. Four of them start in
    // 0.0.0.0/3, fewer than the window holds: no node below it.
    assert_eq!(t.segment_counts(), (5, 0));
    assert_eq!(t.v4.index.root_bits(), 3);
    assert_eq!(t.v4.index.depth(), (0, 0));
    assert_eq!(t.memory().v4_index_bytes, 8 * 4);
    assert_decides(
        &t,
        &[
            ("0.1.0.4", None),
            ("0.1.255.255", Some((P, 2))),
            ("0.2.0.0", Some((D, 3))),
            ("0.3.0.0", Some((P, 2))),
            ("0.3.0.1", None),
            ("255.254.255.255", None),
            ("255.255.255.255", Some((P, 4))),
        ],
    );
    // Many segments, evenly spread: the full 65,536-slot root and nothing below it.
    let many: Vec<Rule> = (0..100_000u32)
        .map(|n| {
            let range = IpRange::V4 {
                start: n * 40_000,
                end: n * 40_000 + 9,
            };
            rule_at(i64::from(n), RuleKind::Permit, range, String::new())
        })
        .collect();
    let t = build(many.clone());
    assert_eq!(t.v4.index.root_bits(), 16);
    assert_eq!(t.v4.index.depth(), (0, 0), "no root slot holds 8 starts");
    assert_eq!(t.memory().v4_index_bytes, 65_536 * 4);
    // A sentinel and WINDOW - 1 records of padding.
    assert_eq!(t.memory().v4_segment_bytes, (100_000 + WINDOW) * 12);
    let keys = (0..u32::MAX - 50_000)
        .step_by(9_973)
        .chain([u32::MAX - 1, u32::MAX]);
    assert_agrees_with_reference(&t, many.clone(), keys);
    // 4,000 small ranges in 10.7.0.0/16 (one root slot): inner nodes below it.
    let mut dense = many;
    dense.retain(|r| !r.range.contains("10.7.0.0".parse().unwrap()));
    for n in 0..4_000u32 {
        let start = u32::from(Ipv4Addr::new(10, 7, 0, 0)) + n * 16;
        let kind = if n % 3 == 0 {
            RuleKind::Deny
        } else {
            RuleKind::Permit
        };
        let range = IpRange::V4 {
            start,
            end: start + (n % 16),
        };
        dense.push(rule_at(
            1_000_000 + i64::from(n),
            kind,
            range,
            String::new(),
        ));
    }
    let t = build(dense.clone());
    let (depth, big) = t.v4.index.depth();
    assert!(depth >= 1, "the crowded slot is split");
    assert_eq!(big, 0, "and never needs a binary search");
    assert!(t.memory().v4_index_bytes > 65_536 * 4);
    let base = u32::from(Ipv4Addr::new(10, 6, 255, 0));
    assert_agrees_with_reference(&t, dense, base..base + 70_000);
}

#[test]
fn v6_aligned_rules_use_64_bit_keys_only() {
    let t = build(vec![
        permit(1, "2001:db8::/32"),
        deny(2, "2001:db8:1::/48"),
        permit(3, "2001:db8:ffff:ffff::/64"),
        permit(4, "2600::/12"),
    ]);
    let m = t.memory();
    assert_eq!(m.v6_fine_segments, 0);
    assert_eq!(m.v6_fine_bytes, 0);
    // permit 1 is split by deny 2 and permit 3 (its last /64).
    assert_eq!(t.segment_counts(), (0, 5));
    assert_eq!(m.v6_segments, 5);
    assert_eq!(
        m.v6_segment_bytes,
        (5 + WINDOW) * 20,
        "20 bytes per /64-aligned IPv6 segment (and a sentinel and padding)"
    );
    assert_decides(
        &t,
        &[
            ("2001:db8:1:ffff:ffff:ffff:ffff:ffff", Some((D, 2))),
            ("2001:db8:2::", Some((P, 1))),
            ("2001:db8:ffff:ffff::1", Some((P, 3))),
            ("2601::", Some((P, 4))),
            ("2610::", None),
        ],
    );
}

#[test]
fn v6_unaligned_rules_go_to_the_full_width_table() {
    let t = build(vec![
        permit(1, "2001:db8::/32"),
        deny(2, "2001:db8::66"),
        deny(3, "2001:db8:0:1:8000::-2001:db8:0:3:7fff::"),
        permit(4, "::1"),
    ]);
    // Marks: ::/64, 2001:db8::/64 (merged with) 2001:db8:0:1::/64 (whole blocks in
    // between are deny 3), 2001:db8:0:3::/64.
    let m = t.memory();
    assert!(m.v6_fine_segments >= 5, "{m:?}");
    assert_decides(
        &t,
        &[
            ("::1", Some((P, 4))),
            ("::2", None),
            ("2001:db8::65", Some((P, 1))),
            ("2001:db8::66", Some((D, 2))),
            ("2001:db8::67", Some((P, 1))),
            ("2001:db8:0:1:7fff:ffff:ffff:ffff", Some((P, 1))),
            ("2001:db8:0:1:8000::", Some((D, 3))),
            ("2001:db8:0:2::", Some((D, 3))),
            ("2001:db8:0:3:7fff::", Some((D, 3))),
            ("2001:db8:0:3:7fff::1", Some((P, 1))),
            ("2001:db8:0:4::", Some((P, 1))),
        ],
    );
}

#[test]
fn more_rules_than_the_limit_are_an_error_not_a_truncation() {
    let rules = vec![
        permit(1, "10.0.0.0/8"),
        permit(2, "192.0.2.0/24"),
        deny(3, "10.1.0.0/16"),
        deny(4, "2001:db8::/32"),
    ];
    // At the limit: every rule is compiled, the last deny rule included.
    let t = RangeTable::build_with(rules.clone(), Shapes::DEFAULT, 4).unwrap();
    assert_decides(&t, &[("2001:db8::1", Some((D, 4)))]);
    // One over it: refused, by the fast layout and the reference alike (which `build` and
    // `BinarySearchTable::build` share with a limit of MAX_RULES).
    let err = RangeTable::build_with(rules.clone(), Shapes::DEFAULT, 3).unwrap_err();
    assert_eq!(err, TableError::TooManyRules { rules: 4, max: 3 });
    assert_eq!(
        sweep(rules, 3).err(),
        Some(TableError::TooManyRules { rules: 4, max: 3 })
    );

    // Why MAX_RULES is the limit: the last index it allows still round-trips through a
    // label of either kind; the next one spills into the verdict bits, where a permit rule
    // would name rule 0 and a deny rule would read back as no rule at all.
    assert_eq!(MAX_RULES, 1 << 30);
    let last = (MAX_RULES - 1) as u32;
    for (code, kind) in [(PERMIT_CODE, RuleKind::Permit), (DENY_CODE, RuleKind::Deny)] {
        let label = last | (code << CODE_SHIFT);
        assert_eq!(kind_of(label), Some(kind));
        assert_eq!(label & INDEX_MASK, last);
        assert_ne!(label, NONE);
        assert_ne!(label, FINE);
    }
    let permit = MAX_RULES as u32 | (PERMIT_CODE << CODE_SHIFT);
    assert_eq!(permit & INDEX_MASK, 0);
    let deny = MAX_RULES as u32 | (DENY_CODE << CODE_SHIFT);
    assert_eq!(kind_of(deny), None);
}
