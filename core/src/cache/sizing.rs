//! The cache's sizes and bounds, and why they are what they are: what an
//! entry costs beyond its bytes, how large a segment is, the small queue's
//! share, and how much one insert may move.

use super::entry::Entry;
use super::item::HEADER;

/// Memory spent per entry beyond its key and value, as the node's caches
/// count it: the item's header in its segment, its index entry (8 bytes
/// and a control byte, at the table's lowest load), its share of a
/// segment's bookkeeping and of the ghost set. An estimate, kept honest by
/// a test that counts the allocations of a filled cache
/// (`core/tests/entry_overhead.rs`).
pub const ENTRY_OVERHEAD: usize = HEADER + INDEX_PER_ENTRY + SEGMENT_SHARE + GHOST_PER_ENTRY;

/// 8 bytes and a control byte per bucket, buckets at most twice the
/// entries divided by the table's 7/8 load factor.
const INDEX_PER_ENTRY: usize = (2 * (std::mem::size_of::<Entry>() + 1) * 8).div_ceil(7);
/// A segment's bookkeeping (its queue slot, the buffer's allocator header
/// and shared-ownership header), spread over its items.
const SEGMENT_SHARE: usize = 2;
/// The ghost set: 4 bytes per slot, at most 1.25 slots per entry.
const GHOST_PER_ENTRY: usize = 5;
/// Largest open segment: eviction walks a segment at once, so this bounds
/// the work one insert can do.
const MAX_SEGMENT: usize = 64 << 10;
/// Below this, segments are not worth their bookkeeping: every item gets a
/// segment of its own.
const MIN_SEGMENT: usize = 256;
/// The small queue's share of the budget, in percent. S3-FIFO proposes
/// 10 %; 5 % measured at least as well on every `hit_ratio` trace but the
/// one whose popularity shifts (BENCHMARKS.md). 3 % gained at most 0.2
/// points more, but is two segments (a 64th of the budget each), too few
/// to judge a key on a fair stay.
pub const SMALL_SHARE_PERCENT: usize = 5;
/// Segments' worth of items one insert may move (promote, reinsert or
/// compact) while it evicts; past that it evicts, so an insert's work
/// stays bounded even when every item it meets was read. On every
/// `hit_ratio` trace, 2 measured within 0.3 points of 8 and of no bound.
/// The segments counted are of the default size for the budget (a 64th),
/// whatever size the cache's own are.
pub const MOVE_BUDGET_SEGMENTS: usize = 2;

/// Bytes of items one insert may move: [`MOVE_BUDGET_SEGMENTS`] 64ths of
/// the budget (at least 64 headers' and at most [`MAX_SEGMENT`]'s worth
/// each). Not the cache's own segment size: a node's caches, which charge
/// each entry several times its header, use segments a quarter as large,
/// and a bound a quarter as large cost them a point on the `hit_ratio`
/// loop (BENCHMARKS.md).
pub(super) fn move_budget(max_bytes: usize) -> usize {
    MOVE_BUDGET_SEGMENTS * (max_bytes / 64).clamp(HEADER * 64, MAX_SEGMENT)
}

/// The open segment's size for a budget: a 64th of it, less when each
/// entry is charged much more than its bytes, so that one segment's worth
/// of entries stays a small share of the budget.
pub(super) fn segment_size(max_bytes: usize, overhead: usize) -> usize {
    let size = (max_bytes / 64 / (1 + overhead.div_ceil(HEADER))).min(MAX_SEGMENT);
    if size < MIN_SEGMENT {
        0
    } else {
        size
    }
}
