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
#[path = "table_tests.rs"]
mod tests;
