//! A cache bounded by bytes, with an optional expiry per entry: keys and
//! values packed into segments, evicted a segment at a time, with S3-FIFO's
//! admission: new keys are judged in a small queue before they may push
//! anything out of the main one.
//!
//! **Layout.** Items (key and value after a 16-byte header: their lengths
//! and the expiry) are appended to an open segment; a full one is closed
//! into one shared buffer and a new one opened. The index (a
//! `hashbrown::HashTable`) holds 8 bytes per entry: segment and offset. A
//! hit hands out a slice of a closed segment's buffer, without allocating;
//! an item of the open segment is copied out once, on its first hit, and
//! shared from that copy until the segment closes. There is no list per entry and no allocation per value,
//! which is where an LRU spends most of its memory (see BENCHMARKS.md).
//!
//! **Eviction: S3-FIFO at segment grain.** Items live in two queues of
//! segments, each with its own open segment. A new key is written to the
//! small queue, which holds a twentieth of the budget
//! ([`SMALL_SHARE_PERCENT`]). When the small queue's oldest segment goes,
//! its items read while there move to the main queue, and the others are
//! evicted, leaving a fingerprint of their hash in a ghost set as large as
//! the cache's entry count, where some keys' ghosts outlive others' (so
//! that part of a loop larger than the cache is kept). A key inserted
//! while it is a ghost goes straight to the main queue: it came back
//! before the cache turned over, so the small queue was too short to see
//! its reuse. When the main
//! queue's oldest segment goes, each of its items read since it was
//! written or moved goes to the back again, spending one of up to three
//! reads counted (a CLOCK at segment grain, as in segcache), and the others
//! are evicted. The small queue is evicted first while it holds more than
//! its share. Most keys are read once, or not before the cache turns over:
//! they pass through the small queue and never push a frequently read key
//! out of the main one, which is what keeps a scan from flushing the cache
//! (BENCHMARKS.md has the hit ratios, and why the parameters are these).
//!
//! **Updates and dead items.** An update counts as a read, and stays in its
//! queue. It is written in place when the value's length is unchanged and
//! no hit handed out of its segment is still alive; otherwise it is written
//! anew and leaves a dead item, still charged, until its segment goes. A
//! segment whose items are all dead is freed at once; a main segment at
//! least half dead when it comes round is compacted (its live items moved
//! to the back, read counts kept) rather than evicted.
//!
//! **Bounded work.** Moving items costs copies, so one insert moves at
//! most [`MOVE_BUDGET_SEGMENTS`] segments' worth (of the default size, a
//! 64th of the budget); past that, eviction evicts (a read item then loses
//! its next round). Every move spends a read or promotes a key once, or
//! frees at least as many dead items as it copies, so moves are paid for
//! by reads, inserts and updates.
//!
//! **Accounting.** An item costs `key.len() + value.len()` bytes plus a
//! fixed per-entry overhead: 0 for [`Cache::new`], and for a node's caches
//! [`ENTRY_OVERHEAD`], the memory the cache itself spends per entry, so that
//! a byte budget bounds what the process really holds. [`Cache::bytes`] is
//! the sum over the items held, live or dead, and never exceeds
//! [`Cache::max_bytes`] after an operation returns. Not counted: the open
//! segments' unwritten room (at most a 64th of the budget each) and copies
//! handed out of them.
//!
//! **Expiry.** An expired entry is never returned: it is checked on access.
//! A closed segment whose entries have all expired is freed by
//! [`Cache::sweep`], a few on each insert, earliest first; expired entries
//! of other segments go when their segment is evicted.

mod entry;
mod evict;
mod ghost;
mod item;
mod sizing;
mod store;
mod validate;

use std::cmp::Reverse;
use std::hash::BuildHasher;
use std::time::{Duration, Instant};

use bytes::Bytes;
use foldhash::fast::SeedableRandomState;
use foldhash::SharedSeed;
use hashbrown::HashTable;

use entry::{Entry, MAIN};
use ghost::Ghost;
use store::Store;

use sizing::{move_budget, segment_size};
pub use sizing::{ENTRY_OVERHEAD, MOVE_BUDGET_SEGMENTS, SMALL_SHARE_PERCENT};

/// Expired segments freed on each insert, so memory held by stale values is
/// reclaimed as the cache is written even if nobody calls [`Cache::sweep`].
const SWEEP_ON_INSERT: usize = 4;
/// The small queue's index in [`Cache::stores`].
const SMALL_Q: usize = 0;
/// The main queue's index in [`Cache::stores`].
const MAIN_Q: usize = 1;

/// Counters of one cache.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Bytes held (every item's charge, dead items not yet reclaimed
    /// included).
    pub bytes: u64,
    /// Entries held.
    pub items: u64,
    /// Lookups.
    pub gets: u64,
    /// Lookups that found a fresh entry.
    pub hits: u64,
    /// Entries removed to stay within the byte budget.
    pub evictions: u64,
    /// Entries removed because they expired.
    pub expirations: u64,
}

/// Adds another cache's counters: a sharded cache's are the sum of its
/// shards'.
impl std::ops::AddAssign for CacheStats {
    fn add_assign(&mut self, o: Self) {
        self.bytes += o.bytes;
        self.items += o.items;
        self.gets += o.gets;
        self.hits += o.hits;
        self.evictions += o.evictions;
        self.expirations += o.expirations;
    }
}

/// A cache hit: the value (a cheap clone) and when it expires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hit {
    /// The cached value.
    pub value: Bytes,
    /// When it stops being served, if ever.
    pub expires: Option<Instant>,
}

/// Byte-bounded cache with per-entry expiry.
///
/// ```
/// use std::time::{Duration, Instant};
/// use groupcache_core::cache::Cache;
///
/// # #[allow(clippy::disallowed_methods)]
/// let t0 = Instant::now();
/// let mut c = Cache::new(64);
/// c.insert("k", b"v", Some(t0 + Duration::from_secs(1)), t0);
/// assert_eq!(c.get("k", t0).unwrap().value, "v");
/// assert!(c.get("k", t0 + Duration::from_secs(1)).is_none()); // expired
/// ```
// In this order: the counters a hit writes come first, on the same cache
// lines as the lock of a shard that holds this cache first.
#[derive(Debug)]
#[repr(C)]
pub struct Cache {
    stats: CacheStats,
    max_bytes: usize,
    /// Bytes charged per entry beyond its key and value.
    overhead: usize,
    table: HashTable<Entry>,
    /// Seeded at random, so that no client can choose keys that collide.
    hasher: SeedableRandomState,
    /// The small queue's segments, then the main queue's; an entry's
    /// [`MAIN`] flag says which.
    stores: [Store; 2],
    /// Hashes of keys evicted from the small queue unread.
    ghost: Ghost,
    /// The instant ticks count from: the first insert's `now`.
    epoch: Option<Instant>,
    /// The latest `now` given to an insert or a sweep: what eviction counts
    /// as expired against.
    last_now: Option<Instant>,
    /// The entry an insert just wrote: eviction moves it rather than
    /// dropping it, so an insert that returns true leaves its entry held.
    protect: Option<Entry>,
    /// Bytes eviction may still move in the current insert.
    move_budget: usize,
}

/// Ticks of an instant: nanoseconds since the epoch, plus one, so that 0
/// can mean "never". Monotonic in `t`; instants before the epoch (which
/// the driver contract rules out) count as the epoch.
#[inline]
fn tick(epoch: Option<Instant>, t: Instant) -> u64 {
    let Some(epoch) = epoch else {
        return 1;
    };
    let nanos = t.saturating_duration_since(epoch).as_nanos();
    u64::try_from(nanos).unwrap_or(u64::MAX - 1) + 1
}

/// True if an entry expiring at tick `expires` has expired at `now`.
#[inline]
fn expired(epoch: Option<Instant>, expires: u64, now: Instant) -> bool {
    expires != 0 && expires <= tick(epoch, now)
}

impl Cache {
    /// An empty cache holding at most `max_bytes` bytes of keys and values.
    pub fn new(max_bytes: usize) -> Self {
        Self::with_entry_overhead(max_bytes, 0)
    }

    /// An empty cache holding at most `max_bytes` bytes, charging each entry
    /// `overhead` bytes beyond its key and value (see [`ENTRY_OVERHEAD`]).
    ///
    /// ```
    /// use std::time::Instant;
    /// use groupcache_core::cache::Cache;
    ///
    /// # #[allow(clippy::disallowed_methods)]
    /// let now = Instant::now();
    /// let mut c = Cache::with_entry_overhead(100, 40);
    /// c.insert("k", b"v", None, now);
    /// assert_eq!(c.bytes(), 42);
    /// c.insert("l", b"w", None, now);
    /// assert_eq!(c.len(), 2);
    /// c.insert("m", b"x", None, now); // 126 > 100: evicts "k"
    /// assert!(!c.contains("k", now));
    /// ```
    pub fn with_entry_overhead(max_bytes: usize, overhead: usize) -> Self {
        Self::with_segment_size(max_bytes, overhead, segment_size(max_bytes, overhead))
    }

    /// An empty cache as [`Cache::with_entry_overhead`] makes it, with
    /// segments of `segment_size` bytes (at most 512 MiB) instead of a 64th
    /// of the budget (0: every entry gets a segment of its own). For tests,
    /// which need many segments in a small cache, and for tuning.
    ///
    /// ```
    /// use std::time::Instant;
    /// use groupcache_core::cache::Cache;
    ///
    /// # #[allow(clippy::disallowed_methods)]
    /// let now = Instant::now();
    /// let mut c = Cache::with_segment_size(1000, 0, 100);
    /// for k in ["a", "b", "c"] {
    ///     c.insert(k, b"value", None, now);
    /// }
    /// assert_eq!(c.segments(), 1); // three 22-byte items share one segment
    /// ```
    pub fn with_segment_size(max_bytes: usize, overhead: usize, segment_size: usize) -> Self {
        Self {
            max_bytes,
            overhead,
            table: HashTable::new(),
            hasher: SeedableRandomState::random(),
            stores: [Store::new(segment_size, 0), Store::new(segment_size, MAIN)],
            ghost: Ghost::default(),
            epoch: None,
            last_now: None,
            protect: None,
            move_budget: 0,
            stats: CacheStats::default(),
        }
    }

    /// This cache, empty, hashing with a fixed `seed` instead of a random
    /// one: what it keeps and evicts then no longer varies between runs.
    /// For tests and benches that must be reproducible; never for keys a
    /// client chooses, who could then pick keys that collide.
    ///
    /// ```
    /// use groupcache_core::cache::Cache;
    /// let c = Cache::new(1 << 20).with_hash_seed(7);
    /// assert!(c.is_empty());
    /// ```
    pub fn with_hash_seed(mut self, seed: u64) -> Self {
        self.clear();
        self.ghost = Ghost::default();
        self.hasher = SeedableRandomState::with_seed(seed, SharedSeed::global_fixed());
        self
    }

    /// Bytes held now: every item's charge, dead ones not yet reclaimed
    /// included.
    pub fn bytes(&self) -> usize {
        self.stores[SMALL_Q].bytes + self.stores[MAIN_Q].bytes
    }

    /// The byte budget.
    pub fn max_bytes(&self) -> usize {
        self.max_bytes
    }

    /// Entries held now (expired entries not yet swept included).
    pub fn len(&self) -> usize {
        self.table.len()
    }

    /// True when the cache holds nothing.
    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    /// The counters.
    pub fn stats(&self) -> CacheStats {
        CacheStats {
            bytes: self.bytes() as u64,
            items: self.table.len() as u64,
            ..self.stats
        }
    }

    /// Bytes charged per entry beyond its key and value.
    pub fn entry_overhead(&self) -> usize {
        self.overhead
    }

    /// Bytes of an open segment (0: every entry has a segment of its own,
    /// as in caches too small for segments to pay).
    pub fn segment_size(&self) -> usize {
        self.stores[SMALL_Q].seg_size
    }

    /// Segments held, the open ones included.
    pub fn segments(&self) -> usize {
        self.stores.iter().map(Store::len).sum()
    }

    /// Bytes held in the small queue (new keys not yet read again), for
    /// tests and debugging.
    pub fn small_bytes(&self) -> usize {
        self.stores[SMALL_Q].bytes
    }

    /// Keys remembered as evicted unread (the ghost set), for tests and
    /// debugging.
    pub fn ghosts(&self) -> usize {
        self.ghost.len()
    }

    /// The instant a nonzero tick stands for.
    #[inline]
    fn instant(&self, tick: u64) -> Option<Instant> {
        let epoch = self.epoch?;
        (tick != 0).then(|| epoch + Duration::from_nanos(tick - 1))
    }

    #[inline]
    fn hash(&self, key: &[u8]) -> u64 {
        self.hasher.hash_one(key)
    }

    #[inline]
    fn find(&self, key: &str) -> Option<&Entry> {
        let stores = &self.stores;
        self.table.find(self.hash(key.as_bytes()), |e| {
            stores[e.queue()].key(e) == key.as_bytes()
        })
    }

    /// Looks `key` up, marking it read. An expired entry is removed and not
    /// returned.
    #[inline]
    pub fn get(&mut self, key: &str, now: Instant) -> Option<Hit> {
        self.stats.gets += 1;
        let hash = self.hash(key.as_bytes());
        let stores = &self.stores;
        // The key comparison locates the item; the hit reuses that.
        let mut located = None;
        let Ok(mut found) = self.table.find_entry(hash, |e| {
            let Some((data, buf, item)) = stores[e.queue()].locate(e) else {
                return false;
            };
            let matched = item.key(buf) == key.as_bytes();
            if matched {
                located = Some((data, item));
            }
            matched
        }) else {
            return None;
        };
        let (data, item) = located?;
        if expired(self.epoch, item.expires, now) {
            let (e, _) = found.remove();
            self.stores[e.queue()].kill(&e);
            self.stats.expirations += 1;
            return None;
        }
        let e = found.get_mut();
        // Written at most three times per round, so a hot entry's line
        // stays clean.
        e.count_read();
        let e = *e;
        self.stats.hits += 1;
        // The value is made last, in place: moving a `Bytes` through an
        // `Option` costs more than the rest of a hit.
        Some(Hit {
            expires: self.instant(item.expires),
            value: match data {
                Some(d) => d.slice(item.value_range()),
                None => self.stores[e.queue()].value(&e),
            },
        })
    }

    /// True if a fresh entry for `key` is held; changes no flag or counter.
    pub fn contains(&self, key: &str, now: Instant) -> bool {
        self.find(key).is_some_and(|e| {
            let expires = self.stores[e.queue()].expires(e);
            !expired(self.epoch, expires, now)
        })
    }

    /// Inserts or replaces `key` with a copy of `value`, then evicts until
    /// the budget holds. The entry just inserted is never the one evicted.
    ///
    /// Returns false (and drops any older value of `key`) when the entry alone
    /// is larger than the whole budget or already expired.
    pub fn insert(
        &mut self,
        key: &str,
        value: &[u8],
        expires: Option<Instant>,
        now: Instant,
    ) -> bool {
        let charge = key.len() + value.len() + self.overhead;
        let hash = self.hash(key.as_bytes());
        let too_long = u32::try_from(key.len()).is_err() || u32::try_from(value.len()).is_err();
        if charge > self.max_bytes || too_long || expires.is_some_and(|t| t <= now) {
            self.remove_hashed(hash, key);
            return false;
        }
        self.epoch.get_or_insert(now);
        self.last_now = Some(now);
        let exp = expires.map_or(0, |t| tick(self.epoch, t));
        let stores = &mut self.stores;
        let existing = self
            .table
            .find_mut(hash, |e| stores[e.queue()].key(e) == key.as_bytes());
        let written = match existing {
            Some(e) => {
                // An update stays in its queue, and counts as a use.
                let store = &mut stores[e.queue()];
                if !store.overwrite(e, value, charge, exp) {
                    store.kill(e);
                    *e = store.write(key.as_bytes(), value, charge, exp);
                }
                e.count_read();
                *e
            }
            None => {
                let queue = if self.ghost.take(hash) {
                    MAIN_Q
                } else {
                    SMALL_Q
                };
                let e = stores[queue].write(key.as_bytes(), value, charge, exp);
                let (hasher, stores) = (&self.hasher, &self.stores);
                self.table
                    .insert_unique(hash, e, |e| hasher.hash_one(stores[e.queue()].key(e)));
                e
            }
        };
        if self.stores.iter().any(|s| !s.expiry.is_empty()) {
            self.sweep(now, SWEEP_ON_INSERT);
            for s in &mut self.stores {
                s.compact_expiry();
            }
        }
        if self.bytes() > self.max_bytes {
            self.protect = Some(written);
            self.evict_to(self.max_bytes);
            self.protect = None;
        }
        true
    }

    fn remove_hashed(&mut self, hash: u64, key: &str) -> Option<Bytes> {
        let stores = &self.stores;
        let found = self
            .table
            .find_entry(hash, |e| stores[e.queue()].key(e) == key.as_bytes())
            .ok()?;
        let (e, _) = found.remove();
        let store = &mut self.stores[e.queue()];
        let value = store.value_ref(&e);
        store.kill(&e);
        Some(value)
    }

    /// Removes `key`, returning its value if it was held (even if expired).
    pub fn remove(&mut self, key: &str) -> Option<Bytes> {
        self.remove_hashed(self.hash(key.as_bytes()), key)
    }

    /// Removes every entry at once (a purge); the counters stay, and so
    /// does the ghost set: a purge drops values, not what was learnt about
    /// the keys.
    pub fn clear(&mut self) {
        self.table.clear();
        for s in &mut self.stores {
            s.clear();
        }
    }

    /// The value held for `key`, fresh or not, without touching flags or
    /// counters; for tests and debugging.
    pub fn peek(&self, key: &str) -> Option<Bytes> {
        self.find(key).map(|e| self.stores[e.queue()].value_ref(e))
    }

    /// Changes the budget, evicting entries if it shrank.
    pub fn set_max_bytes(&mut self, max_bytes: usize) {
        // The segment size stays: segments already written keep theirs.
        self.max_bytes = max_bytes;
        self.evict_to(max_bytes);
    }

    /// Frees closed segments whose entries have all expired, earliest
    /// first, until at least `limit` entries were removed or none is due;
    /// returns how many entries it removed.
    pub fn sweep(&mut self, now: Instant, limit: usize) -> usize {
        if limit == 0 || self.stores.iter().all(|s| s.expiry.is_empty()) {
            // The common case on every insert without expiry: no clock maths.
            return 0;
        }
        self.last_now = Some(now);
        let now = tick(self.epoch, now);
        let mut removed = 0;
        while removed < limit {
            // The queue whose earliest record is earliest.
            let next = (0..self.stores.len())
                .filter_map(|q| self.stores[q].expiry.peek().map(|&Reverse(r)| (r, q)))
                .min();
            let Some(((t, id), q)) = next else {
                break;
            };
            if t > now {
                break;
            }
            let store = &mut self.stores[q];
            store.expiry.pop();
            // A record is stale once its segment was freed (its id may even
            // have come round again): only a segment still expiring then
            // is freed.
            let open = store.open.as_ref().is_some_and(|o| o.id == id);
            if !open && store.seg(id).is_some_and(|s| s.expires_max == t) {
                removed += self.evict_segment(q, id);
            }
        }
        removed
    }

    /// When the earliest segment still pending expires, if any (possibly
    /// one since freed; sweeping then finds nothing to do).
    pub fn next_expiry(&self) -> Option<Instant> {
        let t = self
            .stores
            .iter()
            .filter_map(|s| s.expiry.peek().map(|&Reverse((t, _))| t))
            .min()?;
        self.instant(t)
    }

    /// Keys held, the small queue's then the main queue's, oldest segment
    /// first: the order eviction considers them in; for tests and
    /// debugging.
    pub fn keys(&self) -> Vec<&str> {
        let mut out = Vec::with_capacity(self.len());
        for store in &self.stores {
            for id in store.ids() {
                let seg = store.seg(id).expect("listed");
                let buf = store.buf(id);
                for item in store.items(id) {
                    if seg.is_live(item.off) {
                        out.extend(std::str::from_utf8(item.key(buf)).ok());
                    }
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests;
