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
