//! `RangeTable`: the compiled, immutable lookup structure that every call consults.
//!
//! `reload` loads the rules from the store, adds the built-in ones, and calls
//! [`RangeTable::build`] off the hot path; the snapshot then swaps the new table in, and each
//! session does one [`RangeTable::lookup`] for the caller's address. Building resolves all
//! overlaps once (a sweep over the range boundaries) into sorted, disjoint segments, then lays
//! them out for fast search: a two-level bucket index by the top address bits, 12-byte IPv4
//! segments, 64-bit keys for IPv6. [`BinarySearchTable`] keeps the plain layout (one binary
//! search over the segments) as the test oracle and benchmark baseline.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fmt;
use std::mem::size_of;
use std::net::IpAddr;

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
/// Each segment's label is the rule's index with the deny flag in its top bit, so
/// [`kind`](RangeTable::kind) answers without touching the rules. Build is `O(n log n)` in the
/// number of rules.
///
/// * **Bucket index** (both families): `2^16` buckets by the top 16 bits of the key (fewer for
///   small tables), each holding the position of the first segment that starts in it; a
///   bucket with more than 32 segments gets 256 sub-buckets by the next 8 bits. A lookup
///   reads two or three bounds, then counts the segments between them that start at or
///   before the address: over a fixed window of 4 without branches when there are that few
///   (most buckets), by binary search otherwise. Fixed size: 256 KiB for the first level,
///   1 KiB per split bucket.
/// * **IPv4**: segments as `(start, end, label)`, 12 bytes each, so the final check reads one
///   cache line.
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

impl RangeTable {
    /// Compiles `rules` (in any order, overlapping freely) into a table. Never fails.
    ///
    /// The rules are kept as given and returned by [`rules`](RangeTable::rules); segments refer
    /// to them by index. (Only the first `2^31 - 1` rules are compiled; no real rule set comes
    /// near that.)
    pub fn build(rules: Vec<Rule>) -> RangeTable {
        Self::build_with(rules, INDEX_BITS, SPLIT_ABOVE)
    }

    /// A table with no rules: every address is a stranger.
    pub fn empty() -> RangeTable {
        RangeTable::default()
    }

    /// The rule that decides `ip` under the precedence documented on [`RangeTable`], or `None`
    /// when no rule contains it. IPv4-mapped IPv6 addresses are looked up as IPv4.
    #[inline]
    pub fn lookup(&self, ip: IpAddr) -> Option<&Rule> {
        let label = self.label(ip)?;
        self.rules.get((label & INDEX_MASK) as usize)
    }

    /// The kind of the rule [`lookup`](RangeTable::lookup) would return (`None`: a stranger),
    /// read from the segment alone: the verdict without touching the rule list.
    #[inline]
    pub fn kind(&self, ip: IpAddr) -> Option<RuleKind> {
        let label = self.label(ip)?;
        Some(if label & DENY_BIT != 0 {
            RuleKind::Deny
        } else {
            RuleKind::Permit
        })
    }

    /// All rules the table was built from, in the order given to [`build`](RangeTable::build).
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// Number of segments the sweep produced: `(IPv4, IPv6)` (the same as
    /// [`BinarySearchTable::segment_counts`] for the same rules).
    pub fn segment_counts(&self) -> (usize, usize) {
        (self.v4.segs.len(), self.v6.sweep_segments)
    }

    /// Bytes allocated for the lookup structures of both families (by capacity; the rules
    /// themselves are not counted). The same as `self.memory().total()`.
    pub fn heap_bytes(&self) -> usize {
        self.memory().total()
    }

    /// Heap use by part, measured from the allocated capacities.
    pub fn memory(&self) -> TableMemory {
        TableMemory {
            v4_segments: self.v4.segs.len(),
            v4_segment_bytes: self.v4.segs.capacity() * size_of::<Seg4>(),
            v4_index_bytes: self.v4.index.heap_bytes(),
            v6_segments: self.v6.coarse.len(),
            v6_segment_bytes: self.v6.coarse.heap_bytes(),
            v6_index_bytes: self.v6.index.heap_bytes(),
            v6_fine_segments: self.v6.fine.len(),
            v6_fine_bytes: self.v6.fine.heap_bytes(),
        }
    }

    /// The segment label (rule index | deny flag) deciding `ip`.
    #[inline]
    fn label(&self, ip: IpAddr) -> Option<u32> {
        match ip.to_canonical() {
            IpAddr::V4(a) => self.v4.lookup(u32::from(a)),
            IpAddr::V6(a) => self.v6.lookup(u128::from(a)),
        }
    }

    /// [`build`](RangeTable::build) with bucket indexes of at most `2^max_bits` first-level
    /// buckets (clamped to `0..=16`; fewer when there are few segments), splitting buckets of
    /// more than `split_above` segments.
    fn build_with(rules: Vec<Rule>, max_bits: u32, split_above: u32) -> RangeTable {
        let (rules, v4, v6) = sweep(rules);
        let label = |index: u32| match rules.get(index as usize) {
            Some(r) if r.kind == RuleKind::Deny => index | DENY_BIT,
            _ => index,
        };
        RangeTable {
            v4: V4Table::new(&v4, &label, max_bits, split_above),
            v6: V6Table::new(&v6, &label, max_bits, split_above),
            rules,
        }
    }
}

/// The reference layout: the sweep's segments searched with one `partition_point` per lookup,
/// `u128` keys for IPv6. Same answers as [`RangeTable`] (property-tested), simpler and slower;
/// the test oracle for the fast layout and the baseline in `benches/lookup.rs`.
#[derive(Debug, Clone, Default)]
pub struct BinarySearchTable {
    rules: Vec<Rule>,
    v4: Segments<u32>,
    v6: Segments<u128>,
}

impl BinarySearchTable {
    /// Compiles `rules` exactly like [`RangeTable::build`].
    pub fn build(rules: Vec<Rule>) -> BinarySearchTable {
        let (rules, v4, v6) = sweep(rules);
        BinarySearchTable { rules, v4, v6 }
    }

    /// The deciding rule for `ip`, as [`RangeTable::lookup`].
    pub fn lookup(&self, ip: IpAddr) -> Option<&Rule> {
        let index = match ip.to_canonical() {
            IpAddr::V4(a) => self.v4.lookup(u32::from(a)),
            IpAddr::V6(a) => self.v6.lookup(u128::from(a)),
        }?;
        self.rules.get(usize::try_from(index).ok()?)
    }

    /// All rules, in the order given to [`build`](BinarySearchTable::build).
    pub fn rules(&self) -> &[Rule] {
        &self.rules
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

/// Most bits of a first-level bucket index: 65,536 buckets.
const INDEX_BITS: u32 = 16;

/// Bits of a second-level index: 256 sub-buckets.
const SUB_BITS: u32 = 8;

/// A first-level bucket with more segments than this gets a second level.
const SPLIT_ABOVE: u32 = 32;

/// Flag of a split bucket in [`BucketIndex::level1`].
const SPLIT: u32 = 1 << 31;

/// The deny flag in a segment label; the low 31 bits are the rule index.
const DENY_BIT: u32 = 1 << 31;

/// The rule index in a segment label.
const INDEX_MASK: u32 = DENY_BIT - 1;

/// Label of a 64-bit-key IPv6 segment whose `/64` blocks are resolved in the full-width table.
/// Never a real label: at most `2^31 - 1` rules are compiled, so indexes stop at `2^31 - 2`.
const FINE: u32 = u32::MAX;

/// The low 64 bits of an IPv6 address (the interface identifier of a `/64`).
const LOW64: u128 = u64::MAX as u128;

/// Splits `rules` by family and runs the sweep on each.
fn sweep(mut rules: Vec<Rule>) -> (Vec<Rule>, Segments<u32>, Segments<u128>) {
    rules.truncate(INDEX_MASK as usize);
    let mut v4 = Vec::new();
    let mut v6 = Vec::new();
    for (index, rule) in (0u32..).zip(&rules) {
        match rule.range {
            IpRange::V4 { start, end } => v4.push(Item::new(start, end, rule, index)),
            IpRange::V6 { start, end } => v6.push(Item::new(start, end, rule, index)),
        }
    }
    (rules, Segments::build(v4), Segments::build(v6))
}

/// Where to search for a key among sorted segment starts: a first level by the key's top
/// bits and, for crowded first-level buckets, a second level by the next [`SUB_BITS`].
#[derive(Debug, Clone, Default)]
struct BucketIndex {
    /// For each first-level bucket `b` (and one past the last): the number of segments that
    /// start below the bucket or, for a split bucket, [`SPLIT`] | the offset of its
    /// `2^SUB_BITS + 1` bounds in `level2` (whose first bound is that number). Empty when
    /// there are no segments, or too many to index (see `unindexed`).
    level1: Vec<u32>,
    /// Second-level bounds (absolute segment positions), `2^SUB_BITS + 1` per split bucket.
    level2: Vec<u32>,
    /// `key_bits - first-level bits`: a key's bucket is `key >> shift` (in `u128`).
    shift: u32,
    /// With `level1` empty: search all these segments (only for `>= 2^31` segments, which no
    /// real table has; positions must stay below [`SPLIT`]).
    unindexed: usize,
}

impl BucketIndex {
    /// Indexes `n` sorted starts (`start(i)`, as `u128`) of `key_bits`-bit keys.
    fn new(
        n: usize,
        start: impl Fn(usize) -> u128,
        key_bits: u32,
        max_bits: u32,
        split_above: u32,
    ) -> Self {
        if n == 0 || n >= SPLIT as usize {
            return BucketIndex {
                unindexed: n,
                ..BucketIndex::default()
            };
        }
        // About one segment per bucket, at most 2^max_bits buckets.
        let bits = n
            .next_power_of_two()
            .trailing_zeros()
            .min(max_bits.min(INDEX_BITS));
        let shift = key_bits - bits;
        let buckets = 1u128 << bits;
        // n < 2^31 (checked above), so every position fits.
        let pos = |i: usize| i as u32;
        let mut level1 = Vec::with_capacity(buckets as usize + 1);
        let mut i = 0usize;
        for b in 0..=buckets {
            let first = b << shift;
            while i < n && start(i) < first {
                i += 1;
            }
            level1.push(pos(i));
        }
        let mut level2 = Vec::new();
        if shift >= SUB_BITS {
            let sub_shift = shift - SUB_BITS;
            for b in 0..buckets as usize {
                let (lo, hi) = (level1[b], level1[b + 1] & !SPLIT);
                if hi - lo <= split_above || level2.len() >= SPLIT as usize / 2 {
                    continue;
                }
                level1[b] = SPLIT | pos(level2.len());
                let mut j = lo as usize;
                for s in 0..=(1u128 << SUB_BITS) {
                    let first = ((b as u128) << shift) + (s << sub_shift);
                    while j < hi as usize && start(j) < first {
                        j += 1;
                    }
                    level2.push(pos(j));
                }
            }
        }
        level1.shrink_to_fit();
        level2.shrink_to_fit();
        BucketIndex {
            level1,
            level2,
            shift,
            unindexed: 0,
        }
    }

    /// The positions `lo..hi` of the segments that start in `key`'s (sub-)bucket. The
    /// segment containing `key`, if any, is the last of them starting at or before `key`,
    /// or else the one just before `lo`; every segment from `hi` on starts after `key`.
    #[inline]
    fn range(&self, key: u128) -> Option<(usize, usize)> {
        let b = usize::try_from(key >> self.shift).ok()?;
        let Some(&entry) = self.level1.get(b) else {
            return (self.unindexed > 0).then_some((0, self.unindexed));
        };
        if entry & SPLIT == 0 {
            let next = *self.level1.get(b + 1)?;
            return Some((entry as usize, self.position(next)?));
        }
        // A split bucket implies shift >= SUB_BITS.
        let s = ((key >> (self.shift - SUB_BITS)) as usize) & ((1 << SUB_BITS) - 1);
        let at = (entry & !SPLIT) as usize + s;
        Some((
            *self.level2.get(at)? as usize,
            *self.level2.get(at + 1)? as usize,
        ))
    }

    /// The segment position a first-level entry stands for.
    #[inline]
    fn position(&self, entry: u32) -> Option<usize> {
        if entry & SPLIT == 0 {
            Some(entry as usize)
        } else {
            self.level2
                .get((entry & !SPLIT) as usize)
                .map(|&p| p as usize)
        }
    }

    fn heap_bytes(&self) -> usize {
        (self.level1.capacity() + self.level2.capacity()) * size_of::<u32>()
    }
}

/// How many segments a lookup scans without branching (a bucket of at most this many
/// segments is counted over a fixed window instead of binary-searched).
const WINDOW: usize = 4;

/// The number of `starts` in `lo..hi` at or before `key`, given that every start from `hi`
/// on is after `key`: a fixed, branch-free count over `WINDOW` entries for small buckets
/// (most of them), a binary search otherwise.
#[inline]
fn count_at_or_before<T, K: Copy + Ord>(
    items: &[T],
    lo: usize,
    hi: usize,
    key: K,
    start: impl Fn(&T) -> K,
) -> Option<usize> {
    if hi - lo <= WINDOW {
        let window = items.get(lo..)?;
        Some(
            window
                .iter()
                .take(WINDOW)
                .map(|t| usize::from(start(t) <= key))
                .sum(),
        )
    } else {
        Some(items.get(lo..hi)?.partition_point(|t| start(t) <= key))
    }
}

/// One IPv4 segment: `[start, end]` and its label.
#[derive(Debug, Clone, Copy, Default)]
struct Seg4 {
    start: u32,
    end: u32,
    label: u32,
}

/// IPv4: 12-byte segments and their bucket index.
#[derive(Debug, Clone, Default)]
struct V4Table {
    segs: Vec<Seg4>,
    index: BucketIndex,
}

impl V4Table {
    fn new(
        sweep: &Segments<u32>,
        label: &impl Fn(u32) -> u32,
        max_bits: u32,
        split_above: u32,
    ) -> Self {
        let segs: Vec<Seg4> = (0..sweep.len())
            .map(|i| Seg4 {
                start: sweep.starts[i],
                end: sweep.ends[i],
                label: label(sweep.rule[i]),
            })
            .collect();
        let index = BucketIndex::new(
            segs.len(),
            |i| u128::from(segs[i].start),
            32,
            max_bits,
            split_above,
        );
        V4Table { segs, index }
    }

    #[inline]
    fn lookup(&self, key: u32) -> Option<u32> {
        let (lo, hi) = self.index.range(u128::from(key))?;
        let i = (lo + count_at_or_before(&self.segs, lo, hi, key, |s| s.start)?).checked_sub(1)?;
        let seg = self.segs.get(i)?;
        (seg.end >= key).then_some(seg.label)
    }
}

/// IPv6: segments on the top 64 bits (`coarse`, with its bucket index), and the `/64` blocks
/// that no single segment covers whole, resolved at full width (`fine`).
#[derive(Debug, Clone, Default)]
struct V6Table {
    /// Whole `/64` blocks; label [`FINE`] sends the lookup to `fine`.
    coarse: Segments<u64>,
    index: BucketIndex,
    /// The parts of the sweep's segments that lie in partly covered `/64` blocks.
    fine: Segments<u128>,
    /// Segments the sweep produced (for `segment_counts`).
    sweep_segments: usize,
}

impl V6Table {
    fn new(
        sweep: &Segments<u128>,
        label: &impl Fn(u32) -> u32,
        max_bits: u32,
        split_above: u32,
    ) -> Self {
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
        coarse.shrink_to_fit();
        fine.shrink_to_fit();
        let index = BucketIndex::new(
            coarse.len(),
            |i| u128::from(coarse.starts[i]),
            64,
            max_bits,
            split_above,
        );
        V6Table {
            coarse,
            index,
            fine,
            sweep_segments: sweep.len(),
        }
    }

    #[inline]
    fn lookup(&self, key: u128) -> Option<u32> {
        let block = (key >> 64) as u64;
        let (lo, hi) = self.index.range(u128::from(block))?;
        let c = &self.coarse;
        let i = (lo + count_at_or_before(&c.starts, lo, hi, block, |&s| s)?).checked_sub(1)?;
        if *c.ends.get(i)? < block {
            return None;
        }
        match *c.rule.get(i)? {
            FINE => self.fine.lookup(key),
            label => Some(label),
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
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use proptest::prelude::*;

    use super::*;
    use crate::ranges::builtin;
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

    fn rule(id: i64, kind: RuleKind, range: &str) -> Rule {
        Rule {
            id,
            kind,
            range: range.parse().unwrap(),
            country: "AA".into(),
            source: RuleSource::Custom,
            note: format!("{kind} {id}"),
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
        let reference = BinarySearchTable::build(table.rules().to_vec());
        assert_eq!(got, reference.lookup(ip), "binary search disagrees at {ip}");
        got.map(|r| (r.kind, r.id))
    }

    #[test]
    fn empty_table() {
        for table in [RangeTable::empty(), RangeTable::build(Vec::new())] {
            assert_eq!(decide(&table, "203.0.113.7"), None);
            assert_eq!(decide(&table, "::"), None);
            assert_eq!(table.segment_counts(), (0, 0));
            assert_eq!(table.heap_bytes(), 0);
            assert!(table.rules().is_empty());
        }
    }

    #[test]
    fn deny_inside_permit() {
        let t = RangeTable::build(vec![permit(1, "10.0.0.0/8"), deny(2, "10.1.0.0/16")]);
        assert_eq!(decide(&t, "10.0.255.255"), Some((P, 1)));
        assert_eq!(decide(&t, "10.1.0.0"), Some((D, 2)));
        assert_eq!(decide(&t, "10.1.2.3"), Some((D, 2)));
        assert_eq!(decide(&t, "10.1.255.255"), Some((D, 2)));
        assert_eq!(decide(&t, "10.2.0.0"), Some((P, 1)));
        assert_eq!(decide(&t, "9.255.255.255"), None);
        assert_eq!(decide(&t, "11.0.0.0"), None);
        assert_eq!(t.segment_counts(), (3, 0));
    }

    #[test]
    fn permit_inside_deny_is_still_denied() {
        let t = RangeTable::build(vec![deny(1, "203.0.0.0/8"), permit(2, "203.0.113.0/24")]);
        assert_eq!(decide(&t, "203.0.113.7"), Some((D, 1)));
        assert_eq!(decide(&t, "203.0.113.0"), Some((D, 1)));
        assert_eq!(decide(&t, "203.255.255.255"), Some((D, 1)));
        // The permit never wins anywhere, so the deny is one merged segment.
        assert_eq!(t.segment_counts(), (1, 0));
    }

    #[test]
    fn nested_permits_pick_the_most_specific() {
        let t = RangeTable::build(vec![
            permit(1, "0.0.0.0/0"),
            permit(2, "203.0.113.0/24"),
            permit(3, "203.0.0.0/8"),
            permit(4, "203.0.113.64-203.0.113.70"),
        ]);
        assert_eq!(decide(&t, "8.8.8.8"), Some((P, 1)));
        assert_eq!(decide(&t, "203.1.0.0"), Some((P, 3)));
        assert_eq!(decide(&t, "203.0.113.63"), Some((P, 2)));
        assert_eq!(decide(&t, "203.0.113.64"), Some((P, 4)));
        assert_eq!(decide(&t, "203.0.113.70"), Some((P, 4)));
        assert_eq!(decide(&t, "203.0.113.71"), Some((P, 2)));
    }

    #[test]
    fn nested_denies_pick_the_most_specific() {
        let t = RangeTable::build(vec![
            deny(5, "2001:db8::/32"),
            deny(6, "2001:db8:1::/48"),
            permit(7, "2001:db8:1:2::/64"),
        ]);
        assert_eq!(decide(&t, "2001:db8::1"), Some((D, 5)));
        assert_eq!(decide(&t, "2001:db8:1:2::1"), Some((D, 6)));
        assert_eq!(decide(&t, "2001:db8:2::"), Some((D, 5)));
    }

    #[test]
    fn identical_ranges_pick_the_lowest_id() {
        let t = RangeTable::build(vec![
            permit(7, "198.51.100.0/24"),
            permit(3, "198.51.100.0/24"),
            permit(5, "198.51.100.0/24"),
        ]);
        assert_eq!(decide(&t, "198.51.100.1"), Some((P, 3)));
        // Same range as a permit with a lower id: the deny still wins.
        let t = RangeTable::build(vec![
            permit(1, "198.51.100.0/24"),
            deny(9, "198.51.100.0/24"),
        ]);
        assert_eq!(decide(&t, "198.51.100.1"), Some((D, 9)));
        // Negative (builtin) ids are lower than stored ones.
        let t = RangeTable::build(vec![permit(1, "10.0.0.0/8"), permit(-1, "10.0.0.0/8")]);
        assert_eq!(decide(&t, "10.9.9.9"), Some((P, -1)));
    }

    #[test]
    fn identical_rules_pick_the_first() {
        let a = permit(4, "198.51.100.0/24");
        let mut b = a.clone();
        b.note = "second".into();
        let t = RangeTable::build(vec![a.clone(), b]);
        assert_eq!(t.lookup("198.51.100.9".parse().unwrap()), Some(&a));
    }

    #[test]
    fn adjacent_ranges_keep_their_boundaries() {
        let t = RangeTable::build(vec![
            permit(1, "192.0.2.0-192.0.2.127"),
            permit(2, "192.0.2.128-192.0.2.255"),
            deny(3, "192.0.3.0/24"),
        ]);
        assert_eq!(decide(&t, "192.0.1.255"), None);
        assert_eq!(decide(&t, "192.0.2.127"), Some((P, 1)));
        assert_eq!(decide(&t, "192.0.2.128"), Some((P, 2)));
        assert_eq!(decide(&t, "192.0.2.255"), Some((P, 2)));
        assert_eq!(decide(&t, "192.0.3.0"), Some((D, 3)));
        assert_eq!(decide(&t, "192.0.4.0"), None);
        assert_eq!(t.segment_counts(), (3, 0));
    }

    #[test]
    fn segments_of_one_rule_are_merged() {
        // 100.0.0.0/24 wins on both sides of the point where the wider rule starts.
        let t = RangeTable::build(vec![
            permit(1, "100.0.0.0/24"),
            permit(2, "100.0.0.128-100.0.3.255"),
        ]);
        assert_eq!(t.segment_counts(), (2, 0));
        assert_eq!(decide(&t, "100.0.0.200"), Some((P, 1)));
        assert_eq!(decide(&t, "100.0.1.0"), Some((P, 2)));
        // A deny in the middle splits a permit in three.
        let t = RangeTable::build(vec![permit(1, "100.0.0.0/16"), deny(2, "100.0.5.0/24")]);
        assert_eq!(t.segment_counts(), (3, 0));
    }

    #[test]
    fn edges_at_zero_and_max() {
        let t = RangeTable::build(vec![
            permit(1, "0.0.0.0/0"),
            deny(2, "0.0.0.0"),
            deny(3, "255.255.255.255"),
            permit(4, "::/0"),
            deny(5, "::"),
            deny(6, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"),
        ]);
        assert_eq!(decide(&t, "0.0.0.0"), Some((D, 2)));
        assert_eq!(decide(&t, "0.0.0.1"), Some((P, 1)));
        assert_eq!(decide(&t, "255.255.255.254"), Some((P, 1)));
        assert_eq!(decide(&t, "255.255.255.255"), Some((D, 3)));
        assert_eq!(decide(&t, "::"), Some((D, 5)));
        assert_eq!(decide(&t, "::1"), Some((P, 4)));
        assert_eq!(
            decide(&t, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe"),
            Some((P, 4))
        );
        assert_eq!(
            decide(&t, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"),
            Some((D, 6))
        );
        assert_eq!(t.segment_counts(), (3, 3));

        let t = RangeTable::build(vec![permit(1, "255.255.255.0/24"), permit(2, "ffff::/16")]);
        assert_eq!(decide(&t, "255.255.255.255"), Some((P, 1)));
        assert_eq!(decide(&t, "255.255.254.255"), None);
        assert_eq!(
            decide(&t, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"),
            Some((P, 2))
        );
        assert_eq!(decide(&t, "fffe:ffff:ffff:ffff:ffff:ffff:ffff:ffff"), None);
    }

    #[test]
    fn families_do_not_mix() {
        let t = RangeTable::build(vec![permit(1, "0.0.0.0/0")]);
        assert_eq!(decide(&t, "2001:db8::1"), None);
        assert_eq!(decide(&t, "::"), None);
        let t = RangeTable::build(vec![permit(1, "::/0")]);
        assert_eq!(decide(&t, "1.2.3.4"), None);
    }

    #[test]
    fn v4_mapped_lookup_hits_the_ipv4_rule() {
        let t = RangeTable::build(vec![permit(1, "203.0.113.0/24"), deny(2, "198.51.100.7")]);
        assert_eq!(decide(&t, "::ffff:203.0.113.7"), Some((P, 1)));
        assert_eq!(decide(&t, "::ffff:198.51.100.7"), Some((D, 2)));
        assert_eq!(decide(&t, "::ffff:198.51.100.8"), None);
        // A mapped rule was canonicalized at parse time, so it is an IPv4 rule too.
        let t = RangeTable::build(vec![permit(3, "::ffff:192.0.2.0/120")]);
        assert_eq!(decide(&t, "192.0.2.1"), Some((P, 3)));
        assert_eq!(t.segment_counts(), (1, 0));
    }

    #[test]
    fn builtins_permit_local_space_but_lose_to_deny() {
        let t = RangeTable::build(builtin::rules());
        let hit = |ip: &str| t.lookup(ip.parse().unwrap()).map(|r| r.note.as_str());
        assert_eq!(hit("192.168.1.10"), Some("RFC 1918 private"));
        assert_eq!(hit("172.20.0.1"), Some("RFC 1918 private"));
        assert_eq!(hit("127.0.0.1"), Some("loopback"));
        assert_eq!(hit("100.100.0.1"), Some("RFC 6598 shared (CGNAT)"));
        assert_eq!(hit("::ffff:10.0.0.1"), Some("RFC 1918 private"));
        assert_eq!(hit("::1"), Some("IPv6 loopback"));
        assert_eq!(hit("fd00::1"), Some("IPv6 unique local"));
        assert_eq!(hit("fe80::1"), Some("IPv6 link-local"));
        assert_eq!(hit("8.8.8.8"), None);
        assert_eq!(hit("2001:db8::1"), None);
        assert_eq!(t.segment_counts(), (6, 3));

        let mut rules = builtin::rules();
        rules.push(deny(1, "192.168.66.0/24"));
        let t = RangeTable::build(rules);
        assert_eq!(decide(&t, "192.168.66.6"), Some((D, 1)));
        assert_eq!(decide(&t, "192.168.67.0"), Some((P, -3)));
    }

    #[test]
    fn rules_are_kept_in_order_and_segments_are_counted() {
        let rules = vec![
            permit(2, "10.0.0.0/8"),
            deny(1, "2001:db8::/32"),
            permit(9, "::1"),
        ];
        let t = RangeTable::build(rules.clone());
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

    fn range_strategy() -> impl Strategy<Value = IpRange> {
        prop_oneof![
            (v4_key(), v4_key()).prop_map(|(a, b)| IpRange::V4 {
                start: a.min(b) as u32,
                end: a.max(b) as u32
            }),
            (v6_key(), v6_key()).prop_map(|(a, b)| IpRange::V6 {
                start: a.min(b),
                end: a.max(b)
            }),
        ]
    }

    fn rules_strategy() -> impl Strategy<Value = Vec<Rule>> {
        prop::collection::vec((range_strategy(), any::<bool>(), -3i64..8), 0..24).prop_map(
            |specs| {
                specs
                    .into_iter()
                    .enumerate()
                    .map(|(n, (range, is_deny, id))| Rule {
                        id,
                        kind: if is_deny {
                            RuleKind::Deny
                        } else {
                            RuleKind::Permit
                        },
                        range,
                        country: "AA".into(),
                        source: RuleSource::Custom,
                        note: format!("rule {n}"),
                    })
                    .collect()
            },
        )
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
        prop_assert_eq!(t.segs.len(), reference.len());
        for (i, seg) in t.segs.iter().enumerate() {
            prop_assert_eq!(
                (seg.start, seg.end),
                (reference.starts[i], reference.ends[i])
            );
            prop_assert_eq!(seg.label & INDEX_MASK, reference.rule[i]);
            let deny = rules[reference.rule[i] as usize].kind == RuleKind::Deny;
            prop_assert_eq!(seg.label & DENY_BIT != 0, deny);
        }
        Ok(())
    }

    /// The IPv6 layout: coarse segments sorted, disjoint and merged; every coarse rule a real
    /// index or FINE; fine segments sorted, disjoint, each inside a block marked FINE.
    fn check_v6_layout(t: &V6Table, rules: &[Rule]) -> Result<(), TestCaseError> {
        let c = &t.coarse;
        for i in 0..c.len() {
            prop_assert!(c.starts[i] <= c.ends[i]);
            prop_assert!(c.rule[i] == FINE || ((c.rule[i] & INDEX_MASK) as usize) < rules.len());
            if i + 1 < c.len() {
                prop_assert!(c.ends[i] < c.starts[i + 1], "coarse overlap or unsorted");
                let touching = c.ends[i].successor() == Some(c.starts[i + 1]);
                prop_assert!(!(touching && c.rule[i] == c.rule[i + 1]), "unmerged coarse");
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
            prop_assert_eq!(c.lookup(a), Some(FINE), "fine segment in an unmarked block");
            prop_assert_eq!(c.lookup(b), Some(FINE), "fine segment in an unmarked block");
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
            let table = RangeTable::build(rules.clone());
            prop_assert_eq!(table.rules(), &rules[..]);
            for ip in probes(&rules, &v4, &v6) {
                prop_assert_eq!(table.lookup(ip), naive_lookup(&rules, ip), "at {}", ip);
            }
        }

        #[test]
        fn segments_are_sorted_disjoint_and_merged(rules in rules_strategy()) {
            let table = RangeTable::build(rules.clone());
            let reference = BinarySearchTable::build(rules.clone());
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
            let table = RangeTable::build(rules.clone());
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
        let range = prop_oneof![
            (v4_bucket_key(), v4_bucket_key()).prop_map(|(a, b)| IpRange::V4 {
                start: a.min(b) as u32,
                end: a.max(b) as u32
            }),
            (v6_block_key(), v6_block_key()).prop_map(|(a, b)| IpRange::V6 {
                start: a.min(b),
                end: a.max(b)
            }),
        ];
        prop::collection::vec((range, any::<bool>(), -3i64..8), 0..24).prop_map(|specs| {
            specs
                .into_iter()
                .enumerate()
                .map(|(n, (range, is_deny, id))| Rule {
                    id,
                    kind: if is_deny {
                        RuleKind::Deny
                    } else {
                        RuleKind::Permit
                    },
                    range,
                    country: "AA".into(),
                    source: RuleSource::Custom,
                    note: format!("rule {n}"),
                })
                .collect()
        })
    }

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
            let reference = BinarySearchTable::build(rules.clone());
            // Split thresholds 0 and 1 put a second level under (nearly) every bucket.
            for (bits, split) in [(0, 0), (3, 1), (16, 0), (16, SPLIT_ABOVE)] {
                let table = RangeTable::build_with(rules.clone(), bits, split);
                check_v6_layout(&table.v6, &rules)?;
                for ip in probes(&rules, &v4, &v6) {
                    let want = naive_lookup(&rules, ip);
                    prop_assert_eq!(reference.lookup(ip), want, "binary search at {}", ip);
                    prop_assert_eq!(table.lookup(ip), want, "fast layout ({} bits, split {}) at {}", bits, split, ip);
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
            let reference = BinarySearchTable::build(rules.clone());
            for split in [0, SPLIT_ABOVE] {
                let table = RangeTable::build_with(rules.clone(), 16, split);
                for ip in probes(&rules, &v4, &v6) {
                    prop_assert_eq!(table.lookup(ip), reference.lookup(ip), "at {}", ip);
                    prop_assert_eq!(table.kind(ip), reference.lookup(ip).map(|r| r.kind), "kind at {}", ip);
                }
            }
        }
    }

    #[test]
    fn v4_index_buckets_point_at_their_segments() {
        let t = RangeTable::build_with(
            vec![
                permit(1, "0.0.0.0-0.0.255.255"),
                permit(2, "0.1.0.5-0.3.0.0"),
                deny(3, "0.2.0.0/16"),
                permit(4, "255.255.0.0/16"),
            ],
            16,
            SPLIT_ABOVE,
        );
        let v4 = &t.v4;
        // permit 2 is split by deny 3: 5 segments give a 3-bit index.
        assert_eq!(t.segment_counts(), (5, 0));
        assert_eq!(v4.index.shift, 29);
        assert_eq!(v4.index.level1.len(), 9);
        assert!(v4.index.level2.is_empty());
        assert_eq!(v4.index.level1, [0, 4, 4, 4, 4, 4, 4, 4, 5]);
        assert_eq!(decide(&t, "0.1.0.4"), None);
        assert_eq!(decide(&t, "0.1.255.255"), Some((P, 2)));
        assert_eq!(decide(&t, "0.2.0.0"), Some((D, 3)));
        assert_eq!(decide(&t, "0.3.0.0"), Some((P, 2)));
        assert_eq!(decide(&t, "0.3.0.1"), None);
        assert_eq!(decide(&t, "255.254.255.255"), None);
        assert_eq!(decide(&t, "255.255.255.255"), Some((P, 4)));
        // Many segments: the full 65,536-bucket index.
        let many: Vec<Rule> = (0..100_000u32)
            .map(|n| Rule {
                id: i64::from(n),
                kind: RuleKind::Permit,
                range: IpRange::V4 {
                    start: n * 40_000,
                    end: n * 40_000 + 9,
                },
                country: "AA".into(),
                source: RuleSource::Custom,
                note: String::new(),
            })
            .collect();
        let t = RangeTable::build(many.clone());
        assert_eq!(t.v4.index.level1.len(), 65_537);
        assert!(
            t.v4.index.level2.is_empty(),
            "no bucket holds more than 32 segments"
        );
        assert_eq!(t.memory().v4_index_bytes, 65_537 * 4);
        assert_eq!(t.memory().v4_segment_bytes, 100_000 * 12);
        let reference = BinarySearchTable::build(many.clone());
        for k in (0..u32::MAX - 50_000)
            .step_by(9_973)
            .chain([u32::MAX - 1, u32::MAX])
        {
            let ip = IpAddr::V4(Ipv4Addr::from(k));
            assert_eq!(t.lookup(ip), reference.lookup(ip), "at {ip}");
        }
        // 4,000 small ranges in 10.7.0.0/16 (one first-level bucket): a second level.
        let mut dense = many;
        dense.retain(|r| !r.range.contains("10.7.0.0".parse().unwrap()));
        for n in 0..4_000u32 {
            let start = u32::from(Ipv4Addr::new(10, 7, 0, 0)) + n * 16;
            dense.push(Rule {
                id: 1_000_000 + i64::from(n),
                kind: if n % 3 == 0 {
                    RuleKind::Deny
                } else {
                    RuleKind::Permit
                },
                range: IpRange::V4 {
                    start,
                    end: start + (n % 16),
                },
                country: "AA".into(),
                source: RuleSource::Custom,
                note: String::new(),
            });
        }
        let t = RangeTable::build(dense.clone());
        assert_eq!(t.v4.index.level2.len(), 257, "one split bucket");
        let reference = BinarySearchTable::build(dense);
        let base = u32::from(Ipv4Addr::new(10, 6, 255, 0));
        for k in base..base + 70_000 {
            let ip = IpAddr::V4(Ipv4Addr::from(k));
            assert_eq!(t.lookup(ip), reference.lookup(ip), "at {ip}");
            assert_eq!(
                t.kind(ip),
                reference.lookup(ip).map(|r| r.kind),
                "kind at {ip}"
            );
        }
    }

    #[test]
    fn v6_aligned_rules_use_64_bit_keys_only() {
        let t = RangeTable::build(vec![
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
            5 * 20,
            "20 bytes per /64-aligned IPv6 segment"
        );
        assert_eq!(
            decide(&t, "2001:db8:1:ffff:ffff:ffff:ffff:ffff"),
            Some((D, 2))
        );
        assert_eq!(decide(&t, "2001:db8:2::"), Some((P, 1)));
        assert_eq!(decide(&t, "2001:db8:ffff:ffff::1"), Some((P, 3)));
        assert_eq!(decide(&t, "2601::"), Some((P, 4)));
        assert_eq!(decide(&t, "2610::"), None);
    }

    #[test]
    fn v6_unaligned_rules_go_to_the_full_width_table() {
        let t = RangeTable::build(vec![
            permit(1, "2001:db8::/32"),
            deny(2, "2001:db8::66"),
            deny(3, "2001:db8:0:1:8000::-2001:db8:0:3:7fff::"),
            permit(4, "::1"),
        ]);
        // Marks: ::/64, 2001:db8::/64 (merged with) 2001:db8:0:1::/64 (whole blocks in
        // between are deny 3), 2001:db8:0:3::/64.
        let m = t.memory();
        assert!(m.v6_fine_segments >= 5, "{m:?}");
        assert_eq!(decide(&t, "::1"), Some((P, 4)));
        assert_eq!(decide(&t, "::2"), None);
        assert_eq!(decide(&t, "2001:db8::65"), Some((P, 1)));
        assert_eq!(decide(&t, "2001:db8::66"), Some((D, 2)));
        assert_eq!(decide(&t, "2001:db8::67"), Some((P, 1)));
        assert_eq!(decide(&t, "2001:db8:0:1:7fff:ffff:ffff:ffff"), Some((P, 1)));
        assert_eq!(decide(&t, "2001:db8:0:1:8000::"), Some((D, 3)));
        assert_eq!(decide(&t, "2001:db8:0:2::"), Some((D, 3)));
        assert_eq!(decide(&t, "2001:db8:0:3:7fff::"), Some((D, 3)));
        assert_eq!(decide(&t, "2001:db8:0:3:7fff::1"), Some((P, 1)));
        assert_eq!(decide(&t, "2001:db8:0:4::"), Some((P, 1)));
    }
}
