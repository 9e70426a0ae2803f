//! A plain model of [`Cache`]: the same documented rules written the
//! simple way (a vector in recency order), and a checker that applies one
//! operation to both and compares them. Used by the property tests and the
//! `cache` fuzz target.

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

/// The model: entries from most to least recently used.
#[derive(Debug)]
pub struct CacheModel {
    max: usize,
    /// Bytes charged per entry beyond key and value.
    overhead: usize,
    seq: u64,
    /// (key, value, expiry, expiry sequence)
    entries: Vec<(String, Bytes, Option<Instant>, u64)>,
}

impl CacheModel {
    /// An empty model with a budget, charging `overhead` bytes per entry
    /// beyond its key and value.
    pub fn new(max: usize, overhead: usize) -> Self {
        Self {
            max,
            overhead,
            seq: 0,
            entries: Vec::new(),
        }
    }

    fn bytes(&self) -> usize {
        self.entries
            .iter()
            .map(|(k, v, _, _)| k.len() + v.len() + self.overhead)
            .sum()
    }

    fn pos(&self, key: &str) -> Option<usize> {
        self.entries.iter().position(|e| e.0 == key)
    }

    fn get(&mut self, key: &str, now: Instant) -> Option<Bytes> {
        let i = self.pos(key)?;
        let e = self.entries.remove(i);
        if e.2.is_some_and(|t| t <= now) {
            return None;
        }
        let v = e.1.clone();
        self.entries.insert(0, e);
        Some(v)
    }

    fn sweep(&mut self, now: Instant, limit: usize) {
        for _ in 0..limit {
            let oldest = self
                .entries
                .iter()
                .enumerate()
                .filter(|(_, e)| e.2.is_some_and(|t| t <= now))
                .min_by_key(|(_, e)| (e.2, e.3))
                .map(|(i, _)| i);
            match oldest {
                Some(i) => drop(self.entries.remove(i)),
                None => break,
            }
        }
    }

    fn insert(&mut self, key: &str, value: Bytes, exp: Option<Instant>, now: Instant) -> bool {
        let old = self.pos(key).map(|i| self.entries.remove(i));
        if key.len() + value.len() + self.overhead > self.max || exp.is_some_and(|t| t <= now) {
            return false;
        }
        let seq = match old {
            Some((_, _, e, s)) if e == exp => s,
            _ => {
                self.seq += 1;
                if exp.is_some() {
                    self.seq
                } else {
                    0
                }
            }
        };
        self.entries.insert(0, (key.to_string(), value, exp, seq));
        self.sweep(now, 4);
        self.evict();
        true
    }

    fn evict(&mut self) {
        while self.bytes() > self.max {
            self.entries.pop();
        }
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
    /// Both empty with budget `max`, the clock at `now`.
    pub fn new(max: usize, now: Instant) -> Self {
        Self::with_entry_overhead(max, 0, now)
    }

    /// Both empty with budget `max`, charging `overhead` bytes per entry
    /// beyond its key and value, the clock at `now`.
    pub fn with_entry_overhead(max: usize, overhead: usize, now: Instant) -> Self {
        Self {
            cache: Cache::with_entry_overhead(max, overhead),
            model: CacheModel::new(max, overhead),
            now,
            fill: 0,
        }
    }

    /// Applies `op` to both, then checks `validate()`, the recency order,
    /// the byte count and the budget.
    pub fn step(&mut self, op: &CacheOp) -> Result<(), String> {
        let now = self.now;
        match *op {
            CacheOp::Get(k) => {
                let k = k.to_string();
                let got = self.cache.get(&k, now).map(|h| h.value);
                let want = self.model.get(&k, now);
                if got != want {
                    return Err(format!("get {k}: cache {got:?}, model {want:?}"));
                }
            }
            CacheOp::Insert { key, len, ttl } => {
                self.fill = self.fill.wrapping_add(1);
                let k = key.to_string();
                let v = Bytes::from(vec![self.fill; len]);
                let exp = ttl.map(|t| now + Duration::from_millis(u64::from(t)));
                let a = self.cache.insert(&k, v.clone(), exp, now);
                let b = self.model.insert(&k, v, exp, now);
                if a != b {
                    return Err(format!("insert {k}: cache {a}, model {b}"));
                }
            }
            CacheOp::Remove(k) => {
                let k = k.to_string();
                let want = self.model.pos(&k).map(|i| self.model.entries.remove(i).1);
                let got = self.cache.remove(&k);
                if got != want {
                    return Err(format!("remove {k}: cache {got:?}, model {want:?}"));
                }
            }
            CacheOp::Advance(ms) => self.now += Duration::from_millis(u64::from(ms)),
            CacheOp::Budget(b) => {
                self.cache.set_max_bytes(b);
                self.model.max = b;
                self.model.evict();
            }
            CacheOp::Sweep(n) => {
                self.cache.sweep(now, n as usize);
                self.model.sweep(now, n as usize);
            }
        }
        self.cache.validate()?;
        let keys: Vec<&str> = self.model.entries.iter().map(|e| e.0.as_str()).collect();
        if self.cache.keys_by_recency() != keys {
            return Err(format!(
                "order: cache {:?}, model {keys:?}",
                self.cache.keys_by_recency()
            ));
        }
        if self.cache.bytes() != self.model.bytes() {
            return Err(format!(
                "bytes: cache {}, model {}",
                self.cache.bytes(),
                self.model.bytes()
            ));
        }
        Ok(())
    }
}
