//! Where loads run: a loader that answers at once runs in the task that
//! asked, and one that waits runs on the runtime, whatever becomes of the
//! get that started it.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::ThreadId;

use bytes::Bytes;
use groupcache_core::node::GroupConfig;

use super::{bounded, Suite};
use crate::Runtime;

/// A loader that answers at once runs on the thread that polled the get:
/// no hand-off to the runtime's threads and back.
pub async fn instant_loads_run_in_the_getting_task<R: Runtime>(cx: Suite<R>) {
    let threads: Arc<Mutex<Vec<ThreadId>>> = Arc::default();
    let seen = threads.clone();
    let node = (cx.builder())
        .group("p", 1 << 20, None, move |key: String| {
            seen.lock().unwrap().push(std::thread::current().id());
            async move { Ok(format!("v-{key}")) }
        })
        .start()
        .await
        .unwrap();
    let got = bounded(&cx.rt, "get", node.get("p", "a")).await;
    assert_eq!(got, Ok(Bytes::from_static(b"v-a")));
    assert_eq!(*threads.lock().unwrap(), [std::thread::current().id()]);
    assert_eq!(node.stats("p").unwrap().local_loads, 1);
    node.shutdown().await;
}

/// A load that must wait is not tied to the get that started it: that get
/// is dropped, and a later get of the key still gets the one load's value.
pub async fn a_waiting_load_outlives_the_get_that_started_it<R: Runtime>(cx: Suite<R>) {
    let calls = Arc::new(AtomicUsize::new(0));
    let (open_tx, open_rx) = async_channel::bounded::<()>(1);
    let c = calls.clone();
    let node = (cx.builder())
        .group("p", 1 << 20, None, move |key: String| {
            c.fetch_add(1, Ordering::SeqCst);
            let open = open_rx.clone();
            async move {
                let _ = open.recv().await;
                Ok(format!("v-{key}"))
            }
        })
        .start()
        .await
        .unwrap();
    let mut first = Box::pin(node.get("p", "slow"));
    assert_eq!(futures_lite::future::poll_once(&mut first).await, None);
    drop(first);
    let second = node.get("p", "slow");
    let open = async {
        // The second get is in the flight once it joined the first load.
        while node.stats("p").unwrap().loads_deduped < 1 {
            cx.rt.sleep(std::time::Duration::from_millis(1)).await;
        }
        open_tx.send(()).await.unwrap();
    };
    let (got, ()) = bounded(&cx.rt, "get", futures_lite::future::zip(second, open)).await;
    assert_eq!(got, Ok(Bytes::from_static(b"v-slow")));
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    node.shutdown().await;
}

/// Loads queued behind a group's cap, each answering at once, all finish:
/// each one's result starts the next.
pub async fn queued_instant_loads_all_finish<R: Runtime>(cx: Suite<R>) {
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let mut group = GroupConfig::new("q", 1 << 20);
    group.max_loads = 1;
    let node = (cx.builder())
        .group_config(group, move |key: String| {
            c.fetch_add(1, Ordering::SeqCst);
            async move { Ok(format!("v-{key}")) }
        })
        .start()
        .await
        .unwrap();
    let keys: Vec<String> = (0..500).map(|i| format!("k{i}")).collect();
    let got = bounded(&cx.rt, "gets", node.get_many("q", &keys)).await;
    for (k, r) in keys.iter().zip(got) {
        assert_eq!(r, Ok(Bytes::from(format!("v-{k}"))));
    }
    assert_eq!(calls.load(Ordering::SeqCst), keys.len());
    node.shutdown().await;
}
