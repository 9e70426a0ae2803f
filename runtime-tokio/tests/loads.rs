//! A load polled on the caller's own thread, outside the runtime's workers
//! (a caller's `block_on`), still runs in tokio's context, so a loader may
//! use tokio's timers and IO.

use std::time::Duration;

use bytes::Bytes;
use groupcache_tokio::{Builder, Node};

/// A tokio runtime of `workers` threads, its timers and IO on: the
/// node's, while the callers are threads of their own.
fn runtime(workers: usize) -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn a_loader_using_tokio_timers_serves_callers_outside_the_runtime() {
    let rt = runtime(2);
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
    let rt = runtime(2);
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

/// A get that joins a claimed load (the claim's loader still running on
/// another caller's thread) is answered when the claim lands: the claim
/// lands through the node, which answers the claiming get at once and the
/// joined one through its outputs, and those must be carried out then,
/// not whenever the node is next entered. Before, the joined get waited
/// until another get came along, forever if none did.
#[test]
fn a_get_that_joined_a_claimed_load_is_answered_when_it_lands() {
    use std::sync::mpsc;
    use std::sync::{Arc, OnceLock};
    use std::time::Instant;

    let rt = runtime(2);
    let (started_tx, started) = mpsc::channel::<()>();
    let me: Arc<OnceLock<Node>> = Arc::default();
    let seen = me.clone();
    let node: Node = rt.block_on(async {
        Builder::new()
            .group("g", 1 << 20, None, move |key: String| {
                // The loader's first call runs on the claiming caller's
                // thread, before its future is polled once: hold the claim
                // open until the other get has joined its flight.
                started_tx.send(()).unwrap();
                let node = seen.get().expect("set before any get");
                #[allow(clippy::disallowed_methods)] // a guard, not a measure
                let give_up = Instant::now() + Duration::from_secs(60);
                while node.stats("g").unwrap().loads_deduped == 0 {
                    #[allow(clippy::disallowed_methods)]
                    let now = Instant::now();
                    assert!(now < give_up, "the second get never joined");
                    std::thread::yield_now();
                }
                async move { Ok(format!("v-{key}")) }
            })
            .start()
            .await
            .unwrap()
    });
    me.set(node.clone()).ok().unwrap();
    let claimer = node.clone();
    let a = std::thread::spawn(move || futures_lite::future::block_on(claimer.get("g", "k")));
    started.recv().unwrap();
    let (joined_tx, joined) = mpsc::channel();
    let joiner = node.clone();
    std::thread::spawn(move || {
        let got = futures_lite::future::block_on(joiner.get("g", "k"));
        joined_tx.send(got).unwrap();
    });
    assert_eq!(a.join().unwrap(), Ok(Bytes::from_static(b"v-k")));
    // Nothing else enters the node now: the joined get's answer must
    // already be on its way.
    let got = joined
        .recv_timeout(Duration::from_secs(60))
        .expect("the joined get was never answered");
    assert_eq!(got, Ok(Bytes::from_static(b"v-k")));
    let s = node.stats("g").unwrap();
    assert_eq!((s.gets, s.loads, s.loads_deduped), (2, 1, 1));
    rt.block_on(node.shutdown());
}

/// A loader that panics at once, in its call or in its future's first
/// poll (both on the caller's thread), fails that get with the panic's
/// message and leaves the node serving: the same key loads again, and
/// other keys load.
#[test]
fn a_loader_that_panics_at_once_fails_only_that_get() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    let rt = runtime(1);
    let calls = Arc::new(AtomicUsize::new(0));
    let node: Node = rt.block_on(async {
        Builder::new()
            .group("g", 1 << 20, None, move |key: String| {
                let first = calls.fetch_add(1, Ordering::SeqCst) < 2;
                if first && key == "call" {
                    panic!("in the call");
                }
                async move {
                    if first && key == "poll" {
                        panic!("in the poll");
                    }
                    Ok(format!("v-{key}"))
                }
            })
            .start()
            .await
            .unwrap()
    });
    let get = |key: &str| futures_lite::future::block_on(node.get("g", key));
    for (key, msg) in [("call", "in the call"), ("poll", "in the poll")] {
        let err = get(key).unwrap_err().to_string();
        assert!(
            err.contains(&format!("g/{key}: loader panicked: {msg}")),
            "{err}"
        );
    }
    assert_eq!(get("call"), Ok(Bytes::from_static(b"v-call")));
    assert_eq!(get("other"), Ok(Bytes::from_static(b"v-other")));
    let s = node.stats("g").unwrap();
    assert_eq!((s.local_loads, s.local_load_errs), (2, 2));
    rt.block_on(node.shutdown());
}
