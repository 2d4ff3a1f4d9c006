//! `SegIndex`: sorted, disjoint labelled segments and the radix index that finds the one
//! containing a key in a fixed number of steps, without data-dependent branches.
//!
//! [`RangeTable`](super::table::RangeTable) builds one per key width (IPv4 on `u32`, IPv6 on
//! the top 64 bits as `u64`) from the sweep's segments, and every call's verdict is one
//! [`SegIndex::lookup`]. The layout is chosen for lookups of random addresses, where the cost
//! is dependent cache misses and mispredicted branches rather than instructions:
//!
//! * **Segments** are `(start, end, label)` records (12 bytes for `u32` keys, 20 for `u64`),
//!   preceded by a sentinel (start 0, label [`NONE`]) and followed by `WINDOW - 1` copies of
//!   the last one, so a lookup may always read `WINDOW` records from its leaf's position.
//! * **The index** is a radix tree over the key's bits, stored as `u32` slots in one array.
//!   The root has up to `2^16` slots by the top bits; a slot whose key range holds more than
//!   `WINDOW - 1` segment starts becomes a node of `2^b` slots by the next `b` bits, `b`
//!   chosen per node as the fewest that leave every child at most `WINDOW - 1` starts (up to
//!   [`Shape::node_bits`]). A leaf slot holds the position of the first segment starting in
//!   its range.
//! * **A lookup** reads the root slot, then walks exactly `depth` more levels (the deepest
//!   path's length: the same trip count for every key). On a path that ended earlier, a level
//!   re-reads the leaf slot it is on (an L1 hit) instead of branching. At the leaf it counts,
//!   over a fixed window of `WINDOW` records, the starts at or before the key: the last of
//!   them is the segment that may contain the key (the one before the leaf's range, or one
//!   starting in it), and a conditional move on its end gives the label or [`NONE`]. On
//!   random keys, consecutive lookups then overlap their cache misses instead of waiting on
//!   mispredictions.
//! * A leaf that still holds more than `WINDOW - 1` starts at the depth limit
//!   ([`Shape::max_depth`]) is marked and binary-searched: the one data-dependent branch,
//!   taken by few lookups.

use std::fmt;
use std::hint::select_unpredictable;
use std::mem::size_of;

/// The label of "no segment here": the key is in no rule's range.
pub(super) const NONE: u32 = u32::MAX;

/// Records a lookup reads at its leaf (two or three cache lines); a leaf holds at most
/// `WINDOW - 1` starts.
pub(super) const WINDOW: usize = 8;

/// A slot that is an inner node: [`SPLIT`] | bits << [`BITS_SHIFT`] | base slot.
const SPLIT: u32 = 1 << 31;
/// A leaf slot whose segments are binary-searched: [`BIG`] | index into `big`.
const BIG: u32 = 1 << 30;
/// The position (or `big` index) in a leaf slot.
const POS_MASK: u32 = BIG - 1;
/// Where an inner node's child bits sit in its slot.
const BITS_SHIFT: u32 = 26;
/// An inner node's first child slot.
const BASE_MASK: u32 = (1 << BITS_SHIFT) - 1;

/// How wide the index may grow (tests force small and deep shapes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Shape {
    /// Most bits of the root (fewer for small tables: about one slot per segment).
    pub root_bits: u32,
    /// Most bits of an inner node below the root (at least 1).
    pub node_bits: u32,
    /// Most levels below the root; deeper leaves are binary-searched.
    pub max_depth: u32,
}

impl Shape {
    /// IPv4 in the server: a `2^16` root and one level of nodes of up to 1,024 slots below
    /// it. Every lookup walks the deepest path's length, and a level costs every lookup
    /// about as much as a binary-searched leaf costs the few that reach one, so IPv4 gets a
    /// single level (on the GeoLite2 benchmark policy: 62,622 segments, ~1 MiB of index,
    /// 327 binary-searched leaves).
    pub(super) const V4: Shape = Shape {
        root_bits: 16,
        node_bits: 10,
        max_depth: 1,
    };

    /// IPv6 (top 64 bits) in the server: allocations crowd at `/32` to `/48`, so two levels
    /// of up to 1,024 slots.
    pub(super) const V6: Shape = Shape {
        root_bits: 16,
        node_bits: 10,
        max_depth: 2,
    };
}

/// A key the index can cut into bit fields: `u32` (IPv4) or `u64` (top half of IPv6).
pub(super) trait IndexKey: Copy + Ord + Default + fmt::Debug {
    /// Width in bits.
    const BITS: u32;
    /// The `bits` bits of `self` after its first `consumed` (0 when `bits` is 0).
    /// `consumed + bits < BITS`: the index never splits on a key's last bit.
    fn bits_at(self, consumed: u32, bits: u32) -> usize;
}

macro_rules! impl_index_key {
    ($($t:ty),*) => {$(
        impl IndexKey for $t {
            const BITS: u32 = <$t>::BITS;
            #[inline(always)]
            fn bits_at(self, consumed: u32, bits: u32) -> usize {
                // Two shifts right, so that `bits == 0` shifts by `BITS - 1` (giving 0)
                // rather than by `BITS` (undefined). The masks keep release builds from
                // checking what the index's construction already guarantees.
                let field = ((self << (consumed & (Self::BITS - 1))) >> 1)
                    >> ((Self::BITS - 1 - bits) & (Self::BITS - 1));
                field as usize
            }
        }
    )*};
}

impl_index_key!(u32, u64);

/// One segment: `[start, end]` and its label. Packed to 4-byte alignment, so a `u64`-key
/// segment is 20 bytes.
#[repr(C, packed(4))]
#[derive(Clone, Copy, Default)]
pub(super) struct Seg<K> {
    pub(super) start: K,
    pub(super) end: K,
    pub(super) label: u32,
}

impl<K: IndexKey> fmt::Debug for Seg<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (start, end, label) = (self.start, self.end, self.label);
        write!(f, "[{start:?}, {end:?}] -> {label:#x}")
    }
}

/// Sorted, disjoint segments and their radix index.
#[derive(Debug, Clone)]
pub(super) struct SegIndex<K: IndexKey> {
    /// Sentinel, the segments, `WINDOW - 1` copies of the last.
    segs: Vec<Seg<K>>,
    /// All slots: the root's first, then inner nodes.
    slots: Vec<u32>,
    /// Bits of the root.
    root_bits: u32,
    /// Levels a lookup walks below the root.
    depth: u32,
    /// Binary-searched leaves: segment positions `lo..hi` (in `segs`).
    big: Vec<(u32, u32)>,
}

impl<K: IndexKey> Default for SegIndex<K> {
    fn default() -> Self {
        SegIndex::new(Vec::new(), Shape::V4)
    }
}

impl<K: IndexKey> SegIndex<K> {
    /// Indexes `segments`, which must be sorted by start and disjoint, with labels other
    /// than [`NONE`]. At most `2^30 - WINDOW` segments are kept.
    pub(super) fn new(mut segments: Vec<Seg<K>>, shape: Shape) -> Self {
        segments.truncate(POS_MASK as usize - WINDOW);
        let n = segments.len();
        if n == 0 {
            // Nothing to find: no allocation, and every lookup misses the (empty) root.
            return SegIndex {
                segs: Vec::new(),
                slots: Vec::new(),
                root_bits: 0,
                depth: 0,
                big: Vec::new(),
            };
        }
        let sentinel = Seg {
            start: K::default(),
            end: K::default(),
            label: NONE,
        };
        let mut segs = Vec::with_capacity(n + WINDOW);
        segs.push(sentinel);
        segs.extend_from_slice(&segments);
        let last = *segs.last().unwrap_or(&sentinel);
        segs.resize(n + WINDOW, last);

        let root_bits = ceil_log2(n).min(shape.root_bits).min(K::BITS - 1);
        let mut builder = Builder {
            starts: segments.iter().map(|s| s.start).collect(),
            shape,
            slots: vec![0; 1 << root_bits],
            big: Vec::new(),
            depth: 0,
        };
        let mut lo = 0;
        for slot in 0..1usize << root_bits {
            let hi = builder.end_of(lo, n, 0, root_bits, slot);
            builder.slots[slot] = builder.node(lo, hi, root_bits, 0);
            lo = hi;
        }
        builder.slots.shrink_to_fit();
        builder.big.shrink_to_fit();
        SegIndex {
            segs,
            slots: builder.slots,
            root_bits,
            depth: builder.depth,
            big: builder.big,
        }
    }

    /// The label of the segment containing `key`, or [`NONE`].
    #[inline(always)]
    pub(super) fn lookup(&self, key: K) -> u32 {
        let mut at = key.bits_at(0, self.root_bits);
        let mut consumed = self.root_bits;
        let Some(&root) = self.slots.get(at) else {
            return NONE;
        };
        let mut slot = root;
        for _ in 0..self.depth {
            // All ones on an inner node, zero on a leaf (which then re-reads itself).
            let inner = 0u32.wrapping_sub(slot >> 31);
            let bits = (slot >> BITS_SHIFT) & 0x1f & inner;
            let base = ((slot & BASE_MASK & inner) as usize) | (at & !(inner as usize));
            at = base + key.bits_at(consumed, bits);
            consumed += bits;
            slot = match self.slots.get(at) {
                Some(&s) => s,
                None => return NONE,
            };
        }
        if slot & BIG != 0 {
            return self.search_big(slot & POS_MASK, key);
        }
        let pos = (slot & POS_MASK) as usize;
        let Some(window) = self
            .segs
            .get(pos.wrapping_sub(1)..pos.wrapping_add(WINDOW - 1))
        else {
            return NONE;
        };
        let Ok(window) = <&[Seg<K>; WINDOW]>::try_from(window) else {
            return NONE;
        };
        // At least the first record starts at or before the key (see the module docs).
        let count: usize = window.iter().map(|s| usize::from({ s.start } <= key)).sum();
        let Some(seg) = window.get(count.wrapping_sub(1)) else {
            return NONE;
        };
        // Whether the key is past the segment's end is as random as the key: a conditional
        // move, not a branch.
        select_unpredictable({ seg.end } >= key, seg.label, NONE)
    }

    /// The segments, without the sentinel and padding.
    #[cfg(test)]
    pub(super) fn segments(&self) -> &[Seg<K>] {
        let n = self.len();
        self.segs.get(1..=n).unwrap_or(&[])
    }

    /// Number of segments.
    pub(super) fn len(&self) -> usize {
        self.segs.len().saturating_sub(WINDOW)
    }

    /// Bytes of the segment records (by capacity, sentinel and padding included).
    pub(super) fn segment_bytes(&self) -> usize {
        self.segs.capacity() * size_of::<Seg<K>>()
    }

    /// Bytes of the index (slots and binary-searched leaves).
    pub(super) fn index_bytes(&self) -> usize {
        self.slots.capacity() * size_of::<u32>() + self.big.capacity() * size_of::<(u32, u32)>()
    }

    /// Levels every lookup walks below the root.
    pub(super) fn levels(&self) -> u32 {
        self.depth
    }

    /// Leaves with too many starts for the window, binary-searched.
    pub(super) fn searched_leaves(&self) -> usize {
        self.big.len()
    }

    /// Levels a lookup walks below the root, and the number of binary-searched leaves.
    #[cfg(test)]
    pub(super) fn depth(&self) -> (u32, usize) {
        (self.depth, self.big.len())
    }

    /// The root's bits.
    #[cfg(test)]
    pub(super) fn root_bits(&self) -> u32 {
        self.root_bits
    }

    /// The slow path for a leaf with too many starts: a binary search over them.
    #[cold]
    fn search_big(&self, big: u32, key: K) -> u32 {
        let Some(&(lo, hi)) = self.big.get(big as usize) else {
            return NONE;
        };
        let (lo, hi) = (lo as usize, hi as usize);
        let Some(leaf) = self.segs.get(lo..hi) else {
            return NONE;
        };
        // The record before the leaf starts before the key, like the window's first.
        let i = lo - 1 + leaf.partition_point(|s| { s.start } <= key);
        match self.segs.get(i) {
            Some(seg) if { seg.end } >= key => seg.label,
            _ => NONE,
        }
    }
}

/// State while building the slots.
struct Builder<K: IndexKey> {
    /// Segment starts (unpadded: position `i` here is `i + 1` in `segs`).
    starts: Vec<K>,
    shape: Shape,
    slots: Vec<u32>,
    big: Vec<(u32, u32)>,
    depth: u32,
}

impl<K: IndexKey> Builder<K> {
    /// The slot for the starts `lo..hi`, which all share their first `consumed` bits;
    /// `depth` is the level of this slot (0: a root slot).
    fn node(&mut self, lo: usize, hi: usize, consumed: u32, depth: u32) -> u32 {
        let n = hi - lo;
        // Positions in `segs` (after the sentinel) fit: at most 2^30 - WINDOW segments.
        let pos = (lo + 1) as u32;
        if n < WINDOW {
            return pos;
        }
        let bits = self.node_bits(lo, hi, consumed);
        let base = self.slots.len();
        let fits = base + (1 << bits) <= BASE_MASK as usize + 1;
        if bits == 0 || depth >= self.shape.max_depth || !fits {
            self.big.push((pos, (hi + 1) as u32));
            return BIG | (self.big.len() - 1) as u32;
        }
        self.depth = self.depth.max(depth + 1);
        self.slots.resize(base + (1 << bits), 0);
        let mut child_lo = lo;
        for child in 0..1usize << bits {
            let child_hi = self.end_of(child_lo, hi, consumed, bits, child);
            let slot = self.node(child_lo, child_hi, consumed + bits, depth + 1);
            self.slots[base + child] = slot;
            child_lo = child_hi;
        }
        SPLIT | (bits << BITS_SHIFT) | base as u32
    }

    /// Bits for an inner node over the starts `lo..hi` (more than `WINDOW - 1`): the fewest,
    /// from about one slot per start up to the shape's limit, that leave every child a leaf;
    /// the limit if none does (the children then split again).
    fn node_bits(&self, lo: usize, hi: usize, consumed: u32) -> u32 {
        let most = self.shape.node_bits.max(1).min(K::BITS - 1 - consumed);
        let fewest = ceil_log2(hi - lo).min(most);
        (fewest..most)
            .find(|&bits| self.largest_child(lo, hi, consumed, bits) < WINDOW)
            .unwrap_or(most)
    }

    /// The most starts of `lo..hi` that share their `bits` bits after `consumed`.
    fn largest_child(&self, lo: usize, hi: usize, consumed: u32, bits: u32) -> usize {
        let mut largest = 0;
        let mut run = 0;
        let mut last = None;
        for s in &self.starts[lo..hi] {
            let field = s.bits_at(consumed, bits);
            run = if last == Some(field) { run + 1 } else { 1 };
            last = Some(field);
            largest = largest.max(run);
        }
        largest
    }

    /// The end of the starts from `lo` (below `hi`) whose `bits` bits after `consumed` are
    /// at most `value`.
    fn end_of(&self, lo: usize, hi: usize, consumed: u32, bits: u32, value: usize) -> usize {
        lo + self.starts[lo..hi].partition_point(|s| s.bits_at(consumed, bits) <= value)
    }
}

/// The least `b` with `2^b >= n` (0 for `n <= 1`).
fn ceil_log2(n: usize) -> u32 {
    n.next_power_of_two().trailing_zeros()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segs(ranges: &[(u32, u32)]) -> Vec<Seg<u32>> {
        ranges
            .iter()
            .enumerate()
            .map(|(i, &(start, end))| Seg {
                start,
                end,
                label: i as u32,
            })
            .collect()
    }

    fn scan(ranges: &[(u32, u32)], key: u32) -> u32 {
        ranges
            .iter()
            .position(|&(s, e)| s <= key && key <= e)
            .map_or(NONE, |i| i as u32)
    }

    #[test]
    fn bits_at_cuts_fields() {
        assert_eq!(0xabcd_1234u32.bits_at(0, 16), 0xabcd);
        assert_eq!(0xabcd_1234u32.bits_at(16, 8), 0x12);
        assert_eq!(0xabcd_1234u32.bits_at(28, 4), 0x4);
        assert_eq!(0xabcd_1234u32.bits_at(7, 0), 0);
        assert_eq!(0xabcd_1234u32.bits_at(31, 0), 0);
        assert_eq!(u32::MAX.bits_at(0, 31), (u32::MAX >> 1) as usize);
        assert_eq!(u32::MAX.bits_at(30, 1), 1);
        assert_eq!(0x0123_4567_89ab_cdefu64.bits_at(56, 4), 0xe);
        assert_eq!(0x0123_4567_89ab_cdefu64.bits_at(0, 0), 0);
        assert_eq!(u64::MAX.bits_at(63, 0), 0);
        assert_eq!(u64::MAX.bits_at(1, 62), (u64::MAX >> 2) as usize);
    }

    #[test]
    fn empty_index_finds_nothing() {
        let index = SegIndex::<u32>::new(Vec::new(), Shape::V4);
        assert_eq!(index.len(), 0);
        for key in [0, 1, 77, u32::MAX] {
            assert_eq!(index.lookup(key), NONE);
        }
    }

    #[test]
    fn crowded_keys_make_deeper_nodes_and_still_answer() {
        // 600 single-address segments in one /22, every other address: with nodes of at
        // most 16 slots, the root slot of that range must split more than once.
        let ranges: Vec<(u32, u32)> = (0..600u32)
            .map(|i| (0x0a00_0000 + 2 * i, 0x0a00_0000 + 2 * i))
            .chain([(0x0b00_0000, u32::MAX)])
            .collect();
        let shape = Shape {
            root_bits: 16,
            node_bits: 4,
            max_depth: 8,
        };
        let index = SegIndex::new(segs(&ranges), shape);
        assert!(index.depth().0 >= 2, "{:?}", index.depth());
        assert_eq!(index.depth().1, 0, "no binary-searched leaf");
        for key in (0x09ff_fff0..0x0a00_0500).chain([0x0aff_ffff, 0x0b00_0000, u32::MAX]) {
            assert_eq!(index.lookup(key), scan(&ranges, key), "at {key:#x}");
        }
    }

    #[test]
    fn depth_limit_falls_back_to_binary_search() {
        let ranges: Vec<(u32, u32)> = (0..64u32).map(|i| (100 + 3 * i, 101 + 3 * i)).collect();
        let shape = Shape {
            root_bits: 2,
            node_bits: 1,
            max_depth: 3,
        };
        let index = SegIndex::new(segs(&ranges), shape);
        assert_eq!(index.depth().0, 3);
        assert!(index.depth().1 > 0, "some leaves are binary-searched");
        for key in (0..400).chain([u32::MAX - 1, u32::MAX]) {
            assert_eq!(index.lookup(key), scan(&ranges, key), "at {key}");
        }
    }

    #[test]
    fn segment_at_the_top_is_found_at_max() {
        let ranges = [(0, 0), (5, 9), (u32::MAX - 3, u32::MAX)];
        let index = SegIndex::new(segs(&ranges), Shape::V4);
        for key in [0, 1, 4, 5, 9, 10, u32::MAX - 4, u32::MAX - 3, u32::MAX] {
            assert_eq!(index.lookup(key), scan(&ranges, key), "at {key}");
        }
        assert_eq!(index.segments().len(), 3);
        assert_eq!(index.segment_bytes(), (3 + WINDOW) * 12);
    }
}
