//! The cache against a simple model, and the LRU bugs of the original.

use std::time::{Duration, Instant};

use bytes::Bytes;
use groupcache_core::cache::Cache;
use groupcache_core::testing::model::{CacheCheck, CacheOp};
use proptest::prelude::*;

fn op() -> impl Strategy<Value = CacheOp> {
    prop_oneof![
        4 => any::<u8>().prop_map(|k| CacheOp::Get(k % 16)),
        4 => (any::<u8>(), 0usize..40, prop::option::of(1u8..20))
            .prop_map(|(k, len, ttl)| CacheOp::Insert { key: k % 16, len, ttl }),
        1 => any::<u8>().prop_map(|k| CacheOp::Remove(k % 16)),
        2 => (0u8..10).prop_map(CacheOp::Advance),
        1 => (0usize..200).prop_map(CacheOp::Budget),
        1 => (0u8..5).prop_map(CacheOp::Sweep),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]
    #[test]
    fn behaves_like_the_model(
        ops in prop::collection::vec(op(), 1..200),
        overhead in prop_oneof![Just(0usize), 1usize..24],
    ) {
        let mut check = CacheCheck::with_entry_overhead(100, overhead, t0());
        for op in &ops {
            if let Err(e) = check.step(op) {
                return Err(TestCaseError::fail(format!("{op:?}: {e}")));
            }
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
