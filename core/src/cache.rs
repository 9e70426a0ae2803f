//! An LRU cache bounded by bytes, with an optional expiry per entry.
//!
//! Entries live in a slab with an intrusive doubly linked recency list (slot
//! indices, not pointers), indexed by a `hashbrown::HashTable` so keys are
//! looked up by `&str` without allocating. Every operation is O(1) apart from
//! eviction, which removes as many entries as the budget requires.
//!
//! **Accounting.** An entry costs `key.len() + value.len()` bytes, like the
//! original groupcache, plus a fixed per-entry overhead: 0 for
//! [`Cache::new`], and for a node's caches [`ENTRY_OVERHEAD`], the memory
//! the cache itself spends per entry, so that a byte budget bounds what the
//! process really holds. [`Cache::bytes`] is exactly the sum over live
//! entries and never exceeds [`Cache::max_bytes`] after an operation returns.
//!
//! **Expiry.** An expired entry is never returned: it is checked on access.
//! Expired entries are also swept from a min-heap of deadlines, a few per
//! insert and on [`Cache::sweep`], so they do not pin memory. The sweep takes
//! the earliest deadline first, ties in the order the deadlines were set.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::hash::BuildHasher;
use std::time::Instant;

use std::time::Duration;

use bytes::Bytes;
use compact_str::CompactString;
use hashbrown::{DefaultHashBuilder, HashTable};

const NIL: u32 = u32::MAX;

/// Memory spent per entry beyond its key and value bytes, as the node's
/// caches count it: the entry's slot, its index entry (a `u32` and a control
/// byte, at the table's lowest load), an expiry record, the allocator's
/// header and rounding on the value's heap block, and the shared-ownership
/// header a value gets once it is handed out. An estimate,
/// kept honest by a test that counts the allocations of a filled cache
/// (`core/tests/entry_overhead.rs`).
pub const ENTRY_OVERHEAD: usize = std::mem::size_of::<Slot>()
    + INDEX_PER_ENTRY
    + std::mem::size_of::<Reverse<(u64, u64, u32)>>()
    + MALLOC_PER_BLOCK
    + SHARED_HEADER;

/// A `u32` index and a control byte per bucket, buckets at most twice the
/// entries divided by the table's 7/8 load factor.
const INDEX_PER_ENTRY: usize = (2 * 5 * 8_usize).div_ceil(7);
/// glibc malloc: an 8-byte header and rounding to 16 bytes, on the value's
/// block. Keys of up to 24 bytes live in the slot; a longer key has a block
/// of its own, whose header this estimate leaves out.
const MALLOC_PER_BLOCK: usize = 16;
/// The block `bytes` allocates to share a value (pointer, capacity, count)
/// with its malloc header and rounding.
const SHARED_HEADER: usize = 32;
/// Expired entries removed on each insert, so memory held by stale values is
/// reclaimed as the cache is written even if nobody calls [`Cache::sweep`].
const SWEEP_ON_INSERT: usize = 4;

/// Counters of one cache.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Bytes held (key + value of every entry).
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

/// One entry. Kept small: the key inline when it is short, the expiry as a
/// tick, and no separate "live" flag.
#[derive(Debug)]
struct Slot {
    key: CompactString,
    value: Bytes,
    /// When it expires, as a [`Cache::tick`]; 0: never.
    expires: u64,
    prev: u32,
    next: u32,
    /// Sequence number of this entry's current expiry record (0: none), so
    /// stale records in the expiry heap are recognised and skipped; [`FREE`]
    /// marks a slot with no entry.
    seq: u64,
}

/// [`Slot::seq`] of a free slot: no expiry record ever has it.
const FREE: u64 = u64::MAX;

/// LRU-by-bytes cache with per-entry expiry.
///
/// ```
/// use std::time::{Duration, Instant};
/// use bytes::Bytes;
/// use groupcache_core::cache::Cache;
///
/// # #[allow(clippy::disallowed_methods)]
/// let t0 = Instant::now();
/// let mut c = Cache::new(64);
/// c.insert("k", Bytes::from_static(b"v"), Some(t0 + Duration::from_secs(1)), t0);
/// assert_eq!(c.get("k", t0).unwrap().value, "v");
/// assert!(c.get("k", t0 + Duration::from_secs(1)).is_none()); // expired
/// ```
#[derive(Debug)]
pub struct Cache {
    max_bytes: usize,
    bytes: usize,
    /// Bytes charged per entry beyond its key and value.
    overhead: usize,
    table: HashTable<u32>,
    hasher: DefaultHashBuilder,
    slots: Vec<Slot>,
    free: Vec<u32>,
    /// Most recently used.
    head: u32,
    /// Least recently used: the next to evict.
    tail: u32,
    /// Deadlines as (tick, sequence, slot); ties break by sequence, so the
    /// sweep order depends only on the history of operations.
    expiry: BinaryHeap<Reverse<(u64, u64, u32)>>,
    /// The instant ticks count from: the first insert's `now`.
    epoch: Option<Instant>,
    next_seq: u64,
    stats: CacheStats,
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
    /// use bytes::Bytes;
    /// use groupcache_core::cache::Cache;
    ///
    /// # #[allow(clippy::disallowed_methods)]
    /// let now = Instant::now();
    /// let mut c = Cache::with_entry_overhead(100, 40);
    /// c.insert("k", Bytes::from_static(b"v"), None, now);
    /// assert_eq!(c.bytes(), 42);
    /// c.insert("l", Bytes::from_static(b"w"), None, now);
    /// assert_eq!(c.len(), 2);
    /// c.insert("m", Bytes::from_static(b"x"), None, now); // 126 > 100: evicts "k"
    /// assert!(!c.contains("k", now));
    /// ```
    pub fn with_entry_overhead(max_bytes: usize, overhead: usize) -> Self {
        Self {
            max_bytes,
            bytes: 0,
            overhead,
            table: HashTable::new(),
            hasher: DefaultHashBuilder::default(),
            slots: Vec::new(),
            free: Vec::new(),
            head: NIL,
            tail: NIL,
            expiry: BinaryHeap::new(),
            epoch: None,
            next_seq: 0,
            stats: CacheStats::default(),
        }
    }

    /// Bytes held now.
    pub fn bytes(&self) -> usize {
        self.bytes
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
            bytes: self.bytes as u64,
            items: self.table.len() as u64,
            ..self.stats
        }
    }

    /// An instant as entries keep it: nanoseconds since the epoch, plus one,
    /// so that 0 can mean "never". Monotonic in `t`; instants before the
    /// epoch (which the driver contract rules out) count as the epoch.
    #[inline]
    fn tick(&self, t: Instant) -> u64 {
        let Some(epoch) = self.epoch else {
            return 1;
        };
        let nanos = t.saturating_duration_since(epoch).as_nanos();
        u64::try_from(nanos).unwrap_or(u64::MAX - 1) + 1
    }

    /// The instant a nonzero tick stands for.
    fn instant(&self, tick: u64) -> Option<Instant> {
        let epoch = self.epoch?;
        (tick != 0).then(|| epoch + Duration::from_nanos(tick - 1))
    }

    #[inline]
    fn charge(&self, key: &str, value: &[u8]) -> usize {
        key.len() + value.len() + self.overhead
    }

    /// Bytes charged per entry beyond its key and value.
    pub fn entry_overhead(&self) -> usize {
        self.overhead
    }

    #[inline]
    fn find(&self, key: &str) -> Option<u32> {
        let hash = self.hasher.hash_one(key);
        self.table
            .find(hash, |&i| &*self.slots[i as usize].key == key)
            .copied()
    }

    /// Looks `key` up, marking it most recently used. An expired entry is
    /// removed and not returned.
    #[inline]
    pub fn get(&mut self, key: &str, now: Instant) -> Option<Hit> {
        self.stats.gets += 1;
        let idx = self.find(key)?;
        let expires = self.slots[idx as usize].expires;
        if expires != 0 && expires <= self.tick(now) {
            self.stats.expirations += 1;
            self.remove_slot(idx);
            return None;
        }
        self.stats.hits += 1;
        self.touch(idx);
        Some(Hit {
            value: self.slots[idx as usize].value.clone(),
            expires: self.instant(expires),
        })
    }

    /// True if a fresh entry for `key` is held; changes no recency or counter.
    pub fn contains(&self, key: &str, now: Instant) -> bool {
        self.find(key).is_some_and(|i| {
            let expires = self.slots[i as usize].expires;
            expires == 0 || expires > self.tick(now)
        })
    }

    /// Inserts or replaces `key`, marking it most recently used, then evicts
    /// least recently used entries until the budget holds.
    ///
    /// Returns false (and drops any older value of `key`) when the entry alone
    /// is larger than the whole budget or already expired.
    pub fn insert(
        &mut self,
        key: &str,
        value: Bytes,
        expires: Option<Instant>,
        now: Instant,
    ) -> bool {
        let charge = self.charge(key, &value);
        let existing = self.find(key);
        if charge > self.max_bytes || expires.is_some_and(|t| t <= now) {
            if let Some(idx) = existing {
                self.remove_slot(idx);
            }
            return false;
        }
        self.epoch.get_or_insert(now);
        let expires = expires.map_or(0, |t| self.tick(t));
        let (idx, new_deadline) = match existing {
            Some(idx) => {
                let old = self.charge(key, &self.slots[idx as usize].value);
                let slot = &mut self.slots[idx as usize];
                self.bytes = self.bytes - old + charge;
                slot.value = value;
                let changed = slot.expires != expires;
                slot.expires = expires;
                self.touch(idx);
                (idx, changed)
            }
            None => {
                let idx = self.alloc(key, value, expires);
                let hash = self.hasher.hash_one(key);
                let (slots, hasher) = (&self.slots, &self.hasher);
                self.table
                    .insert_unique(hash, idx, |&i| hasher.hash_one(&*slots[i as usize].key));
                self.push_front(idx);
                self.bytes += charge;
                (idx, true)
            }
        };
        if new_deadline {
            self.next_seq += 1;
            let seq = if expires == 0 { 0 } else { self.next_seq };
            self.slots[idx as usize].seq = seq;
            if expires != 0 {
                self.expiry.push(Reverse((expires, seq, idx)));
            }
        }
        self.sweep(now, SWEEP_ON_INSERT);
        self.evict_to(self.max_bytes);
        self.compact_expiry();
        true
    }

    /// Removes `key`, returning its value if it was held (even if expired).
    pub fn remove(&mut self, key: &str) -> Option<Bytes> {
        let idx = self.find(key)?;
        Some(self.remove_slot(idx))
    }

    /// Removes every entry at once (a purge); the counters stay.
    pub fn clear(&mut self) {
        self.table.clear();
        self.slots.clear();
        self.free.clear();
        self.head = NIL;
        self.tail = NIL;
        self.expiry.clear();
        self.bytes = 0;
    }

    /// The value held for `key`, fresh or not, without touching recency or
    /// counters; for tests and debugging.
    pub fn peek(&self, key: &str) -> Option<&Bytes> {
        self.find(key).map(|i| &self.slots[i as usize].value)
    }

    /// Changes the budget, evicting entries if it shrank.
    pub fn set_max_bytes(&mut self, max_bytes: usize) {
        self.max_bytes = max_bytes;
        self.evict_to(max_bytes);
    }

    /// Removes up to `limit` expired entries; returns how many it removed.
    pub fn sweep(&mut self, now: Instant, limit: usize) -> usize {
        if self.expiry.is_empty() || limit == 0 {
            // The common case on every insert without expiry: no clock maths.
            return 0;
        }
        let now = self.tick(now);
        let mut removed = 0;
        while removed < limit {
            let Some(&Reverse((t, seq, idx))) = self.expiry.peek() else {
                break;
            };
            if t > now {
                break;
            }
            self.expiry.pop();
            // A heap record's sequence is never 0 nor FREE.
            if self.slots[idx as usize].seq == seq {
                self.stats.expirations += 1;
                self.remove_slot(idx);
                removed += 1;
            }
        }
        removed
    }

    /// The earliest expiry still pending, if any (possibly of an entry that
    /// was since replaced; sweeping then finds nothing to do).
    pub fn next_expiry(&self) -> Option<Instant> {
        let &Reverse((t, _, _)) = self.expiry.peek()?;
        self.instant(t)
    }

    /// Keys from most to least recently used.
    pub fn keys_by_recency(&self) -> Vec<&str> {
        let mut out = Vec::with_capacity(self.len());
        let mut i = self.head;
        while i != NIL {
            out.push(&*self.slots[i as usize].key);
            i = self.slots[i as usize].next;
        }
        out
    }

    /// Checks every internal invariant; for tests and fuzzers.
    pub fn validate(&self) -> Result<(), String> {
        let mut count = 0usize;
        let mut bytes = 0usize;
        let mut prev = NIL;
        let mut i = self.head;
        while i != NIL {
            let s = self.slots.get(i as usize).ok_or("link out of range")?;
            if s.seq == FREE {
                return Err(format!("free slot {i} linked"));
            }
            if s.prev != prev {
                return Err(format!("slot {i} prev {} != {prev}", s.prev));
            }
            if self.find(&s.key) != Some(i) {
                return Err(format!("key {:?} not indexed at {i}", s.key));
            }
            count += 1;
            if count > self.slots.len() {
                return Err("cycle in recency list".into());
            }
            bytes += self.charge(&s.key, &s.value);
            prev = i;
            i = s.next;
        }
        if prev != self.tail {
            return Err(format!("tail {} != last {prev}", self.tail));
        }
        if count != self.table.len() {
            return Err(format!("list {count} != index {}", self.table.len()));
        }
        let live = self.slots.iter().filter(|s| s.seq != FREE).count();
        if live != count || self.slots.len() != live + self.free.len() {
            return Err(format!(
                "slots {} live {live} free {} listed {count}",
                self.slots.len(),
                self.free.len()
            ));
        }
        if bytes != self.bytes {
            return Err(format!("bytes {} != sum {bytes}", self.bytes));
        }
        if self.bytes > self.max_bytes {
            return Err(format!(
                "bytes {} over budget {}",
                self.bytes, self.max_bytes
            ));
        }
        let records: std::collections::HashSet<(u64, u64, u32)> =
            self.expiry.iter().map(|r| r.0).collect();
        for (idx, s) in self.slots.iter().enumerate() {
            if s.seq != FREE && s.expires != 0 && !records.contains(&(s.expires, s.seq, idx as u32))
            {
                return Err(format!("key {:?} has no expiry record", s.key));
            }
            if s.seq == FREE && (s.expires != 0 || !s.key.is_empty()) {
                return Err(format!("free slot {idx} holds an entry"));
            }
        }
        Ok(())
    }

    fn alloc(&mut self, key: &str, value: Bytes, expires: u64) -> u32 {
        let slot = Slot {
            key: CompactString::new(key),
            value,
            expires,
            prev: NIL,
            next: NIL,
            seq: 0,
        };
        match self.free.pop() {
            Some(idx) => {
                self.slots[idx as usize] = slot;
                idx
            }
            None => {
                self.slots.push(slot);
                (self.slots.len() - 1) as u32
            }
        }
    }

    fn remove_slot(&mut self, idx: u32) -> Bytes {
        self.unlink(idx);
        let hash = self.hasher.hash_one(&*self.slots[idx as usize].key);
        if let Ok(e) = self.table.find_entry(hash, |&i| i == idx) {
            e.remove();
        }
        let charge = self.charge(
            &self.slots[idx as usize].key,
            &self.slots[idx as usize].value,
        );
        self.bytes -= charge;
        let slot = &mut self.slots[idx as usize];
        slot.seq = FREE;
        slot.key = CompactString::default();
        slot.expires = 0;
        self.free.push(idx);
        std::mem::take(&mut slot.value)
    }

    fn evict_to(&mut self, max: usize) {
        while self.bytes > max && self.tail != NIL {
            self.stats.evictions += 1;
            self.remove_slot(self.tail);
        }
    }

    /// Rebuilds the expiry heap when stale records outnumber live ones, so
    /// repeated updates of one key cannot grow it without bound.
    fn compact_expiry(&mut self) {
        if self.expiry.len() <= 2 * self.table.len() + 16 {
            return;
        }
        let slots = &self.slots;
        self.expiry
            .retain(|Reverse((_, seq, i))| slots[*i as usize].seq == *seq);
    }

    #[inline]
    fn unlink(&mut self, idx: u32) {
        let (prev, next) = {
            let s = &self.slots[idx as usize];
            (s.prev, s.next)
        };
        match prev {
            NIL => self.head = next,
            p => self.slots[p as usize].next = next,
        }
        match next {
            NIL => self.tail = prev,
            n => self.slots[n as usize].prev = prev,
        }
        let s = &mut self.slots[idx as usize];
        s.prev = NIL;
        s.next = NIL;
    }

    #[inline]
    fn push_front(&mut self, idx: u32) {
        let old = self.head;
        {
            let s = &mut self.slots[idx as usize];
            s.prev = NIL;
            s.next = old;
        }
        match old {
            NIL => self.tail = idx,
            o => self.slots[o as usize].prev = idx,
        }
        self.head = idx;
    }

    #[inline]
    fn touch(&mut self, idx: u32) {
        if self.head != idx {
            self.unlink(idx);
            self.push_front(idx);
        }
    }
}
