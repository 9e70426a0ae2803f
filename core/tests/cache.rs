//! The cache against a simple model, and the LRU bugs of the original.

use std::time::{Duration, Instant};

use bytes::Bytes;
use groupcache_core::cache::Cache;
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    Get(u8),
    Insert {
        key: u8,
        len: usize,
        ttl: Option<u8>,
    },
    Remove(u8),
    Advance(u8),
    Budget(usize),
    Sweep(u8),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => any::<u8>().prop_map(|k| Op::Get(k % 16)),
        4 => (any::<u8>(), 0usize..40, prop::option::of(1u8..20))
            .prop_map(|(k, len, ttl)| Op::Insert { key: k % 16, len, ttl }),
        1 => any::<u8>().prop_map(|k| Op::Remove(k % 16)),
        2 => (0u8..10).prop_map(Op::Advance),
        1 => (0usize..200).prop_map(Op::Budget),
        1 => (0u8..5).prop_map(Op::Sweep),
    ]
}

/// The model: a vector in recency order (most recent first), with the same
/// documented rules written the plain way.
#[derive(Debug, Default)]
struct Model {
    max: usize,
    seq: u64,
    /// (key, value, expiry, expiry sequence)
    entries: Vec<(String, Bytes, Option<Instant>, u64)>,
}

impl Model {
    fn bytes(&self) -> usize {
        self.entries
            .iter()
            .map(|(k, v, _, _)| k.len() + v.len())
            .sum()
    }
    fn pos(&self, key: &str) -> Option<usize> {
        self.entries.iter().position(|e| e.0 == key)
    }
    fn get(&mut self, key: &str, now: Instant) -> Option<Bytes> {
        let i = self.pos(key)?;
        if self.entries[i].2.is_some_and(|t| t <= now) {
            self.entries.remove(i);
            return None;
        }
        let e = self.entries.remove(i);
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
                Some(i) => {
                    self.entries.remove(i);
                }
                None => break,
            }
        }
    }
    fn insert(&mut self, key: &str, value: Bytes, exp: Option<Instant>, now: Instant) -> bool {
        let old = self.pos(key).map(|i| self.entries.remove(i));
        if key.len() + value.len() > self.max || exp.is_some_and(|t| t <= now) {
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

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]
    #[test]
    fn behaves_like_the_model(ops in prop::collection::vec(op(), 1..200)) {
        #[allow(clippy::disallowed_methods)]
        let mut now = Instant::now();
        let mut cache = Cache::new(100);
        let mut model = Model { max: 100, ..Default::default() };
        let mut fill = 0u8;
        for op in ops {
            match op {
                Op::Get(k) => {
                    let k = k.to_string();
                    let got = cache.get(&k, now).map(|h| h.value);
                    prop_assert_eq!(got, model.get(&k, now), "get {}", k);
                }
                Op::Insert { key, len, ttl } => {
                    fill = fill.wrapping_add(1);
                    let k = key.to_string();
                    let v = Bytes::from(vec![fill; len]);
                    let exp = ttl.map(|t| now + Duration::from_millis(u64::from(t)));
                    let a = cache.insert(&k, v.clone(), exp, now);
                    prop_assert_eq!(a, model.insert(&k, v, exp, now));
                }
                Op::Remove(k) => {
                    let k = k.to_string();
                    let m = model.pos(&k).map(|i| model.entries.remove(i).1);
                    prop_assert_eq!(cache.remove(&k), m);
                }
                Op::Advance(ms) => now += Duration::from_millis(u64::from(ms)),
                Op::Budget(b) => {
                    cache.set_max_bytes(b);
                    model.max = b;
                    model.evict();
                }
                Op::Sweep(n) => {
                    cache.sweep(now, n as usize);
                    model.sweep(now, n as usize);
                }
            }
            if let Err(e) = cache.validate() {
                return Err(TestCaseError::fail(e));
            }
            let keys: Vec<&str> = model.entries.iter().map(|e| e.0.as_str()).collect();
            prop_assert_eq!(cache.keys_by_recency(), keys);
            prop_assert_eq!(cache.bytes(), model.bytes());
            prop_assert!(cache.bytes() <= cache.max_bytes());
        }
    }
}

fn t0() -> Instant {
    #[allow(clippy::disallowed_methods)]
    Instant::now()
}

fn b(s: &'static str) -> Bytes {
    Bytes::from_static(s.as_bytes())
}

#[test]
fn get_moves_to_front_after_add_a_add_b() {
    // The original lost track of recency for this exact sequence.
    let now = t0();
    let mut c = Cache::new(4);
    c.insert("a", b("1"), None, now);
    c.insert("b", b("1"), None, now);
    assert!(c.get("a", now).is_some());
    assert!(c.get("b", now).is_some());
    assert_eq!(c.keys_by_recency(), ["b", "a"]);
    c.insert("c", b("1"), None, now); // evicts the least recent: a
    assert_eq!(c.keys_by_recency(), ["c", "b"]);
    c.validate().unwrap();
}

#[test]
fn update_refreshes_recency_and_accounting() {
    let now = t0();
    let mut c = Cache::new(10);
    c.insert("a", b("1"), None, now);
    c.insert("b", b("1"), None, now);
    c.insert("a", b("1234"), None, now);
    assert_eq!(c.keys_by_recency(), ["a", "b"]);
    assert_eq!(c.bytes(), 5 + 2);
    c.insert("c", b("12"), None, now); // 10 bytes: still fits
    assert_eq!(c.len(), 3);
    c.insert("a", b("12345"), None, now); // 6+2+3 = 11: evicts b
    assert_eq!(c.keys_by_recency(), ["a", "c"]);
    c.validate().unwrap();
}

#[test]
fn delete_of_the_newest_keeps_the_list_whole() {
    let now = t0();
    let mut c = Cache::new(100);
    for k in ["a", "b", "c"] {
        c.insert(k, b("v"), None, now);
    }
    assert_eq!(c.remove("c"), Some(b("v")));
    c.validate().unwrap();
    assert_eq!(c.keys_by_recency(), ["b", "a"]);
    c.insert("d", b("v"), None, now);
    assert_eq!(c.remove("a"), Some(b("v")));
    assert_eq!(c.keys_by_recency(), ["d", "b"]);
    c.validate().unwrap();
}

#[test]
fn entry_larger_than_budget_is_refused_and_drops_the_old_value() {
    let now = t0();
    let mut c = Cache::new(8);
    assert!(c.insert("k", b("v"), None, now));
    assert!(!c.insert("k", b("too large a value"), None, now));
    assert!(c.get("k", now).is_none());
    assert_eq!(c.bytes(), 0);
}

#[test]
fn re_added_key_keeps_its_new_deadline() {
    // The original's per-insert timer deleted a re-added key early.
    let now = t0();
    let mut c = Cache::new(100);
    let s = Duration::from_secs(1);
    c.insert("k", b("1"), Some(now + s), now);
    c.remove("k");
    c.insert("k", b("2"), Some(now + 3 * s), now + s / 2);
    c.sweep(now + 2 * s, usize::MAX);
    assert_eq!(c.get("k", now + 2 * s).unwrap().value, b("2"));
    assert!(c.get("k", now + 3 * s).is_none());
}

#[test]
fn expired_entries_are_swept_on_insert() {
    let now = t0();
    let mut c = Cache::new(1000);
    for i in 0..8 {
        c.insert(
            &format!("k{i}"),
            b("v"),
            Some(now + Duration::from_millis(1)),
            now,
        );
    }
    let later = now + Duration::from_millis(5);
    c.insert("x", b("v"), None, later);
    c.insert("y", b("v"), None, later);
    assert_eq!(c.len(), 2, "two inserts sweep up to eight expired entries");
    assert_eq!(c.stats().expirations, 8);
    c.validate().unwrap();
}

#[test]
fn stats_count_gets_hits_and_evictions() {
    let now = t0();
    let mut c = Cache::new(4);
    c.insert("a", b("1"), None, now);
    c.get("a", now);
    c.get("z", now);
    c.insert("b", b("1"), None, now);
    c.insert("c", b("1"), None, now);
    let s = c.stats();
    assert_eq!(
        (s.gets, s.hits, s.evictions, s.items, s.bytes),
        (2, 1, 1, 2, 4)
    );
}
