//! `RangeTable`: the compiled, immutable lookup structure that every call consults.
//!
//! `reload` loads the rules from the store, adds the built-in ones, and calls
//! [`RangeTable::build`] off the hot path; the snapshot then swaps the new table in, and each
//! session does one [`RangeTable::lookup`] for the caller's address. Building resolves all
//! overlaps once (a sweep over the range boundaries) into sorted, disjoint segments, then lays
//! them out for fast search: a radix index over the top address bits (a root of up to `2^16`
//! slots, then one level of nodes under crowded slots for IPv4, two for IPv6), 12-byte IPv4
//! segments, 64-bit keys for IPv6. [`BinarySearchTable`] keeps the plain layout (one binary
//! search over the segments) as the test oracle and benchmark baseline.
//!
//! A table holds at most [`MAX_RULES`] rules (a segment label packs the rule's index into 30
//! bits); building one from more is [`TableError::TooManyRules`], never a silent truncation.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fmt;
use std::mem::size_of;
use std::net::IpAddr;

use super::index::{Seg, SegIndex, Shape, NONE};
use super::range::IpRange;
use super::rule::{Rule, RuleKind};

/// The permit and deny rules compiled into sorted, disjoint segments, one list per family.
///
/// # Precedence
///
/// [`lookup`](RangeTable::lookup) answers, for one address:
///
/// 1. if any DENY rule contains the address, a deny rule (deny beats permit, however specific
///    the permit rule is);
/// 2. otherwise, if any PERMIT rule contains it, a permit rule;
/// 3. otherwise `None`: the caller is a stranger.
///
/// When several rules of the winning kind contain the address, the most specific one is
/// returned: the smallest range (`end - start`), ties broken by the lowest id, then by the
/// earliest position in the list given to [`build`](RangeTable::build).
///
/// Addresses are canonicalized first: an IPv4-mapped IPv6 caller (`::ffff:203.0.113.7`) is
/// looked up as IPv4. An IPv6 rule that spans part of the mapped space `::ffff:0:0/96`
/// therefore never matches there; rules for IPv4 callers belong in IPv4 ranges.
///
/// # Layout
///
/// The sweep yields, per family, segments sorted by start and disjoint; adjacent segments
/// labelled with the same rule are merged and address space no rule covers has no segment.
/// Each segment's label is the rule's index with the verdict in its top two bits, so
/// [`kind`](RangeTable::kind) answers without touching the rules (and without a branch); the
/// index therefore has 30 bits, hence [`MAX_RULES`]. Build is `O(n log n)` in the number of
/// rules.
///
/// * **Index** (both families, `SegIndex`): a radix tree over the key's bits, `2^16` slots at
///   the root (fewer for small tables), nodes of up to 1,024 slots
///   under crowded slots, sized per node; each leaf covers at most 7 segment starts. A lookup walks a fixed number of
///   levels and counts over a fixed window of 8 segments, with no data-dependent branch, so
///   lookups of random addresses overlap their cache misses (one level for IPv4, two for
///   IPv6; crowded leaves past that are binary-searched).
/// * **IPv4**: segments as `(start, end, label)`, 12 bytes each.
/// * **IPv6**: real tables (country catalogs, custom `/48`s) have boundaries on `/64`s, so the
///   segments are kept on the top 64 bits of the address (`u64` keys, 20 bytes a segment).
///   A `/64` block that is not covered whole by one segment (`::1`, a custom `/128`) is marked
///   in that table and resolved in a small full-width (`u128`) table of its own. The layout is
///   exact for any rule set, and costs 20 bytes a segment whenever every boundary is
///   `/64`-aligned, which [`RangeTable::memory`] reports.
///
/// [`BinarySearchTable`] keeps the sweep's segments as they are and answers with one
/// `partition_point`; property tests hold both layouts to the same answers, and to a naive scan.
#[derive(Debug, Clone, Default)]
pub struct RangeTable {
    rules: Vec<Rule>,
    v4: V4Table,
    v6: V6Table,
}

/// Measured heap use of a [`RangeTable`], by part (bytes by capacity).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TableMemory {
    /// IPv4 segments.
    pub v4_segments: usize,
    /// Bytes of the IPv4 segments (12 each).
    pub v4_segment_bytes: usize,
    /// Bytes of the IPv4 bucket index (fixed part and split buckets).
    pub v4_index_bytes: usize,
    /// IPv6 segments in the 64-bit-key table (including marks for `/64` blocks resolved in
    /// the full-width table).
    pub v6_segments: usize,
    /// Bytes of the 64-bit-key IPv6 arrays (20 per segment).
    pub v6_segment_bytes: usize,
    /// Bytes of the IPv6 bucket index.
    pub v6_index_bytes: usize,
    /// IPv6 segments kept at full width because they do not cover whole `/64` blocks.
    pub v6_fine_segments: usize,
    /// Bytes of the full-width IPv6 arrays (36 per segment).
    pub v6_fine_bytes: usize,
    /// Index levels below the root that every IPv4 lookup walks.
    pub v4_index_levels: u32,
    /// Index levels below the root that every IPv6 lookup walks (64-bit keys).
    pub v6_index_levels: u32,
    /// IPv4 index leaves with too many segments for the fixed window (binary-searched).
    pub v4_searched_leaves: usize,
    /// IPv6 index leaves with too many segments for the fixed window (binary-searched).
    pub v6_searched_leaves: usize,
}

impl TableMemory {
    /// Everything: segments, indexes and the full-width remainder.
    pub fn total(&self) -> usize {
        self.v4_segment_bytes
            + self.v4_index_bytes
            + self.v6_segment_bytes
            + self.v6_index_bytes
            + self.v6_fine_bytes
    }
}

/// The most rules one table can hold: a segment label keeps the rule's index in the bits below
/// the two verdict bits (`CODE_SHIFT`), so `2^30` rules (1,073,741,824), builtins included.
pub const MAX_RULES: usize = INDEX_MASK as usize + 1;

/// Why a table cannot be built.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TableError {
    /// More rules than a segment label can number ([`MAX_RULES`]). Compiling only some of
    /// them would silently drop the rest, deny rules included.
    #[error(
        "{rules} rules (stored permit and deny rules plus builtins) exceed the lookup table's \
         limit of {max}"
    )]
    TooManyRules {
        /// The rules given.
        rules: usize,
        /// The limit ([`MAX_RULES`]).
        max: usize,
    },
}

impl RangeTable {
    /// Compiles `rules` (in any order, overlapping freely) into a table.
    ///
    /// The rules are kept as given and returned by [`rules`](RangeTable::rules); segments refer
    /// to them by index. More than [`MAX_RULES`] rules is [`TableError::TooManyRules`].
    pub fn build(rules: Vec<Rule>) -> Result<RangeTable, TableError> {
        Self::build_with(rules, Shapes::DEFAULT, MAX_RULES)
    }

    /// The rule that decides `ip` under the precedence documented on [`RangeTable`], or `None`
    /// when no rule contains it. IPv4-mapped IPv6 addresses are looked up as IPv4.
    #[inline]
    pub fn lookup(&self, ip: IpAddr) -> Option<&Rule> {
        let label = self.label(ip);
        kind_of(label).and_then(|_| self.rules.get((label & INDEX_MASK) as usize))
    }

    /// The kind of the rule [`lookup`](RangeTable::lookup) would return (`None`: a stranger),
    /// read from the segment alone: the verdict without touching the rule list.
    ///
    /// Computed without a branch on the answer, so lookups of random addresses do not
    /// mispredict here. `decide` needs the rule itself (its reason names it) and calls
    /// [`lookup`](RangeTable::lookup); this is public for `benches/lookup.rs`, which measures
    /// the verdict-only lookup, and for `tests/alloc.rs`, which checks that it never allocates.
    #[inline]
    pub fn kind(&self, ip: IpAddr) -> Option<RuleKind> {
        kind_of(self.label(ip))
    }

    /// All rules the table was built from, in the order given to [`build`](RangeTable::build).
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// Number of segments the sweep produced: `(IPv4, IPv6)` (the same as
    /// [`BinarySearchTable::segment_counts`] for the same rules).
    pub fn segment_counts(&self) -> (usize, usize) {
        (self.v4.index.len(), self.v6.sweep_segments)
    }

    /// Bytes allocated for the lookup structures of both families (by capacity; the rules
    /// themselves are not counted). The same as `self.memory().total()`.
    pub fn heap_bytes(&self) -> usize {
        self.memory().total()
    }

    /// Heap use by part, measured from the allocated capacities.
    pub fn memory(&self) -> TableMemory {
        TableMemory {
            v4_segments: self.v4.index.len(),
            v4_segment_bytes: self.v4.index.segment_bytes(),
            v4_index_bytes: self.v4.index.index_bytes(),
            v6_segments: self.v6.coarse.len(),
            v6_segment_bytes: self.v6.coarse.segment_bytes(),
            v6_index_bytes: self.v6.coarse.index_bytes(),
            v6_fine_segments: self.v6.fine.len(),
            v6_fine_bytes: self.v6.fine.heap_bytes(),
            v4_index_levels: self.v4.index.levels(),
            v6_index_levels: self.v6.coarse.levels(),
            v4_searched_leaves: self.v4.index.searched_leaves(),
            v6_searched_leaves: self.v6.coarse.searched_leaves(),
        }
    }

    /// The segment label (rule index | deny flag) deciding `ip`, or [`NONE`].
    #[inline(always)]
    fn label(&self, ip: IpAddr) -> u32 {
        match ip.to_canonical() {
            IpAddr::V4(a) => self.v4.lookup(u32::from(a)),
            IpAddr::V6(a) => self.v6.lookup(u128::from(a)),
        }
    }

    /// [`build`](RangeTable::build) with the index limited to `shape` and at most `max_rules`
    /// rules (tests force small roots, narrow nodes, shallow depth limits and small limits).
    fn build_with(
        rules: Vec<Rule>,
        shape: Shapes,
        max_rules: usize,
    ) -> Result<RangeTable, TableError> {
        let Swept { rules, v4, v6 } = sweep(rules, max_rules)?;
        let label = |index: u32| match rules.get(index as usize) {
            Some(r) if r.kind == RuleKind::Deny => index | (DENY_CODE << CODE_SHIFT),
            _ => index | (PERMIT_CODE << CODE_SHIFT),
        };
        Ok(RangeTable {
            v4: V4Table::new(&v4, &label, shape.v4),
            v6: V6Table::new(&v6, &label, shape.v6),
            rules,
        })
    }
}

/// The reference layout: the sweep's segments searched with one `partition_point` per lookup,
/// `u128` keys for IPv6. Same answers as [`RangeTable`] (property-tested), simpler and slower;
/// the test oracle for the fast layout. The server never uses it.
///
/// It is public, rather than `#[cfg(test)]`, only because `benches/lookup.rs` measures it as
/// the baseline the fast layout is compared against (lookups and build, see BENCHMARKS.md):
/// a bench is a separate crate and sees only the library's public API.
#[derive(Debug, Clone, Default)]
pub struct BinarySearchTable {
    rules: Vec<Rule>,
    v4: Segments<u32>,
    v6: Segments<u128>,
}

impl BinarySearchTable {
    /// Compiles `rules` exactly like [`RangeTable::build`] (and fails like it).
    pub fn build(rules: Vec<Rule>) -> Result<BinarySearchTable, TableError> {
        let Swept { rules, v4, v6 } = sweep(rules, MAX_RULES)?;
        Ok(BinarySearchTable { rules, v4, v6 })
    }

    /// The deciding rule for `ip`, as [`RangeTable::lookup`].
    pub fn lookup(&self, ip: IpAddr) -> Option<&Rule> {
        let index = match ip.to_canonical() {
            IpAddr::V4(a) => self.v4.lookup(u32::from(a)),
            IpAddr::V6(a) => self.v6.lookup(u128::from(a)),
        }?;
        self.rules.get(usize::try_from(index).ok()?)
    }

    /// Number of segments: `(IPv4, IPv6)`.
    pub fn segment_counts(&self) -> (usize, usize) {
        (self.v4.len(), self.v6.len())
    }

    /// Bytes allocated for the segment arrays of both families (by capacity).
    pub fn heap_bytes(&self) -> usize {
        self.v4.heap_bytes() + self.v6.heap_bytes()
    }
}

/// The index shapes of the two families.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Shapes {
    v4: Shape,
    v6: Shape,
}

impl Shapes {
    const DEFAULT: Shapes = Shapes {
        v4: Shape::V4,
        v6: Shape::V6,
    };

    /// The same shape for both families (tests).
    #[cfg(test)]
    const fn both(shape: Shape) -> Shapes {
        Shapes {
            v4: shape,
            v6: shape,
        }
    }
}

/// A segment label is the rule's index with the verdict in the top two bits:
/// [`PERMIT_CODE`] or [`DENY_CODE`] (3 is [`NONE`] and [`FINE`], never a rule).
const CODE_SHIFT: u32 = 30;

/// The verdict code of a permit rule's label.
const PERMIT_CODE: u32 = 1;

/// The verdict code of a deny rule's label; the deny flag is the top bit.
const DENY_CODE: u32 = 2;

/// The rule index in a segment label (so at most [`MAX_RULES`], `2^30`, rules per table).
const INDEX_MASK: u32 = (1 << CODE_SHIFT) - 1;

/// The verdict a label stands for (`None`: [`NONE`], or [`FINE`] which never leaves the IPv6
/// table). A four-way match on two bits, which compiles to arithmetic on a constant rather
/// than a branch or a table in memory (a cold lookup would pay a cache miss for that).
#[inline(always)]
fn kind_of(label: u32) -> Option<RuleKind> {
    match label >> CODE_SHIFT {
        PERMIT_CODE => Some(RuleKind::Permit),
        DENY_CODE => Some(RuleKind::Deny),
        _ => None,
    }
}

/// Label of a 64-bit-key IPv6 segment whose `/64` blocks are resolved in the full-width table.
/// Never a real label (code 3).
const FINE: u32 = u32::MAX - 1;

/// The low 64 bits of an IPv6 address (the interface identifier of a `/64`).
const LOW64: u128 = u64::MAX as u128;

/// What the sweep yields: the rules as given, and each family's segments (labelled with rule
/// indexes).
struct Swept {
    rules: Vec<Rule>,
    v4: Segments<u32>,
    v6: Segments<u128>,
}

/// Splits `rules` by family and runs the sweep on each; more than `max_rules` (at most
/// [`MAX_RULES`], so every index fits a label) is an error.
fn sweep(rules: Vec<Rule>, max_rules: usize) -> Result<Swept, TableError> {
    if rules.len() > max_rules.min(MAX_RULES) {
        return Err(TableError::TooManyRules {
            rules: rules.len(),
            max: max_rules.min(MAX_RULES),
        });
    }
    let mut v4 = Vec::new();
    let mut v6 = Vec::new();
    for (index, rule) in (0u32..).zip(&rules) {
        match rule.range {
            IpRange::V4 { start, end } => v4.push(Item::new(start, end, rule, index)),
            IpRange::V6 { start, end } => v6.push(Item::new(start, end, rule, index)),
        }
    }
    Ok(Swept {
        rules,
        v4: Segments::build(v4),
        v6: Segments::build(v6),
    })
}

/// IPv4: 12-byte segments and their index.
#[derive(Debug, Clone, Default)]
struct V4Table {
    index: SegIndex<u32>,
}

impl V4Table {
    fn new(sweep: &Segments<u32>, label: &impl Fn(u32) -> u32, shape: Shape) -> Self {
        let segs = (0..sweep.len())
            .map(|i| Seg {
                start: sweep.starts[i],
                end: sweep.ends[i],
                label: label(sweep.rule[i]),
            })
            .collect();
        V4Table {
            index: SegIndex::new(segs, shape),
        }
    }

    #[inline(always)]
    fn lookup(&self, key: u32) -> u32 {
        self.index.lookup(key)
    }
}

/// IPv6: segments on the top 64 bits (`coarse`), and the `/64` blocks that no single segment
/// covers whole, resolved at full width (`fine`).
#[derive(Debug, Clone, Default)]
struct V6Table {
    /// Whole `/64` blocks; label [`FINE`] sends the lookup to `fine`.
    coarse: SegIndex<u64>,
    /// The parts of the sweep's segments that lie in partly covered `/64` blocks.
    fine: Segments<u128>,
    /// Segments the sweep produced (for `segment_counts`).
    sweep_segments: usize,
}

impl V6Table {
    fn new(sweep: &Segments<u128>, label: &impl Fn(u32) -> u32, shape: Shape) -> Self {
        let mut coarse = Segments::<u64>::default();
        let mut fine = Segments::<u128>::default();
        let block_of = |k: u128| (k >> 64) as u64;
        let block_start = |b: u64| u128::from(b) << 64;
        let block_end = |b: u64| (u128::from(b) << 64) | LOW64;
        for i in 0..sweep.len() {
            let (start, end, rule) = (sweep.starts[i], sweep.ends[i], label(sweep.rule[i]));
            let (first_block, last_block) = (block_of(start), block_of(end));
            let head_whole = start & LOW64 == 0;
            let tail_whole = end & LOW64 == LOW64;
            if first_block == last_block && !(head_whole && tail_whole) {
                mark_fine(&mut coarse, first_block);
                fine.push(start, end, rule);
                continue;
            }
            // Here the segment spans two or more blocks, or exactly one whole block.
            let mut whole_first = first_block;
            if !head_whole {
                mark_fine(&mut coarse, first_block);
                fine.push(start, block_end(first_block), rule);
                whole_first = first_block + 1; // first_block < last_block
            }
            let whole_last = if tail_whole {
                last_block
            } else {
                last_block - 1 // last_block > first_block >= 0
            };
            if whole_first <= whole_last {
                coarse.push(whole_first, whole_last, rule);
            }
            if !tail_whole {
                mark_fine(&mut coarse, last_block);
                fine.push(block_start(last_block), end, rule);
            }
        }
        fine.shrink_to_fit();
        let segs = (0..coarse.len())
            .map(|i| Seg {
                start: coarse.starts[i],
                end: coarse.ends[i],
                label: coarse.rule[i],
            })
            .collect();
        V6Table {
            coarse: SegIndex::new(segs, shape),
            fine,
            sweep_segments: sweep.len(),
        }
    }

    #[inline(always)]
    fn lookup(&self, key: u128) -> u32 {
        match self.coarse.lookup((key >> 64) as u64) {
            FINE => self.fine.lookup(key).unwrap_or(NONE),
            label => label,
        }
    }
}

/// Marks `/64` block `block` as resolved at full width (once, however many segments touch it).
fn mark_fine(coarse: &mut Segments<u64>, block: u64) {
    let marked = coarse.rule.last() == Some(&FINE) && coarse.ends.last() >= Some(&block);
    if !marked {
        coarse.push(block, block, FINE);
    }
}

/// An address key: `u32` for IPv4, `u64` for the top half of IPv6, `u128` for IPv6.
trait Key: Copy + Ord + Default + fmt::Debug {
    /// The highest address.
    const MAX: Self;
    /// `self + 1`, or `None` at `MAX`.
    fn successor(self) -> Option<Self>;
    /// `self - 1`, or `None` at 0.
    fn predecessor(self) -> Option<Self>;
    /// The key as `u128`, to compare range sizes across families.
    fn widen(self) -> u128;
}

macro_rules! impl_key {
    ($($t:ty),*) => {$(
        impl Key for $t {
            const MAX: Self = <$t>::MAX;
            fn successor(self) -> Option<Self> {
                self.checked_add(1)
            }
            fn predecessor(self) -> Option<Self> {
                self.checked_sub(1)
            }
            fn widen(self) -> u128 {
                u128::from(self)
            }
        }
    )*};
}

impl_key!(u32, u64, u128);

/// How strongly a rule claims an address it contains; the greatest wins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Priority {
    /// Deny beats permit.
    deny: bool,
    /// Then the smaller range (`end - start`).
    size: Reverse<u128>,
    /// Then the lower id.
    id: Reverse<i64>,
    /// Then the earlier rule; also makes priorities unique.
    index: Reverse<u32>,
}

/// One rule's range in one family, ready for the sweep.
#[derive(Debug, Clone, Copy)]
struct Item<K> {
    start: K,
    end: K,
    priority: Priority,
}

impl<K: Key> Item<K> {
    fn new(start: K, end: K, rule: &Rule, index: u32) -> Self {
        let priority = Priority {
            deny: rule.kind == RuleKind::Deny,
            // `IpRange` guarantees `start <= end`; saturate rather than trust it blindly.
            size: Reverse(end.widen().saturating_sub(start.widen())),
            id: Reverse(rule.id),
            index: Reverse(index),
        };
        Item {
            start,
            end,
            priority,
        }
    }
}

/// Sorted, disjoint `[starts[i], ends[i]]` segments, each labelled with a rule index.
#[derive(Debug, Clone, Default)]
struct Segments<K> {
    starts: Vec<K>,
    ends: Vec<K>,
    rule: Vec<u32>,
}

impl<K: Key> Segments<K> {
    /// The sweep: visit every point where the set of containing ranges can change (each start,
    /// and each `end + 1`), keep the containing ranges in a max-heap by priority (ranges that
    /// ended are dropped lazily when they reach the top), and label the stretch up to the next
    /// point with the heap's top.
    fn build(mut items: Vec<Item<K>>) -> Self {
        items.sort_unstable_by_key(|item| item.start);
        let mut points: Vec<K> = Vec::with_capacity(items.len() * 2);
        for item in &items {
            points.push(item.start);
            points.extend(item.end.successor());
        }
        points.sort_unstable();
        points.dedup();

        let mut segments = Segments::default();
        let mut active: BinaryHeap<(Priority, K)> = BinaryHeap::new();
        let mut pending = items.iter().peekable();
        for (i, &point) in points.iter().enumerate() {
            while let Some(item) = pending.next_if(|item| item.start <= point) {
                active.push((item.priority, item.end));
            }
            while active.peek().is_some_and(|&(_, end)| end < point) {
                active.pop();
            }
            let Some(&(winner, _)) = active.peek() else {
                continue;
            };
            // Points are strictly increasing, so the next one is above 0. After the last point
            // every active range ends at MAX (otherwise its `end + 1` would be a later point).
            let end = match points.get(i + 1) {
                Some(next) => next.predecessor().unwrap_or(point),
                None => K::MAX,
            };
            segments.push(point, end, winner.index.0);
        }
        segments.shrink_to_fit();
        segments
    }

    /// Appends `[start, end]`, merging it into the last segment when that one has the same rule
    /// and ends right before `start`.
    fn push(&mut self, start: K, end: K, rule: u32) {
        if let (Some(last_end), Some(&last_rule)) = (self.ends.last_mut(), self.rule.last()) {
            if last_rule == rule && last_end.successor() == Some(start) {
                *last_end = end;
                return;
            }
        }
        self.starts.push(start);
        self.ends.push(end);
        self.rule.push(rule);
    }

    /// The rule index of the segment containing `key`.
    #[inline]
    fn lookup(&self, key: K) -> Option<u32> {
        let i = self
            .starts
            .partition_point(|&start| start <= key)
            .checked_sub(1)?;
        if *self.ends.get(i)? >= key {
            self.rule.get(i).copied()
        } else {
            None
        }
    }

    fn len(&self) -> usize {
        self.starts.len()
    }

    fn heap_bytes(&self) -> usize {
        (self.starts.capacity() + self.ends.capacity()) * size_of::<K>()
            + self.rule.capacity() * size_of::<u32>()
    }

    fn shrink_to_fit(&mut self) {
        self.starts.shrink_to_fit();
        self.ends.shrink_to_fit();
        self.rule.shrink_to_fit();
    }
}

#[cfg(test)]
#[path = "table_tests.rs"]
mod tests;
