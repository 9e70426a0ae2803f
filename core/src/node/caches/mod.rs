//! A group's caches and flights on one node, split into shards by key,
//! each behind a lock of its own.
//!
//! A hit needs nothing but the key's shard: its main and hot caches and
//! its counters. So the driver answers in-process hits through
//! [`GroupCaches::get`] without the node's lock, and two threads that hit
//! different keys take different locks. A key's flight (its singleflight
//! record) sits in the same shard, so a miss of a key this node owns can
//! claim its load there too ([`GroupCaches::claim`], `claim.rs`), and the
//! lookup and the start of the load are one step under one lock.
//! Everything else (peers, writes, timers, loads that wait) stays in the
//! [`Node`](super::Node) and runs under the driver's node lock, which
//! takes a shard's lock while it holds its own, never the other way round.
//!
//! A miss seen by [`GroupCaches::get`] is not the last word: a load may
//! have landed since. The node looks again under the shard's lock when it
//! joins the key's flight ([`Node::get_missed`](super::Node::get_missed)),
//! so a key is still loaded once.
//!
//! Each shard gets an equal share of the group's budgets, so their sum is
//! the group's; a value larger than a shard's main budget is not cached
//! (as one larger than the budget is not when there is one shard). The
//! node splits a group into no more shards than leave each
//! [`Config::min_shard_bytes`](super::Config::min_shard_bytes).

mod claim;
mod flights;

use std::hash::BuildHasher;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use crossbeam_utils::CachePadded;
use foldhash::quality::FixedState;
use parking_lot::{Mutex, MutexGuard};

use crate::cache::{Cache, CacheStats, Hit, ENTRY_OVERHEAD};
use crate::flight::Flights;

use super::slots::Slots;
use super::{FlightState, LoadId, Waiter};

pub(super) use claim::Gate;
pub use claim::{Claim, Claimed, Landed};
pub(super) use flights::Outcome;

/// The default of [`Config::min_shard_bytes`](super::Config::min_shard_bytes).
/// A shard's cache turns over faster than the group's would, and a small
/// one judges keys in a small queue of few segments; 4 MiB keeps that
/// queue at 200 KiB or more.
pub const MIN_SHARD_BYTES: usize = 4 << 20;

/// Fixed, so a key's shard is the same on every run; it is not the
/// caches' own hasher (seeded at random), so keys of one shard still
/// spread over that shard's table.
const SHARD_SEED: u64 = 0x5eed_0f5a_a4d5_1e55;

/// One shard: the caches of the keys that hash to it, and its counters.
///
/// In this order: what a hit writes (these counters, then the main
/// cache's, which come first in it) sits on the cache lines of the lock,
/// so a hit that follows another thread's on this shard moves one pair of
/// lines between cores, not three.
#[derive(Debug)]
#[repr(C)]
struct Shard {
    /// In-process gets that reached this shard.
    gets: u64,
    /// Gets and served requests answered from this shard's caches.
    hits: u64,
    /// Served requests answered here without the node.
    served: u64,
    main: Cache,
    hot: Cache,
    /// The flights of this shard's keys.
    flights: Flights<FlightState, Waiter>,
    /// Whether, and on which ring, a miss may claim its load here.
    gate: Option<Arc<claim::Gate>>,
    /// Load counters, for the group's stats.
    loads: LoadCounts,
    /// Load ids for claims: the next, and the end of the block taken from
    /// the node's counter, so that a claim writes no line another thread
    /// does.
    ids: std::ops::Range<u64>,
}

/// Ids a shard takes from the node's counter at once.
const ID_BLOCK: u64 = 1024;

impl Shard {
    /// A load id for a claim, one of the node's.
    fn next_id(&mut self, ids: &AtomicU64) -> LoadId {
        if self.ids.is_empty() {
            let base = ids.fetch_add(ID_BLOCK, std::sync::atomic::Ordering::Relaxed);
            self.ids = base + 1..base + 1 + ID_BLOCK;
        }
        let id = self.ids.start;
        self.ids.start += 1;
        LoadId(id)
    }
}

/// A shard's counts of loads, added into the group's stats.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LoadCounts {
    /// Misses that had to be loaded (here or by a peer).
    pub loads: u64,
    /// Misses that joined a load already under way.
    pub deduped: u64,
    /// Successful local loads.
    pub local: u64,
    /// Failed local loads (timeouts included).
    pub local_errs: u64,
    /// Loader results refused for being larger than the group's maximum.
    pub too_large: u64,
}

impl std::ops::AddAssign for LoadCounts {
    fn add_assign(&mut self, o: Self) {
        self.loads += o.loads;
        self.deduped += o.deduped;
        self.local += o.local;
        self.local_errs += o.local_errs;
        self.too_large += o.too_large;
    }
}

impl Shard {
    /// `key` from the main cache, else the hot one, marked read.
    #[inline]
    fn look(&mut self, key: &str, now: Instant) -> Option<Hit> {
        self.main.get(key, now).or_else(|| self.hot.get(key, now))
    }
}

/// The sums over a group's shards.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CachesStats {
    /// The main caches' counters, added up.
    pub main: CacheStats,
    /// The hot caches' counters, added up.
    pub hot: CacheStats,
    /// In-process gets.
    pub gets: u64,
    /// Gets and served requests answered from a cache.
    pub hits: u64,
    /// Requests an inbound connection answered from a cache by itself
    /// ([`GroupCaches::serve`]).
    pub served: u64,
    /// Loads, led by the node or claimed.
    pub loads: LoadCounts,
}

/// A group's main and hot caches on one node, sharded by key. Shared
/// between the node and the driver's callers, which take one shard's lock
/// per lookup.
#[derive(Debug)]
pub struct GroupCaches {
    /// Padded: a hit writes its shard's counters and lock, which must not
    /// share a cache line with a neighbour's.
    shards: Box<[CachePadded<Mutex<Shard>>]>,
    hasher: FixedState,
    /// No later than the earliest expiry held, so that the node's timer
    /// need not ask every shard after every input: lowered by each insert,
    /// made exact by each sweep.
    sweep_at: Mutex<Option<Instant>>,
    /// The group's name, for errors.
    name: Arc<str>,
    /// How long a loaded value lives, at most.
    pub(super) ttl: Option<Duration>,
    /// Largest value cached or sent, already clamped to fit a frame.
    pub(super) max_value: usize,
    /// The group's load slots, shared with the node's queue.
    pub(super) slots: Arc<Slots>,
    /// The node's id counter: a claim's load id is one of the node's.
    ids: Arc<AtomicU64>,
}

impl GroupCaches {
    /// Caches of `main_bytes` and `hot_bytes` in all, split into `shards`
    /// shards (at least one) of equal budgets.
    pub fn new(main_bytes: usize, hot_bytes: usize, shards: usize) -> Self {
        let n = shards.max(1);
        let shards = (0..n)
            .map(|_| {
                CachePadded::new(Mutex::new(Shard {
                    main: Cache::with_entry_overhead(main_bytes / n, ENTRY_OVERHEAD),
                    hot: Cache::with_entry_overhead(hot_bytes / n, ENTRY_OVERHEAD),
                    gets: 0,
                    hits: 0,
                    served: 0,
                    flights: Flights::default(),
                    gate: None,
                    loads: LoadCounts::default(),
                    ids: 0..0,
                }))
            })
            .collect();
        Self {
            shards,
            hasher: FixedState::with_seed(SHARD_SEED),
            sweep_at: Mutex::new(None),
            name: Arc::from(""),
            ttl: None,
            max_value: usize::MAX,
            slots: Arc::new(Slots::new(usize::MAX)),
            ids: Arc::default(),
        }
    }

    /// Node `ids`' group `name`: values live at most `ttl` and are at
    /// most `max_value` bytes; loads take `slots`.
    pub(super) fn for_group(
        mut self,
        name: Arc<str>,
        ttl: Option<Duration>,
        max_value: usize,
        slots: Arc<Slots>,
        ids: Arc<AtomicU64>,
    ) -> Self {
        (self.name, self.ttl, self.max_value) = (name, ttl, max_value);
        (self.slots, self.ids) = (slots, ids);
        self
    }

    /// How many shards the group's caches are split into.
    pub fn shards(&self) -> usize {
        self.shards.len()
    }

    /// The shard `key` lives in.
    #[inline]
    fn index(&self, key: &str) -> usize {
        if self.shards.len() == 1 {
            return 0;
        }
        // Multiply-shift: any shard count, no modulo.
        let h = self.hasher.hash_one(key);
        ((u128::from(h) * self.shards.len() as u128) >> 64) as usize
    }

    #[inline]
    fn shard(&self, key: &str) -> MutexGuard<'_, Shard> {
        self.shards[self.index(key)].lock()
    }

    /// An in-process get of `key`: the main cache, then the hot one.
    /// Counts the get, and the hit if there is one.
    #[inline]
    pub fn get(&self, key: &str, now: Instant) -> Option<Hit> {
        let mut s = self.shard(key);
        s.gets += 1;
        let hit = s.look(key, now);
        s.hits += u64::from(hit.is_some());
        hit
    }

    /// A get a client or peer sent, answered only if a cache holds the
    /// value: then counted as a served request and a hit. A miss counts
    /// nothing, since the node serves it and counts it there.
    #[inline]
    pub fn serve(&self, key: &str, now: Instant) -> Option<Hit> {
        let mut s = self.shard(key);
        let hit = s.look(key, now)?;
        s.hits += 1;
        s.served += 1;
        Some(hit)
    }

    /// A lookup for a request counted elsewhere: counts the hit only.
    #[inline]
    pub(super) fn hit(&self, key: &str, now: Instant) -> Option<Hit> {
        let mut s = self.shard(key);
        let hit = s.look(key, now);
        s.hits += u64::from(hit.is_some());
        hit
    }

    /// A lookup that counts nothing (a peek from a peer).
    pub(super) fn lookup(&self, key: &str, now: Instant) -> Option<Hit> {
        let mut s = self.shard(key);
        s.look(key, now)
    }

    /// Caches a value this node owns or loaded itself.
    pub(super) fn insert_main(&self, key: &str, value: &[u8], exp: Option<Instant>, now: Instant) {
        self.shard(key).main.insert(key, value, exp, now);
        self.expires_at(exp);
    }

    /// Caches a copy of a value another node owns.
    pub(super) fn insert_hot(&self, key: &str, value: &[u8], exp: Option<Instant>, now: Instant) {
        self.shard(key).hot.insert(key, value, exp, now);
        self.expires_at(exp);
    }

    /// A written value: it replaces any hot copy.
    pub(super) fn set(&self, key: &str, value: &[u8], exp: Option<Instant>, now: Instant) {
        {
            let mut s = self.shard(key);
            s.hot.remove(key);
            s.main.insert(key, value, exp, now);
        }
        self.expires_at(exp);
    }

    /// Lowers the next sweep to `exp`, after the entry is in its shard (a
    /// claim inserts without the node, so a sweep may run meanwhile: it
    /// holds this lock while it looks, and either finds the entry or is
    /// lowered after it). True if it moved earlier: the node's timer must
    /// learn it.
    fn expires_at(&self, exp: Option<Instant>) -> bool {
        let Some(t) = exp else {
            return false;
        };
        let mut at = self.sweep_at.lock();
        let earlier = at.is_none_or(|a| t < a);
        if earlier {
            *at = Some(t);
        }
        earlier
    }

    /// When [`GroupCaches::sweep_due`] has work next, at the earliest.
    pub(super) fn sweep_at(&self) -> Option<Instant> {
        *self.sweep_at.lock()
    }

    /// Drops `key` from both caches.
    pub(super) fn remove(&self, key: &str) {
        let mut s = self.shard(key);
        s.main.remove(key);
        s.hot.remove(key);
    }

    /// Drops every key.
    pub(super) fn clear(&self) {
        for s in self.shards.iter() {
            let mut s = s.lock();
            s.main.clear();
            s.hot.clear();
        }
    }

    /// The value held for `key`, expired or not, touching nothing.
    pub(super) fn peek(&self, key: &str) -> Option<Bytes> {
        let s = self.shard(key);
        s.main.peek(key).or_else(|| s.hot.peek(key))
    }

    /// Frees expired segments, up to `limit` per cache, if any may be
    /// due; then learns when the next are.
    pub(super) fn sweep_due(&self, now: Instant, limit: usize) {
        if self.sweep_at().is_none_or(|t| t > now) {
            return;
        }
        self.sweep(now, limit);
        // Held while it looks: an insert that lands meanwhile lowers it
        // after (`expires_at`).
        let mut at = self.sweep_at.lock();
        *at = self.next_expiry();
    }

    /// The earliest expiry of an entry held, over every shard.
    fn next_expiry(&self) -> Option<Instant> {
        (self.shards.iter())
            .filter_map(|s| {
                let s = s.lock();
                [s.main.next_expiry(), s.hot.next_expiry()]
                    .into_iter()
                    .flatten()
                    .min()
            })
            .min()
    }

    /// Frees up to `limit` expired segments per cache.
    fn sweep(&self, now: Instant, limit: usize) {
        for s in self.shards.iter() {
            let mut s = s.lock();
            s.main.sweep(now, limit);
            s.hot.sweep(now, limit);
        }
    }

    /// The counters, added up over the shards.
    pub fn stats(&self) -> CachesStats {
        let mut sum = CachesStats::default();
        for s in self.shards.iter() {
            let s = s.lock();
            sum.main += s.main.stats();
            sum.hot += s.hot.stats();
            sum.gets += s.gets;
            sum.hits += s.hits;
            sum.served += s.served;
            sum.loads += s.loads;
        }
        sum
    }

    /// Checks every shard's caches, and that each key sits in its shard.
    pub(super) fn validate(&self) -> Result<(), String> {
        for (i, s) in self.shards.iter().enumerate() {
            let s = s.lock();
            s.main
                .validate()
                .map_err(|e| format!("shard {i} main: {e}"))?;
            s.hot
                .validate()
                .map_err(|e| format!("shard {i} hot: {e}"))?;
            for key in s.main.keys().into_iter().chain(s.hot.keys()) {
                let home = self.index(key);
                if home != i {
                    return Err(format!("key {key:?} in shard {i}, belongs in {home}"));
                }
            }
        }
        Ok(())
    }
}
