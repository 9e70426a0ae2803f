//! Hit ratio of the core cache's eviction (segments in FIFO order, a second
//! round for entries read since written) beside lru (LRU), quick_cache
//! (S3-FIFO-like) and moka (TinyLFU), on the same traces: a miss inserts
//! the key. Caches hold 1 % and 10 % of the 1M keys; the core cache is
//! sized in bytes for that many entries (12-byte keys, 32-byte values), the
//! others by count. Traces, 4M accesses each:
//!
//! - Zipf 1.0, and Zipf 0.8 (mild skew);
//! - Zipf 1.0 with every other access a key never seen before (a scan);
//! - Zipf 1.2 with half the accesses one-hit wonders;
//! - Zipf 1.0 mixed half and half with a loop over twice the cache's size,
//!   into an empty cache and into one filled first with other keys, each
//!   read once (a loop that meets a cache already serving);
//! - Zipf 1.0 whose popular keys change every 500k accesses.
//!
//! Not a timing benchmark: it prints a table (counting the second half of
//! each trace; the first warms the cache).
//!
//! Run: `cargo bench -p groupcache-benches --bench hit_ratio`
//!
//! Name caches to run only those (`-- groupcache moka`). Two more, run only
//! when named, measure what splitting a group's cache into shards costs:
//! `shards-1` and `shards-8` are a node's group in 1 and 8 shards with the
//! same budget (entries charged the node's `ENTRY_OVERHEAD`, so sized for
//! the same count of entries as the others), a miss loaded through the
//! node.

#![allow(missing_docs)]

use std::num::NonZeroUsize;
use std::time::Instant;

use bytes::Bytes;
use groupcache_benches::{keys, zipf};
use groupcache_core::cache::{Cache, ENTRY_OVERHEAD};
use groupcache_core::node::{Config, Get, GroupConfig, Node, Output};

const KEYS: usize = 1_000_000;
const ACCESSES: usize = 4_000_000;
const KEY_LEN: usize = 12;
const VALUE_LEN: usize = 32;

/// A cache as the trace sees it: true on a hit; a miss inserts the key.
trait Subject {
    fn access(&mut self, k: &str, v: &Bytes) -> bool;
}

/// A cache that is looked up, then inserted into on a miss.
trait LookThenInsert {
    fn hit(&mut self, k: &str) -> bool;
    fn put(&mut self, k: &str, v: &Bytes);
}

impl<T: LookThenInsert> Subject for T {
    fn access(&mut self, k: &str, v: &Bytes) -> bool {
        let hit = self.hit(k);
        if !hit {
            self.put(k, v);
        }
        hit
    }
}

/// A node's group, its caches in shards: a get through the node, a miss
/// loaded at once.
struct Sharded(Node, Instant);
impl Sharded {
    /// Reports every load the node asks for with `v`.
    fn load(&mut self, v: &Bytes) {
        while let Some(o) = self.0.poll_output() {
            if let Output::Load { id, .. } = o {
                self.0.handle_load(self.1, id, Ok(v.clone().into()));
            }
        }
    }
}
impl Subject for Sharded {
    fn access(&mut self, k: &str, v: &Bytes) -> bool {
        let Get::Pending(_) = self.0.get(self.1, "g", k) else {
            return true;
        };
        self.load(v);
        false
    }
}

struct Core(Cache, Instant);
impl LookThenInsert for Core {
    fn hit(&mut self, k: &str) -> bool {
        self.0.get(k, self.1).is_some()
    }
    fn put(&mut self, k: &str, v: &Bytes) {
        self.0.insert(k, v, None, self.1);
    }
}

impl LookThenInsert for lru::LruCache<String, Bytes> {
    fn hit(&mut self, k: &str) -> bool {
        self.get(k).is_some()
    }
    fn put(&mut self, k: &str, v: &Bytes) {
        lru::LruCache::put(self, k.to_string(), v.clone());
    }
}

impl LookThenInsert for quick_cache::unsync::Cache<String, Bytes> {
    fn hit(&mut self, k: &str) -> bool {
        self.get(k).is_some()
    }
    fn put(&mut self, k: &str, v: &Bytes) {
        self.insert(k.to_string(), v.clone());
    }
}

impl LookThenInsert for moka::sync::Cache<String, Bytes> {
    fn hit(&mut self, k: &str) -> bool {
        self.get(k).is_some()
    }
    fn put(&mut self, k: &str, v: &Bytes) {
        self.insert(k.to_string(), v.clone());
    }
}

/// Hit ratio over the trace after its first `warm` accesses, counting only
/// the second half of the rest (the first warms the cache).
fn ratio(s: &mut dyn Subject, trace: &[&str], warm: usize, v: &Bytes) -> f64 {
    let from = warm + (trace.len() - warm) / 2;
    let mut hits = 0;
    for (i, k) in trace.iter().enumerate() {
        if s.access(k, v) && i >= from {
            hits += 1;
        }
    }
    hits as f64 / (trace.len() - from) as f64
}

/// A trace: its name, how many leading accesses only fill the cache, and
/// the accesses as indices into the key set.
type Trace = (&'static str, usize, Vec<usize>);

/// The traces for a cache holding `n` entries, as indices into the key
/// set: `0..KEYS` are the popular keys, `KEYS..KEYS + ACCESSES` keys used
/// once (or in the loop), and the `n` after them keys that only fill the
/// cache before a trace starts.
fn traces(n: usize) -> Vec<Trace> {
    let z10 = zipf(KEYS, ACCESSES, 1.0, 11);
    let z08 = zipf(KEYS, ACCESSES, 0.8, 12);
    let z12 = zipf(KEYS, ACCESSES, 1.2, 13);
    // Every other access replaced by `other(i)`.
    let mixed = |base: &[usize], other: &dyn Fn(usize) -> usize| -> Vec<usize> {
        base.iter()
            .enumerate()
            .map(|(i, &k)| if i % 2 == 0 { k } else { other(i) })
            .collect()
    };
    let once = |i: usize| KEYS + i;
    let looped = |i: usize| KEYS + (i / 2) % (2 * n);
    // Each phase of 500k accesses moves popularity to other keys.
    let shifting: Vec<usize> = z10
        .iter()
        .enumerate()
        .map(|(i, &k)| (k + (i / 500_000) * 100_003) % KEYS)
        .collect();
    let looping = mixed(&z10, &looped);
    // The cache filled first with `n` other keys, each read once after its
    // insert, so that the loop starts against a cache already full of
    // keys worth keeping: what a loop meets in a cache that has been
    // serving, rather than one it fills while empty.
    let filled: Vec<usize> = (KEYS + ACCESSES..KEYS + ACCESSES + n)
        .flat_map(|k| [k, k])
        .chain(looping.iter().copied())
        .collect();
    vec![
        ("Zipf 1.0", 0, z10.clone()),
        ("Zipf 0.8", 0, z08),
        ("Zipf 1.0 + scan", 0, mixed(&z10, &once)),
        ("Zipf 1.2, half one-hit wonders", 0, mixed(&z12, &once)),
        ("Zipf 1.0 + loop over 2x the cache", 0, looping),
        (
            "Zipf 1.0 + loop, the cache full of other keys first",
            2 * n,
            filled,
        ),
        ("Zipf 1.0, popularity shifting every 500k", 0, shifting),
    ]
}

/// The caches named on the command line (`cargo bench --bench hit_ratio --
/// groupcache` runs the core cache alone), or all of them.
fn chosen() -> Vec<&'static str> {
    let all = ["groupcache", "lru", "quick_cache", "moka"];
    let named: Vec<&str> = (all.into_iter())
        .chain(["shards-1", "shards-8"])
        .filter(|c| std::env::args().any(|a| a == *c))
        .collect();
    if named.is_empty() {
        all.to_vec()
    } else {
        named
    }
}

fn main() {
    #[allow(clippy::disallowed_methods)]
    let now = Instant::now();
    let chosen = chosen();
    // Filler keys for the largest cache, 10 % of the keys.
    let all = keys(KEYS + ACCESSES + KEYS / 10);
    let v = Bytes::from(vec![b'v'; VALUE_LEN]);
    println!("| trace | cache holds | {} |", chosen.join(" | "));
    println!("|---|---:|{}", "---:|".repeat(chosen.len()));
    for share in [100, 10] {
        let n = KEYS / share;
        for (name, warm, trace) in traces(n) {
            let trace: Vec<&str> = trace.iter().map(|&i| all[i].as_str()).collect();
            let trace = &trace;
            let cap = NonZeroUsize::new(n).expect("nonzero");
            let row: Vec<f64> = chosen
                .iter()
                .map(|&c| {
                    let mut subject: Box<dyn Subject> = match c {
                        // Seeded, so which ghosts collide, and so every
                        // figure, is the same in every run.
                        "groupcache" => {
                            let c = Cache::new(n * (KEY_LEN + VALUE_LEN)).with_hash_seed(1);
                            Box::new(Core(c, now))
                        }
                        "shards-1" | "shards-8" => {
                            let mut cfg = Config::new("self");
                            cfg.cache_shards = if c == "shards-1" { 1 } else { 8 };
                            cfg.min_shard_bytes = 1;
                            let mut node = Node::new(cfg);
                            let mut g =
                                GroupConfig::new("g", n * (KEY_LEN + VALUE_LEN + ENTRY_OVERHEAD));
                            g.hot_bytes = 0;
                            node.add_group(g).expect("one group");
                            Box::new(Sharded(node, now))
                        }
                        "lru" => Box::new(lru::LruCache::<String, Bytes>::new(cap)),
                        "quick_cache" => {
                            Box::new(quick_cache::unsync::Cache::<String, Bytes>::new(n))
                        }
                        _ => Box::new(moka::sync::Cache::<String, Bytes>::new(n as u64)),
                    };
                    ratio(subject.as_mut(), trace, warm, &v)
                })
                .collect();
            let cells: Vec<String> = row.iter().map(|r| format!("{:.1} %", r * 100.0)).collect();
            println!(
                "| {name} | {} % of keys | {} |",
                100 / share,
                cells.join(" | ")
            );
        }
    }
}
