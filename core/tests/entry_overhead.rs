//! `ENTRY_OVERHEAD`, what a node's caches charge per entry beyond its key and
//! value, against what a filled cache really allocates: allocations counted
//! while entries are inserted the way a node inserts them (a fresh value
//! from the loader, with an expiry) and handed out once (a get), into a
//! cache just full and into one that has evicted as many (whose ghost set
//! is then full too).

use std::time::Duration;

use bytes::Bytes;
use groupcache_core::cache::{Cache, ENTRY_OVERHEAD};
use groupcache_core::testing::epoch;

/// What the charge may exceed this test's count by: the index is half full
/// here, and the charge assumes its lowest load (7/16), 5 bytes more; the
/// allocator's headers are per segment, a fraction of a byte per entry.
const ALLOCATOR_PER_ENTRY: usize = 8;

/// Bytes allocated per entry held beyond key and value, for a cache with
/// room for `n` entries into which `inserted` were put: past `n`, it
/// evicts, and its ghost set fills.
fn allocated_per_entry(n: usize, inserted: usize, value_len: usize) -> f64 {
    let keys: Vec<String> = (0..inserted).map(|i| format!("key-{i:08}")).collect();
    let now = epoch();
    let budget = n.saturating_mul(12 + value_len + ENTRY_OVERHEAD);
    let mut cache = Cache::with_entry_overhead(budget, ENTRY_OVERHEAD);
    let mut handed = Vec::with_capacity(inserted);
    let counted = allocation_counter::measure(|| {
        for k in &keys {
            let v = Bytes::from(vec![7u8; value_len]);
            cache.insert(k, &v, Some(now + Duration::from_secs(3600)), now);
            handed.push(cache.get(k, now).expect("just inserted").value);
        }
        handed.clear();
    });
    assert!(cache.len() <= n);
    let key_and_value = (12 + value_len) * cache.len();
    (counted.bytes_current as f64 - key_and_value as f64) / cache.len() as f64
}

#[test]
fn entry_overhead_covers_what_a_filled_cache_allocates() {
    // A power of two of entries: the index is exactly half full. Enough of
    // them that the open segment (whose items read once are copied out
    // until it closes) is a small share.
    let n = 1 << 17;
    let cases = [(n, 10), (n, 100), (n, 1000), (2 * n, 10), (2 * n, 100)];
    let measured: Vec<(bool, usize, f64)> = cases
        .iter()
        .map(|&(inserted, value_len)| {
            let per_entry = allocated_per_entry(n, inserted, value_len);
            eprintln!(
                "room for {n}, {inserted} x {value_len} B inserted: {per_entry:.1} \
                 allocated per entry, {ENTRY_OVERHEAD} charged"
            );
            (inserted > n, value_len, per_entry)
        })
        .collect();
    for (evicted, value_len, per_entry) in measured {
        assert!(
            per_entry <= ENTRY_OVERHEAD as f64,
            "{value_len}-byte values: {per_entry:.1} bytes allocated per entry, \
             more than the {ENTRY_OVERHEAD} charged"
        );
        // The charge includes the ghost set's share, which a cache spends
        // once it evicts: before that, it is charged and not yet spent.
        assert!(
            !evicted || ENTRY_OVERHEAD as f64 <= per_entry + ALLOCATOR_PER_ENTRY as f64,
            "{value_len}-byte values: {per_entry:.1} bytes allocated per entry: \
             {ENTRY_OVERHEAD} charged is more than the allocator adds"
        );
    }
}
