//! What [`Cache`] promises, checked after every operation: an oracle of
//! the latest value written per key, rather than a copy of the eviction
//! policy. A get or remove answers that value or nothing; nothing is held
//! that was removed, replaced or expired; a fresh entry goes missing only
//! after an eviction; an accepted insert is held right after; the byte
//! count stays within budget and `validate()` holds. Used by the property
//! tests and the `cache` fuzz target.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::cache::Cache;

/// One operation on a cache.
#[derive(Debug, Clone)]
pub enum CacheOp {
    /// Look a key up.
    Get(u8),
    /// Insert or replace a key with a value of `len` bytes, expiring after
    /// `ttl` milliseconds if set.
    Insert {
        /// Key number.
        key: u8,
        /// Value length.
        len: usize,
        /// Milliseconds to live.
        ttl: Option<u8>,
    },
    /// Remove a key.
    Remove(u8),
    /// Let milliseconds pass.
    Advance(u8),
    /// Change the byte budget.
    Budget(usize),
    /// Sweep up to this many expired entries.
    Sweep(u8),
}

/// The latest value written for a key.
#[derive(Debug, Clone)]
struct Written {
    value: Bytes,
    expires: Option<Instant>,
    /// The cache's eviction count when it was written.
    evictions: u64,
}

/// The oracle: per key, the latest value written and not removed.
#[derive(Debug, Default)]
pub struct CacheModel {
    latest: BTreeMap<String, Written>,
}

impl CacheModel {
    fn fresh(&self, key: &str, now: Instant) -> Option<&Written> {
        self.latest
            .get(key)
            .filter(|w| w.expires.is_none_or(|t| t > now))
    }
}

/// A cache and its model side by side.
#[derive(Debug)]
pub struct CacheCheck {
    /// The cache under test.
    pub cache: Cache,
    /// The model.
    pub model: CacheModel,
    /// The fake clock.
    pub now: Instant,
    fill: u8,
}

impl CacheCheck {
    /// An empty cache with budget `max`, the clock at `now`.
    pub fn new(max: usize, now: Instant) -> Self {
        Self::with_cache(Cache::new(max), now)
    }

    /// An empty cache with budget `max`, charging `overhead` bytes per
    /// entry beyond its key and value, with segments of `segment_size`
    /// bytes, the clock at `now`.
    pub fn with_segment_size(
        max: usize,
        overhead: usize,
        segment_size: usize,
        now: Instant,
    ) -> Self {
        Self::with_cache(Cache::with_segment_size(max, overhead, segment_size), now)
    }

    /// Checks `cache`, which must be empty.
    pub fn with_cache(cache: Cache, now: Instant) -> Self {
        assert!(cache.is_empty());
        Self {
            cache,
            model: CacheModel::default(),
            now,
            fill: 0,
        }
    }

    /// Applies `op` to the cache, then checks what it answered and what it
    /// holds against the oracle, `validate()` and the budget.
    pub fn step(&mut self, op: &CacheOp) -> Result<(), String> {
        let now = self.now;
        let evictions = self.cache.stats().evictions;
        match *op {
            CacheOp::Get(k) => {
                let k = k.to_string();
                let got = self.cache.get(&k, now).map(|h| h.value);
                self.check_answer("get", &k, got, now)?;
            }
            CacheOp::Insert { key, len, ttl } => {
                self.fill = self.fill.wrapping_add(1);
                let k = key.to_string();
                let v = Bytes::from(vec![self.fill; len]);
                let exp = ttl.map(|t| now + Duration::from_millis(u64::from(t)));
                let charge = k.len() + len + self.cache.entry_overhead();
                let bytes_before = self.cache.bytes();
                let fits = charge <= self.cache.max_bytes() && exp.is_none_or(|t| t > now);
                let accepted = self.cache.insert(&k, &v, exp, now);
                if accepted != fits {
                    return Err(format!("insert {k}: accepted {accepted}, fits {fits}"));
                }
                if self.cache.stats().evictions > evictions
                    && bytes_before + charge <= self.cache.max_bytes()
                {
                    return Err(format!("insert {k} evicted with room to spare"));
                }
                if accepted {
                    if self.cache.peek(&k) != Some(v.clone()) {
                        return Err(format!("insert {k}: not held right after"));
                    }
                    let evictions = self.cache.stats().evictions;
                    let w = Written {
                        value: v,
                        expires: exp,
                        evictions,
                    };
                    self.model.latest.insert(k, w);
                } else {
                    self.model.latest.remove(&k);
                }
            }
            CacheOp::Remove(k) => {
                let k = k.to_string();
                let got = self.cache.remove(&k);
                // A remove answers even an expired value.
                if let Some(v) = &got {
                    let want = self.model.latest.get(&k).map(|w| &w.value);
                    if want != Some(v) {
                        return Err(format!("remove {k}: {v:?}, latest {want:?}"));
                    }
                } else {
                    self.check_answer("remove", &k, None, now)?;
                }
                self.model.latest.remove(&k);
            }
            CacheOp::Advance(ms) => self.now += Duration::from_millis(u64::from(ms)),
            CacheOp::Budget(b) => self.cache.set_max_bytes(b),
            CacheOp::Sweep(n) => {
                self.cache.sweep(now, n as usize);
            }
        }
        self.cache.validate()?;
        for k in self.cache.keys() {
            let Some(w) = self.model.latest.get(k) else {
                return Err(format!("holds {k}, which was removed"));
            };
            if self.cache.peek(k).as_ref() != Some(&w.value) {
                return Err(format!("holds an old value of {k}"));
            }
        }
        if self.cache.keys().len() != self.cache.len() {
            return Err("keys() and len() disagree".into());
        }
        Ok(())
    }

    /// A get or remove answered `got`: the latest value if it is fresh,
    /// and nothing only if it is not or an eviction happened since.
    fn check_answer(
        &self,
        what: &str,
        k: &str,
        got: Option<Bytes>,
        now: Instant,
    ) -> Result<(), String> {
        let fresh = self.model.fresh(k, now);
        match (got, fresh) {
            (Some(v), Some(w)) if v == w.value => Ok(()),
            (Some(v), w) => Err(format!("{what} {k}: {v:?}, latest fresh {w:?}")),
            (None, Some(w)) if self.cache.stats().evictions == w.evictions => {
                Err(format!("{what} {k}: lost without an eviction"))
            }
            (None, _) => Ok(()),
        }
    }
}
