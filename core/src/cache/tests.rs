//! Tests that need the cache's insides.

use std::time::Duration;

use bytes::Bytes;

use super::Cache;
use crate::testing::epoch;

#[test]
fn segment_ids_wrap_around() {
    // Ids count up in a u32; a long-lived cache passes u32::MAX.
    let now = epoch();
    let mut c = Cache::new(64 * 1024);
    for s in &mut c.stores {
        s.set_base(u32::MAX - 3);
    }
    assert!(c.segment_size() > 0);
    let value = Bytes::from(vec![1u8; 100]);
    for i in 0..5_000 {
        let key = format!("k{i}");
        let t = now + Duration::from_millis(i / 100);
        let ttl = (i % 3 == 0).then(|| t + Duration::from_millis(1 + i % 50));
        assert!(c.insert(&key, &value, ttl, t));
        if i % 7 == 0 {
            c.get(&format!("k{}", i / 2), now);
        }
        if i % 11 == 0 {
            c.remove(&format!("k{}", i / 3));
        }
        c.validate().unwrap();
    }
    assert!(c.stats().evictions > 0);
    // New keys go through the small queue, whose ids turn over fastest.
    let small = &c.stores[super::SMALL_Q];
    assert!(small.front().is_some_and(|id| id < 1000), "ids wrapped");
}

/// Bytes of items that an insert of a new key moved: entries that spent a
/// read (a round in main) or went from the small queue to main.
fn moved_by_insert(c: &mut Cache, key: &str, now: std::time::Instant) -> usize {
    let before: Vec<(String, usize, u32)> = c
        .keys()
        .into_iter()
        .map(|k| {
            let e = c.find(k).expect("held");
            (k.to_owned(), e.queue(), e.freq())
        })
        .collect();
    assert!(c.insert(key, &[b'v'; 32], None, now));
    before
        .iter()
        .filter(|(k, queue, freq)| {
            c.find(k)
                .is_some_and(|e| e.freq() < *freq || e.queue() != *queue)
        })
        .map(|(k, _, _)| super::item::HEADER + k.len() + 32)
        .sum()
}

#[test]
fn an_insert_moves_up_to_its_share_of_the_budget_whatever_the_segments() {
    // A node's caches charge each entry its overhead, and so use segments
    // a quarter of a 64th of the budget: the move bound must not shrink
    // with them.
    let now = epoch();
    let budget = 1 << 20;
    for overhead in [0, super::ENTRY_OVERHEAD] {
        let mut c = Cache::with_entry_overhead(budget, overhead).with_hash_seed(1);
        let key = |i: usize| format!("key-{i:08}");
        // Every key read twice while in the small queue, so main fills
        // with read entries; then every entry held read to the most counted.
        for i in 0..3 * budget / (12 + 32 + overhead) {
            c.insert(&key(i), &[b'v'; 32], None, now);
            c.get(&key(i), now);
            c.get(&key(i), now);
        }
        let held: Vec<String> = c.keys().into_iter().map(str::to_owned).collect();
        for k in &held {
            for _ in 0..3 {
                c.get(k, now);
            }
        }
        // Evictions free whole segments, so it takes a few inserts until
        // one must evict.
        let moved = (0..1000)
            .map(|j| moved_by_insert(&mut c, &format!("new-{j:08}"), now))
            .find(|&m| m > 0)
            .expect("an insert evicts");
        let bound = super::move_budget(budget);
        assert_eq!(bound, 2 * budget / 64);
        let item = super::item::HEADER + 12 + 32;
        assert!(
            moved + item > bound && moved <= bound,
            "overhead {overhead}: moved {moved} bytes, bound {bound}"
        );
        c.validate().unwrap();
    }
}
