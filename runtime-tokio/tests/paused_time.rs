//! Timeouts on tokio's paused clock: the driver takes its time from the
//! runtime, so half a minute of load timeout passes in no real time.

use std::time::Duration;

use groupcache_tokio::{Builder, Error, GroupConfig, LoadError};

#[tokio::test(start_paused = true)]
async fn a_hung_load_ends_at_the_load_timeout_on_virtual_time() {
    let node = Builder::new()
        .group_config(GroupConfig::new("h", 1 << 20), |_key: String| async {
            std::future::pending::<Result<Vec<u8>, LoadError>>().await
        })
        .start()
        .await
        .unwrap();
    let start = tokio::time::Instant::now();
    match node.get("h", "k").await {
        Err(Error::Load(m)) => assert!(m.contains("h/k: load timed out after 30s"), "{m}"),
        other => panic!("{other:?}"),
    }
    let took = start.elapsed();
    assert!(
        took >= Duration::from_secs(30) && took < Duration::from_secs(31),
        "{took:?}"
    );
    assert_eq!(node.stats("h").unwrap().load_timeouts, 1);
    node.shutdown().await;
}
