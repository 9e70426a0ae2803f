//! Gets from many threads at once, hits answered from the cache shards
//! without the node's lock: every key is still loaded once, every answer
//! is the key's own, and the counters add up.

use std::collections::HashMap;
use std::sync::{Arc, Barrier, Mutex};

use groupcache_tokio::{Builder, Node};

const THREADS: usize = 4;
const KEYS: usize = 500;

#[test]
fn threads_racing_on_cold_and_hot_keys_load_each_key_once() {
    let rt = Arc::new(
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap(),
    );
    let loads: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
    let counted = loads.clone();
    let node: Node = rt.block_on(async {
        Builder::new()
            .configure(|c| c.cache_shards = 8)
            .group("g", 64 << 20, None, move |key: String| {
                let counted = counted.clone();
                async move {
                    *counted.lock().unwrap().entry(key.clone()).or_default() += 1;
                    // Gives other threads time to miss while this runs.
                    tokio::task::yield_now().await;
                    Ok(format!("value of {key}"))
                }
            })
            .start()
            .await
            .unwrap()
    });
    assert_eq!(node.group("g").unwrap().cache_shards(), 8);
    let start = Arc::new(Barrier::new(THREADS));
    let threads: Vec<_> = (0..THREADS)
        .map(|t| {
            let (rt, node, start) = (rt.clone(), node.clone(), start.clone());
            std::thread::spawn(move || {
                let g = node.group("g").unwrap();
                start.wait();
                rt.block_on(async {
                    // Each thread walks the keys from its own place, twice:
                    // cold keys meet loads under way, warm ones are hits.
                    for round in 0..2 {
                        for i in 0..KEYS {
                            let key = format!("k{}", (i * 7 + t * KEYS / THREADS + round) % KEYS);
                            let v = g.get(&key).await.unwrap();
                            assert_eq!(v, format!("value of {key}"));
                        }
                    }
                });
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let loads = loads.lock().unwrap();
    assert_eq!(loads.len(), KEYS);
    assert!(loads.values().all(|&n| n == 1), "a key loaded twice");
    let s = node.stats("g").unwrap();
    let gets = (THREADS * KEYS * 2) as u64;
    assert_eq!(s.gets, gets);
    assert_eq!(s.cache_hits + s.loads + s.loads_deduped, gets);
    assert_eq!(s.local_loads, KEYS as u64);
    rt.block_on(node.shutdown());
    // A key still in its shard is not served once the node shut down.
    let after = rt.block_on(node.group("g").unwrap().get("k1"));
    assert!(
        matches!(after, Err(groupcache_tokio::Error::Shutdown)),
        "{after:?}"
    );
}
