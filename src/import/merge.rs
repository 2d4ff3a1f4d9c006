//! Merging ranges: the last step of every import, turning a country's thousands of networks
//! into as few disjoint ranges as possible.

use crate::ranges::IpRange;

/// Sorts `ranges` and merges overlapping and adjacent ones.
///
/// The input may mix families and be in any order. The result holds the IPv4 ranges first,
/// then the IPv6 ranges, each family sorted, disjoint and non-adjacent (between two ranges of
/// one family there is at least one address not covered). It covers exactly the addresses the
/// input covers, including the family ends `255.255.255.255` and `ffff:...:ffff`.
pub(super) fn merge(mut ranges: Vec<IpRange>) -> Vec<IpRange> {
    // `IpRange`'s derived order is family first (V4 before V6), then start, then end.
    ranges.sort_unstable();
    let mut out: Vec<IpRange> = Vec::with_capacity(ranges.len());
    for range in ranges {
        if let Some(last) = out.last_mut() {
            if let Some(joined) = join_sorted(*last, range) {
                *last = joined;
                continue;
            }
        }
        out.push(range);
    }
    out.shrink_to_fit();
    out
}

/// The union of `a` and `b` when they are of one family and overlap or touch; `None` otherwise.
/// Either order.
pub(super) fn join(a: IpRange, b: IpRange) -> Option<IpRange> {
    if a <= b {
        join_sorted(a, b)
    } else {
        join_sorted(b, a)
    }
}

/// [`join`] for `a <= b` (so `a.start <= b.start` within a family).
fn join_sorted(a: IpRange, b: IpRange) -> Option<IpRange> {
    match (a, b) {
        (IpRange::V4 { start, end }, IpRange::V4 { start: s2, end: e2 })
            // `saturating_add`: a range ending at u32::MAX touches everything after its start.
            if s2 <= end.saturating_add(1) =>
        {
            Some(IpRange::V4 {
                start,
                end: end.max(e2),
            })
        }
        (IpRange::V6 { start, end }, IpRange::V6 { start: s2, end: e2 })
            if s2 <= end.saturating_add(1) =>
        {
            Some(IpRange::V6 {
                start,
                end: end.max(e2),
            })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use proptest::prelude::*;

    use super::*;

    fn v4(start: u32, end: u32) -> IpRange {
        IpRange::V4 { start, end }
    }

    fn v6(start: u128, end: u128) -> IpRange {
        IpRange::V6 { start, end }
    }

    #[test]
    fn examples() {
        assert_eq!(merge(vec![]), vec![]);
        assert_eq!(
            merge(vec![v6(5, 9), v4(10, 20), v4(21, 30), v4(0, 3), v6(1, 4)]),
            vec![v4(0, 3), v4(10, 30), v6(1, 9)]
        );
        // Overlapping, contained, duplicated.
        assert_eq!(
            merge(vec![v4(10, 20), v4(12, 13), v4(15, 25), v4(10, 20)]),
            vec![v4(10, 25)]
        );
        // A gap of one address keeps two ranges.
        assert_eq!(merge(vec![v4(0, 4), v4(6, 9)]), vec![v4(0, 4), v4(6, 9)]);
        // The same integers in different families never merge.
        assert_eq!(merge(vec![v6(0, 4), v4(5, 9)]), vec![v4(5, 9), v6(0, 4)]);
    }

    #[test]
    fn family_ends() {
        assert_eq!(
            merge(vec![v4(u32::MAX, u32::MAX), v4(0, u32::MAX - 1)]),
            vec![v4(0, u32::MAX)]
        );
        assert_eq!(
            merge(vec![v4(u32::MAX - 5, u32::MAX), v4(u32::MAX, u32::MAX)]),
            vec![v4(u32::MAX - 5, u32::MAX)]
        );
        assert_eq!(
            merge(vec![
                v6(u128::MAX, u128::MAX),
                v6(u128::MAX - 1, u128::MAX - 1)
            ]),
            vec![v6(u128::MAX - 1, u128::MAX)]
        );
        assert_eq!(
            merge(vec![v6(0, u128::MAX), v6(u128::MAX, u128::MAX), v6(0, 0)]),
            vec![v6(0, u128::MAX)]
        );
        assert_eq!(join(v4(5, 9), v4(0, 4)), Some(v4(0, 9)));
        assert_eq!(join(v4(0, 3), v4(5, 9)), None);
        assert_eq!(join(v4(0, 3), v6(4, 9)), None);
    }

    /// Maps a small key to an address near 0 or near the family's maximum.
    fn addr(window: bool, offset: u8, max: u128) -> u128 {
        if window {
            max - u128::from(offset)
        } else {
            u128::from(offset)
        }
    }

    /// Ranges of at most 40 addresses near either end of either family.
    fn small_range() -> impl Strategy<Value = IpRange> {
        (any::<bool>(), any::<bool>(), 0u8..40, 0u8..40).prop_map(|(six, high, a, b)| {
            let max = if six { u128::MAX } else { u128::from(u32::MAX) };
            let (x, y) = (addr(high, a, max), addr(high, b, max));
            let (start, end) = (x.min(y), x.max(y));
            if six {
                v6(start, end)
            } else {
                // Lossless: both are at most u32::MAX.
                v4(start as u32, end as u32)
            }
        })
    }

    /// The model: the set of (is_v6, address) covered.
    fn covered(ranges: &[IpRange]) -> BTreeSet<(bool, u128)> {
        let mut set = BTreeSet::new();
        for r in ranges {
            let (six, start, end) = match *r {
                IpRange::V4 { start, end } => (false, u128::from(start), u128::from(end)),
                IpRange::V6 { start, end } => (true, start, end),
            };
            let mut a = start;
            loop {
                set.insert((six, a));
                if a == end {
                    break;
                }
                a += 1;
            }
        }
        set
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn merge_matches_the_set_model(input in proptest::collection::vec(small_range(), 0..12)) {
            let merged = merge(input.clone());
            prop_assert_eq!(covered(&merged), covered(&input));
            for pair in merged.windows(2) {
                match (pair[0], pair[1]) {
                    (IpRange::V4 { end, .. }, IpRange::V4 { start, .. }) => {
                        prop_assert!(u64::from(start) > u64::from(end) + 1, "{:?}", pair);
                    }
                    (IpRange::V6 { end, .. }, IpRange::V6 { start, .. }) => {
                        prop_assert!(end < u128::MAX && start > end + 1, "{:?}", pair);
                    }
                    (IpRange::V4 { .. }, IpRange::V6 { .. }) => {}
                    (IpRange::V6 { .. }, IpRange::V4 { .. }) => {
                        prop_assert!(false, "IPv6 before IPv4: {:?}", pair);
                    }
                }
            }
            // Merging is idempotent and order-independent.
            prop_assert_eq!(merge(merged.clone()), merged.clone());
            let mut reversed = input;
            reversed.reverse();
            prop_assert_eq!(merge(reversed), merged);
        }
    }
}
