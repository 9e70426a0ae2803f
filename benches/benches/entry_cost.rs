//! Bytes allocated per entry beyond its key and value: the core cache (also
//! past its budget, its ghost set then full) beside lru, quick_cache and
//! moka, filled the same way (12-byte keys, each value
//! a fresh allocation, as a loader or a socket makes it, then handed out
//! once, as a get does). Counted with an allocation counter (requested
//! sizes: the allocator's own header and rounding come on top, the same for
//! every cache). Not a timing benchmark: it prints a table.
//!
//! Run: `cargo bench -p groupcache-benches --bench entry_cost`

#![allow(missing_docs)]

use std::num::NonZeroUsize;
use std::time::Instant;

use bytes::Bytes;
use groupcache_core::cache::{Cache, ENTRY_OVERHEAD};

/// A power of two: every table and slab is exactly full, none has slack.
const N: usize = 1 << 16;
const KEY_LEN: usize = 12;

fn keys() -> Vec<String> {
    let keys: Vec<String> = (0..N).map(|i| format!("key-{i:08}")).collect();
    assert!(keys.iter().all(|k| k.len() == KEY_LEN));
    keys
}

/// Allocated bytes per entry beyond key and value while `fill` runs.
fn per_entry(value_len: usize, fill: impl FnOnce(&[String], &dyn Fn() -> Bytes)) -> f64 {
    let keys = keys();
    let value = move || Bytes::from(vec![7u8; value_len]);
    let counted = allocation_counter::measure(|| fill(&keys, &value));
    (counted.bytes_current as f64 / N as f64) - (KEY_LEN + value_len) as f64
}

/// The core cache with room for `N / 2` entries after all `N` were
/// inserted: past its budget, its ghost set full. Allocated bytes per
/// entry held, beyond key and value.
fn per_entry_evicting(value_len: usize, now: Instant) -> f64 {
    let keys = keys();
    let budget = N / 2 * (KEY_LEN + value_len + ENTRY_OVERHEAD);
    let mut c = Cache::with_entry_overhead(budget, ENTRY_OVERHEAD);
    let counted = allocation_counter::measure(|| {
        for k in &keys {
            c.insert(k, &Bytes::from(vec![7u8; value_len]), None, now);
            drop(c.get(k, now));
        }
    });
    counted.bytes_current as f64 / c.len() as f64 - (KEY_LEN + value_len) as f64
}

fn main() {
    // `cargo bench` passes flags such as `--bench`; nothing to parse.
    #[allow(clippy::disallowed_methods)]
    let now = Instant::now();
    println!("| values | groupcache | groupcache past its budget | lru | quick_cache | moka |");
    println!("|---|---:|---:|---:|---:|---:|");
    for value_len in [10, 100, 1000] {
        let mut held: Vec<Box<dyn std::any::Any>> = Vec::new();
        let ours = per_entry(value_len, |keys, value| {
            let mut c = Cache::new(usize::MAX);
            for k in keys {
                c.insert(k, &value(), None, now);
                drop(c.get(k, now));
            }
            held.push(Box::new(c));
        });
        let lru = per_entry(value_len, |keys, value| {
            let mut c = lru::LruCache::<String, Bytes>::new(NonZeroUsize::new(N).unwrap());
            for k in keys {
                c.put(k.clone(), value());
                drop(c.get(k).cloned());
            }
            held.push(Box::new(c));
        });
        let quick = per_entry(value_len, |keys, value| {
            let c = quick_cache::unsync::Cache::<String, Bytes>::new(N);
            let mut c = c;
            for k in keys {
                c.insert(k.clone(), value());
                drop(c.get(k).cloned());
            }
            held.push(Box::new(c));
        });
        let moka = per_entry(value_len, |keys, value| {
            let c = moka::sync::Cache::<String, Bytes>::new(N as u64);
            for k in keys {
                c.insert(k.clone(), value());
                drop(c.get(k));
            }
            c.run_pending_tasks();
            held.push(Box::new(c));
        });
        let evicting = per_entry_evicting(value_len, now);
        println!(
            "| {value_len} B | {ours:.0} | {evicting:.0} | {lru:.0} | {quick:.0} | {moka:.0} |"
        );
        drop(held);
    }
}
