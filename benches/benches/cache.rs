//! The core cache beside the crates users would pick, doing the same work:
//! get hits, updates, inserts that evict and inserts of new keys, at 1k /
//! 100k / 1M entries, uniform and Zipf keys. hashbrown is the floor (no recency, no eviction).

#![allow(missing_docs)] // criterion's macros generate undocumented items

use std::hint::black_box;
use std::num::NonZeroUsize;
use std::time::Instant;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use groupcache_benches::{keys, pattern, Dist};
use groupcache_core::cache::Cache;

const KEY_LEN: usize = 12;
const VALUE_LEN: usize = 32;
const PATTERN: usize = 1 << 16;

/// The same operations on every implementation.
trait Subject {
    fn name() -> &'static str;
    fn with_capacity(n: usize) -> Self;
    /// A hit hands out an owned value, as a server sending it must.
    fn get(&mut self, k: &str) -> Option<Bytes>;
    fn put(&mut self, k: &str, v: &Bytes);
}

struct Core(Cache, Instant);
impl Subject for Core {
    fn name() -> &'static str {
        "groupcache"
    }
    fn with_capacity(n: usize) -> Self {
        #[allow(clippy::disallowed_methods)]
        let now = Instant::now();
        Core(Cache::new(n * (KEY_LEN + VALUE_LEN)), now)
    }
    fn get(&mut self, k: &str) -> Option<Bytes> {
        self.0.get(k, self.1).map(|h| h.value)
    }
    fn put(&mut self, k: &str, v: &Bytes) {
        self.0.insert(k, v, None, self.1);
    }
}

struct Lru(lru::LruCache<String, Bytes>);
impl Subject for Lru {
    fn name() -> &'static str {
        "lru"
    }
    fn with_capacity(n: usize) -> Self {
        Lru(lru::LruCache::new(NonZeroUsize::new(n).unwrap()))
    }
    fn get(&mut self, k: &str) -> Option<Bytes> {
        self.0.get(k).cloned()
    }
    fn put(&mut self, k: &str, v: &Bytes) {
        self.0.put(k.to_string(), v.clone());
    }
}

struct Quick(quick_cache::unsync::Cache<String, Bytes>);
impl Subject for Quick {
    fn name() -> &'static str {
        "quick_cache"
    }
    fn with_capacity(n: usize) -> Self {
        Quick(quick_cache::unsync::Cache::new(n))
    }
    fn get(&mut self, k: &str) -> Option<Bytes> {
        self.0.get(k).cloned()
    }
    fn put(&mut self, k: &str, v: &Bytes) {
        self.0.insert(k.to_string(), v.clone());
    }
}

struct Moka(moka::sync::Cache<String, Bytes>);
impl Subject for Moka {
    fn name() -> &'static str {
        "moka"
    }
    fn with_capacity(n: usize) -> Self {
        Moka(moka::sync::Cache::new(n as u64))
    }
    fn get(&mut self, k: &str) -> Option<Bytes> {
        self.0.get(k)
    }
    fn put(&mut self, k: &str, v: &Bytes) {
        self.0.insert(k.to_string(), v.clone());
    }
}

struct Floor(hashbrown::HashMap<String, Bytes>);
impl Subject for Floor {
    fn name() -> &'static str {
        "hashbrown"
    }
    fn with_capacity(n: usize) -> Self {
        Floor(hashbrown::HashMap::with_capacity(n))
    }
    fn get(&mut self, k: &str) -> Option<Bytes> {
        self.0.get(k).cloned()
    }
    fn put(&mut self, k: &str, v: &Bytes) {
        // Overwrite in place: a map has no eviction, only the update path.
        if let Some(slot) = self.0.get_mut(k) {
            *slot = v.clone();
        } else {
            self.0.insert(k.to_string(), v.clone());
        }
    }
}

/// A cache holding `keys`, each with a value of its own, as values loaded
/// one by one are (one shared value would keep every hit on one hot
/// reference count).
fn filled<S: Subject>(keys: &[String], v: &Bytes) -> S {
    let mut s = S::with_capacity(keys.len());
    for k in keys {
        s.put(k, &Bytes::copy_from_slice(v));
    }
    s
}

/// Get hits, then updates, each on a cache just filled with `keys` (as
/// many as it holds): a log-structured cache's updates leave dead items
/// behind and evict, so the gets do not follow them on one cache.
fn hits_and_updates<S: Subject>(c: &mut Criterion, n: usize, keys: &[String], v: &Bytes) {
    for dist in [Dist::Uniform, Dist::Zipf] {
        let idx = pattern(n, PATTERN, dist, 7);
        let label = format!("{n}/{dist:?}");
        let mut s: S = filled(keys, v);
        let mut g = c.benchmark_group("cache_get_hit");
        let mut i = 0;
        g.bench_function(BenchmarkId::new(S::name(), &label), |b| {
            b.iter(|| {
                i = (i + 1) & (PATTERN - 1);
                black_box(s.get(black_box(&keys[idx[i]])).expect("hit"));
            })
        });
        g.finish();
        drop(s);
        let mut s: S = filled(keys, v);
        let mut g = c.benchmark_group("cache_insert_update");
        g.bench_function(BenchmarkId::new(S::name(), &label), |b| {
            b.iter(|| {
                i = (i + 1) & (PATTERN - 1);
                s.put(black_box(&keys[idx[i]]), v);
            })
        });
        g.finish();
    }
}

/// Inserts cycling over `keys`, more than fit, into a cache filled with
/// the first `n`: every insert is of a key the cache does not hold, unless
/// it kept part of the cycle.
///
/// - `cache_insert_evict` cycles over `n` + 65,536 keys: an admitting
///   cache keeps part of such a cycle, and then half its inserts are
///   updates of held keys.
/// - `cache_insert_new` cycles over four times as many keys as fit (at
///   least 2^20): each comes back after the cache and its ghost set have
///   turned over, so every insert is of a key it has forgotten.
fn cycling<S: Subject>(c: &mut Criterion, group: &str, n: usize, keys: &[String], v: &Bytes) {
    let mut s: S = filled(&keys[..n], v);
    let mut g = c.benchmark_group(group);
    let mut i = n;
    g.bench_function(BenchmarkId::new(S::name(), n), |b| {
        b.iter(|| {
            i += 1;
            if i == keys.len() {
                i = 0;
            }
            s.put(black_box(&keys[i]), v);
        })
    });
    g.finish();
}

fn bench(c: &mut Criterion) {
    let v = Bytes::from(vec![b'v'; VALUE_LEN]);
    for n in [1_000, 100_000, 1_000_000] {
        let all = keys(n + PATTERN);
        let live = &all[..n];
        hits_and_updates::<Core>(c, n, live, &v);
        hits_and_updates::<Lru>(c, n, live, &v);
        hits_and_updates::<Quick>(c, n, live, &v);
        hits_and_updates::<Moka>(c, n, live, &v);
        hits_and_updates::<Floor>(c, n, live, &v);
        let many = keys((4 * n).max(1 << 20));
        for (group, keys) in [("cache_insert_evict", &all), ("cache_insert_new", &many)] {
            cycling::<Core>(c, group, n, keys, &v);
            cycling::<Lru>(c, group, n, keys, &v);
            cycling::<Quick>(c, group, n, keys, &v);
            cycling::<Moka>(c, group, n, keys, &v);
        }
    }
}

criterion_group! {
    name = benches;
    config = groupcache_benches::criterion(20);
    targets = bench
}
criterion_main!(benches);
