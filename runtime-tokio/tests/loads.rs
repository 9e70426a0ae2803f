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
