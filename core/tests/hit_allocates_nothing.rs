//! The hit path allocates nothing: allocations counted around cache and
//! node hits.

use bytes::Bytes;
use groupcache_core::cache::Cache;
use groupcache_core::node::{Config, Get, GroupConfig, Node, Output};

#[test]
fn cache_and_node_hits_allocate_nothing() {
    let now = groupcache_core::testing::epoch();
    let mut cache = Cache::new(1 << 20);
    cache.insert("k", &[1u8; 64], None, now);
    let mut node = Node::new(Config::new("self:1"));
    node.add_group(GroupConfig::new("g", 1 << 20)).unwrap();
    let Get::Pending(_) = node.get(now, "g", "k") else {
        panic!("cold key")
    };
    let Some(Output::Load { id, .. }) = node.poll_output() else {
        panic!("no load")
    };
    node.handle_load(now, id, Ok(Bytes::from(vec![2u8; 64]).into()));
    assert!(node.poll_output().is_some());
    // First hits may promote a Vec-backed Bytes to a shared one: warm up.
    drop(cache.get("k", now));
    drop(node.get(now, "g", "k"));
    let mut hits = 0;
    let counted = allocation_counter::measure(|| {
        for _ in 0..1000 {
            let hit = cache.get("k", now).expect("hit");
            hits += hit.value.len();
            if let Get::Ready(Ok(v)) = node.get(now, "g", "k") {
                hits += v.len();
            }
        }
    });
    assert_eq!(hits, 2 * 64 * 1000, "every get was a hit");
    assert_eq!(counted.count_total, 0, "allocations on the hit path");
}
