//! What a refresh changes per country ([`CountryDiff`]): range diffs between the stored
//! catalog and the new one, and the custom permit rules that lie inside or overlap a
//! permitted country's new ranges. The refresh transaction (`store/sql/catalog.rs`) reads the
//! range diffs and [`classify`]s the custom rules.

use serde::Serialize;

use crate::ranges::{Family, IpRange, Rule, RuleSource};

/// How one country changes in a refresh.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CountryDiff {
    /// ISO 3166-1 alpha-2 code.
    pub code: String,
    /// English name from the new catalog (empty if the source has none).
    pub name: String,
    /// Whether the country is permitted (its `geolite` rules are regenerated).
    pub permitted: bool,
    /// Ranges in the old catalog.
    pub ranges_before: u64,
    /// Ranges in the new catalog.
    pub ranges_after: u64,
    /// Ranges of the new catalog not in the old one (compared exactly: a range that grew
    /// counts as one removed and one added).
    pub ranges_added: u64,
    /// Ranges of the old catalog not in the new one.
    pub ranges_removed: u64,
    /// `geolite` permit rules of this country before.
    pub rules_before: u64,
    /// `geolite` permit rules of this country after.
    pub rules_after: u64,
    /// Existing permit rules identical to a new range of this country: kept as they are, no
    /// `geolite` rule is added for that range.
    pub identical: Vec<Rule>,
    /// Non-`geolite` permit rules lying entirely inside one new range of this permitted
    /// country (now redundant, but kept).
    pub custom_inside: Vec<Rule>,
    /// Non-`geolite` permit rules partly overlapping new ranges of this permitted country.
    pub custom_overlapping: Vec<Rule>,
}

/// Splits the non-`geolite` rules among `others` into those entirely inside one of `ranges`
/// and those partly overlapping them. Identical rules are neither (they are reported as
/// `identical`).
pub(in crate::store) fn classify(others: &[Rule], ranges: &[IpRange]) -> (Vec<Rule>, Vec<Rule>) {
    let mut sorted: Vec<(Family, u128, u128)> = ranges.iter().map(bounds).collect();
    sorted.sort_unstable();
    let mut inside = Vec::new();
    let mut overlapping = Vec::new();
    for rule in others.iter().filter(|r| r.source != RuleSource::Geolite) {
        let (family, start, end) = bounds(&rule.range);
        // Ranges of one country are disjoint, so their ends are sorted too: the first range
        // that can touch the rule is the first whose end is not below the rule's start.
        let first = sorted.partition_point(|&(f, _, e)| (f, e) < (family, start));
        let touching = sorted[first..]
            .iter()
            .take_while(|&&(f, s, _)| f == family && s <= end);
        let hits: Vec<&(Family, u128, u128)> = touching.collect();
        match hits.as_slice() {
            [] => {}
            // Identical: reported as `identical`, not here.
            [&(_, s, e)] if s == start && e == end => {}
            [&(_, s, e)] if s <= start && end <= e => inside.push(rule.clone()),
            _ => overlapping.push(rule.clone()),
        }
    }
    (inside, overlapping)
}

/// A range as `(family, start, end)` with both ends widened to `u128`.
pub(in crate::store) fn bounds(r: &IpRange) -> (Family, u128, u128) {
    match *r {
        IpRange::V4 { start, end } => (Family::V4, u128::from(start), u128::from(end)),
        IpRange::V6 { start, end } => (Family::V6, start, end),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ranges::{RuleKind, CUSTOM_COUNTRY};

    fn r(s: &str) -> IpRange {
        s.parse().unwrap()
    }

    #[test]
    fn classify_splits_inside_and_overlapping() {
        let rule = |range: &str, source| Rule {
            id: 1,
            kind: RuleKind::Permit,
            range: r(range),
            country: CUSTOM_COUNTRY.into(),
            source,
            note: String::new(),
            terms: Default::default(),
        };
        let ranges = [r("10.0.0.0/8"), r("12.0.0.0/8"), r("2001:db8::/32")];
        let others = [
            rule("10.1.0.0/16", RuleSource::Custom),             // inside
            rule("12.0.0.0/8", RuleSource::Custom),              // identical
            rule("11.255.255.0-12.0.0.255", RuleSource::Custom), // overlapping
            rule("9.0.0.0-13.0.0.0", RuleSource::Custom),        // covers two: overlapping
            rule("11.0.0.0/8", RuleSource::Custom),              // between: neither
            rule("2001:db8::1", RuleSource::Custom),             // inside, v6
            rule("10.2.0.0/16", RuleSource::Geolite),            // not a custom rule
            rule("0.0.0.10", RuleSource::Custom),                // v4 below everything
        ];
        let (inside, overlapping) = classify(&others, &ranges);
        let names = |v: &[Rule]| v.iter().map(|r| r.range.to_string()).collect::<Vec<_>>();
        assert_eq!(names(&inside), ["10.1.0.0/16", "2001:db8::1/128"]);
        assert_eq!(
            names(&overlapping),
            ["11.255.255.0-12.0.0.255", "9.0.0.0-13.0.0.0"]
        );
    }
}
