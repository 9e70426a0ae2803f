//! A cache bounded by bytes, with an optional expiry per entry: keys and
//! values packed into segments, evicted a segment at a time in FIFO order,
//! with a second round for entries read since they were written.
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
//! **Eviction.** When the budget is exceeded, the oldest segment goes. Its
//! live entries that were read since they were written are copied into the
//! open segment, once (FIFO with reinsertion, a CLOCK at segment grain, as
//! in segcache and S3-FIFO); the others are evicted. A remove or overwrite
//! leaves a dead item behind, still charged, until its segment goes; a
//! segment whose items are all dead is freed at once.
//!
//! **Accounting.** An item costs `key.len() + value.len()` bytes plus a
//! fixed per-entry overhead: 0 for [`Cache::new`], and for a node's caches
//! [`ENTRY_OVERHEAD`], the memory the cache itself spends per entry, so that
//! a byte budget bounds what the process really holds. [`Cache::bytes`] is
//! the sum over the items held, live or dead, and never exceeds
//! [`Cache::max_bytes`] after an operation returns. Not counted: the open
//! segment's unwritten room (at most a 64th of the budget) and copies
//! handed out of it.
//!
//! **Expiry.** An expired entry is never returned: it is checked on access.
//! A closed segment whose entries have all expired is freed by
//! [`Cache::sweep`], a few on each insert, earliest first; expired entries
//! of other segments go when their segment is evicted.

mod store;
mod validate;

use std::cmp::Reverse;
use std::hash::BuildHasher;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hashbrown::{DefaultHashBuilder, HashTable};

use store::{Entry, Item, Segment, Store, ACCESSED, HEADER};

/// Memory spent per entry beyond its key and value, as the node's caches
/// count it: the item's header in its segment, its index entry (8 bytes
/// and a control byte, at the table's lowest load) and its share of a
/// segment's bookkeeping. An estimate, kept honest by a test that counts
/// the allocations of a filled cache (`core/tests/entry_overhead.rs`).
pub const ENTRY_OVERHEAD: usize = HEADER + INDEX_PER_ENTRY + SEGMENT_SHARE;

/// 8 bytes and a control byte per bucket, buckets at most twice the
/// entries divided by the table's 7/8 load factor.
const INDEX_PER_ENTRY: usize = (2 * (std::mem::size_of::<Entry>() + 1) * 8).div_ceil(7);
/// A segment's bookkeeping (its queue slot, the buffer's allocator header
/// and shared-ownership header), spread over its items.
const SEGMENT_SHARE: usize = 2;
/// Largest open segment: eviction walks a segment at once, so this bounds
/// the work one insert can do.
const MAX_SEGMENT: usize = 64 << 10;
/// Below this, segments are not worth their bookkeeping: every item gets a
/// segment of its own.
const MIN_SEGMENT: usize = 256;
/// Expired segments freed on each insert, so memory held by stale values is
/// reclaimed as the cache is written even if nobody calls [`Cache::sweep`].
const SWEEP_ON_INSERT: usize = 4;

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
#[derive(Debug)]
pub struct Cache {
    max_bytes: usize,
    /// Bytes charged per entry beyond its key and value.
    overhead: usize,
    table: HashTable<Entry>,
    hasher: DefaultHashBuilder,
    store: Store,
    /// The instant ticks count from: the first insert's `now`.
    epoch: Option<Instant>,
    /// The latest `now` given to an insert or a sweep: what eviction counts
    /// as expired against.
    last_now: Option<Instant>,
    /// The entry an insert just wrote: eviction moves it rather than
    /// dropping it, so an insert that returns true leaves its entry held.
    protect: Option<Entry>,
    stats: CacheStats,
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

/// The open segment's size for a budget: a 64th of it, less when each
/// entry is charged much more than its bytes, so that one segment's worth
/// of entries stays a small share of the budget.
fn segment_size(max_bytes: usize, overhead: usize) -> usize {
    let size = (max_bytes / 64 / (1 + overhead.div_ceil(HEADER))).min(MAX_SEGMENT);
    if size < MIN_SEGMENT {
        0
    } else {
        size
    }
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
    /// segments of `segment_size` bytes (at most 1 GiB) instead of a 64th
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
            hasher: DefaultHashBuilder::default(),
            // Offsets keep their top bit for the read flag.
            store: Store::new(segment_size.min(1 << 30)),
            epoch: None,
            last_now: None,
            protect: None,
            stats: CacheStats::default(),
        }
    }

    /// Bytes held now: every item's charge, dead ones not yet reclaimed
    /// included.
    pub fn bytes(&self) -> usize {
        self.store.bytes
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
            bytes: self.store.bytes as u64,
            items: self.table.len() as u64,
            ..self.stats
        }
    }

    /// Bytes charged per entry beyond its key and value.
    pub fn entry_overhead(&self) -> usize {
        self.overhead
    }

    /// Bytes of the open segment (0: every entry has a segment of its own,
    /// as in caches too small for segments to pay).
    pub fn segment_size(&self) -> usize {
        self.store.seg_size
    }

    /// Segments held, the open one included.
    pub fn segments(&self) -> usize {
        self.store.len()
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
        let store = &self.store;
        self.table.find(self.hash(key.as_bytes()), |e| {
            store.key(e) == key.as_bytes()
        })
    }

    /// Looks `key` up, marking it read. An expired entry is removed and not
    /// returned.
    #[inline]
    pub fn get(&mut self, key: &str, now: Instant) -> Option<Hit> {
        self.stats.gets += 1;
        let hash = self.hash(key.as_bytes());
        let store = &self.store;
        // The key comparison locates the item; the hit reuses that.
        let mut located = None;
        let Ok(mut found) = self.table.find_entry(hash, |e| {
            let Some((data, buf, item)) = store.locate(e) else {
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
            self.store.kill(&e);
            self.stats.expirations += 1;
            return None;
        }
        let e = found.get_mut();
        if e.off & ACCESSED == 0 {
            // Written once per round, so a hot entry's line stays clean.
            e.off |= ACCESSED;
        }
        let e = *e;
        self.stats.hits += 1;
        // The value is made last, in place: moving a `Bytes` through an
        // `Option` costs more than the rest of a hit.
        Some(Hit {
            expires: self.instant(item.expires),
            value: match data {
                Some(d) => d.slice(item.value_range()),
                None => self.store.value(&e),
            },
        })
    }

    /// True if a fresh entry for `key` is held; changes no flag or counter.
    pub fn contains(&self, key: &str, now: Instant) -> bool {
        self.find(key)
            .is_some_and(|e| !expired(self.epoch, self.store.expires(e), now))
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
        let store = &mut self.store;
        let existing = self
            .table
            .find_mut(hash, |e| store.key(e) == key.as_bytes());
        let written = match existing {
            Some(e) => {
                let old = *e;
                store.kill(&old);
                *e = store.write(key.as_bytes(), value, charge, exp);
                *e
            }
            None => {
                let e = store.write(key.as_bytes(), value, charge, exp);
                let hasher = &self.hasher;
                self.table
                    .insert_unique(hash, e, |e| hasher.hash_one(store.key(e)));
                e
            }
        };
        if !self.store.expiry.is_empty() {
            self.sweep(now, SWEEP_ON_INSERT);
            self.store.compact_expiry();
        }
        if self.store.bytes > self.max_bytes {
            self.protect = Some(written);
            self.evict_to(self.max_bytes);
            self.protect = None;
        }
        true
    }

    fn remove_hashed(&mut self, hash: u64, key: &str) -> Option<Bytes> {
        let store = &self.store;
        let found = self
            .table
            .find_entry(hash, |e| store.key(e) == key.as_bytes())
            .ok()?;
        let (e, _) = found.remove();
        let value = self.store.value_ref(&e);
        self.store.kill(&e);
        Some(value)
    }

    /// Removes `key`, returning its value if it was held (even if expired).
    pub fn remove(&mut self, key: &str) -> Option<Bytes> {
        self.remove_hashed(self.hash(key.as_bytes()), key)
    }

    /// Removes every entry at once (a purge); the counters stay.
    pub fn clear(&mut self) {
        self.table.clear();
        self.store.clear();
    }

    /// The value held for `key`, fresh or not, without touching flags or
    /// counters; for tests and debugging.
    pub fn peek(&self, key: &str) -> Option<Bytes> {
        self.find(key).map(|e| self.store.value_ref(e))
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
        if self.store.expiry.is_empty() || limit == 0 {
            // The common case on every insert without expiry: no clock maths.
            return 0;
        }
        self.last_now = Some(now);
        let now = tick(self.epoch, now);
        let mut removed = 0;
        while removed < limit {
            let Some(&Reverse((t, id))) = self.store.expiry.peek() else {
                break;
            };
            if t > now {
                break;
            }
            self.store.expiry.pop();
            // A record is stale once its segment was freed (its id may even
            // have come round again): only a segment still expiring then
            // is freed.
            let open = self.store.open.as_ref().is_some_and(|o| o.id == id);
            if !open && self.store.seg(id).is_some_and(|s| s.expires_max == t) {
                removed += self.evict_segment(id);
            }
        }
        removed
    }

    /// When the earliest segment still pending expires, if any (possibly
    /// one since freed; sweeping then finds nothing to do).
    pub fn next_expiry(&self) -> Option<Instant> {
        let &Reverse((t, _)) = self.store.expiry.peek()?;
        self.instant(t)
    }

    /// Keys held, oldest segment first: the order eviction considers them
    /// in; for tests and debugging.
    pub fn keys(&self) -> Vec<&str> {
        let mut out = Vec::with_capacity(self.len());
        for id in self.store.ids() {
            let seg = self.store.seg(id).expect("listed");
            let buf = self.store.buf(id);
            for item in self.store.items(id) {
                if seg.is_live(item.off) {
                    out.extend(std::str::from_utf8(item.key(buf)).ok());
                }
            }
        }
        out
    }

    /// Evicts oldest segments until at most `max` bytes are held.
    fn evict_to(&mut self, max: usize) {
        while self.store.bytes > max {
            let Some(id) = self.store.front() else {
                break;
            };
            if self.store.open.as_ref().is_some_and(|o| o.id == id) {
                self.store.close_open();
                if self.store.seg(id).is_none() {
                    continue;
                }
            }
            self.evict_segment(id);
        }
    }

    /// Frees closed segment `id`. Each of its live entries is removed if
    /// expired, else moved to the back once if it was read since it was
    /// written and fits the open segment, else evicted. Returns how many
    /// entries were removed.
    fn evict_segment(&mut self, id: u32) -> usize {
        let Some(seg) = self.store.free(id) else {
            return 0;
        };
        let Segment {
            data,
            dedicated,
            mut dead,
            ..
        } = seg;
        dead.sort_unstable();
        let mut dead = dead.into_iter().peekable();
        let clock = self.last_now.map_or(0, |t| tick(self.epoch, t));
        let mut removed = 0;
        let mut off = 0;
        while let Some(item) = Item::at(&data, off) {
            off = item.end();
            if dead.next_if_eq(&(item.off as u32)).is_some() {
                continue;
            }
            let key = item.key(&data);
            let hash = self.hasher.hash_one(key);
            let Ok(mut found) = self
                .table
                .find_entry(hash, |e| e.seg == id && e.offset() == item.off)
            else {
                continue;
            };
            let e = *found.get();
            let protected = self
                .protect
                .is_some_and(|p| p.seg == e.seg && p.offset() == e.offset());
            let read = e.off & ACCESSED != 0 || protected;
            if protected && !dedicated && !self.store.fits_open(item.len()) {
                self.store.close_open();
            }
            if item.expires != 0 && item.expires <= clock {
                found.remove();
                self.stats.expirations += 1;
                removed += 1;
            } else if read && (dedicated || self.store.fits_open(item.len())) {
                let charge = item.klen + item.vlen + self.overhead;
                let moved = if dedicated {
                    self.store.requeue(data.clone(), charge, item.expires)
                } else {
                    let value = &data[item.value_range()];
                    self.store.write(key, value, charge, item.expires)
                };
                *found.get_mut() = moved;
                if protected {
                    self.protect = Some(moved);
                }
            } else {
                found.remove();
                self.stats.evictions += 1;
                removed += 1;
            }
        }
        if !dedicated {
            self.store.recycle(data);
        }
        removed
    }
}

#[cfg(test)]
mod tests;
