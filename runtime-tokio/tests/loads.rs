//! A load polled on the caller's own thread, outside the runtime's workers
//! (a caller's `block_on`), still runs in tokio's context, so a loader may
//! use tokio's timers and IO.

use std::time::Duration;

use bytes::Bytes;
use groupcache_tokio::{Builder, Node};

#[test]
fn a_loader_using_tokio_timers_serves_callers_outside_the_runtime() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let node: Node = rt.block_on(async {
        Builder::new()
            .group("g", 1 << 20, None, |key: String| async move {
                // Made on its first poll, on the caller's thread: this
                // panics unless tokio's context is set there.
                tokio::time::sleep(Duration::from_millis(1)).await;
                Ok(format!("v-{key}"))
            })
            .start()
            .await
            .unwrap()
    });
    let caller = node.clone();
    let got = std::thread::spawn(move || futures_lite::future::block_on(caller.get("g", "a")))
        .join()
        .unwrap();
    assert_eq!(got, Ok(Bytes::from_static(b"v-a")));
    assert_eq!(node.stats("g").unwrap().local_load_errs, 0);
    rt.block_on(node.shutdown());
}

/// Threads racing on the same cold keys, with a loader that answers at
/// once for most keys (the get claims and lands the load in its shard) and
/// waits for some (the node adopts the load): every key is loaded once,
/// every caller gets its value, and the counters add up.
#[test]
fn racing_claims_load_each_key_once() {
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};

    const KEYS: usize = 200;
    const THREADS: usize = 4;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let calls: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
    let counted = calls.clone();
    let node: Node = rt.block_on(async {
        Builder::new()
            .group("g", 1 << 20, None, move |key: String| {
                *counted.lock().unwrap().entry(key.clone()).or_default() += 1;
                async move {
                    if key.ends_with('7') {
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                    Ok(format!("v-{key}"))
                }
            })
            .start()
            .await
            .unwrap()
    });
    let callers: Vec<_> = (0..THREADS)
        .map(|t| {
            let node = node.clone();
            std::thread::spawn(move || {
                for i in 0..KEYS {
                    // Each thread walks the keys from its own offset, so
                    // they meet on every key in a different order.
                    let key = format!("k{}", (i + t * 37) % KEYS);
                    let got = futures_lite::future::block_on(node.get("g", &key));
                    assert_eq!(got, Ok(Bytes::from(format!("v-{key}"))));
                }
            })
        })
        .collect();
    for c in callers {
        c.join().unwrap();
    }
    let calls = calls.lock().unwrap();
    assert_eq!(calls.len(), KEYS);
    assert!(calls.values().all(|&n| n == 1), "{calls:?}");
    let s = node.stats("g").unwrap();
    assert_eq!(s.gets, (KEYS * THREADS) as u64);
    assert_eq!(
        (s.loads, s.local_loads, s.local_load_errs),
        (KEYS as u64, KEYS as u64, 0)
    );
    assert_eq!(s.cache_hits + s.loads + s.loads_deduped, s.gets);
    rt.block_on(node.shutdown());
}
