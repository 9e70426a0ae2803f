//! Thread-per-core serving: the connections a node accepts on
//! `CoreThreads` runtimes run there, and dropping them stops their threads.

use groupcache_driver::core::testing::request_frame;
use groupcache_tokio::{Builder, CoreThreads, Tokio};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[test]
fn accepted_connections_run_on_the_core_threads() {
    let main = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let cores = CoreThreads::start(2).unwrap();
    let runtimes: Vec<Tokio> = cores.runtimes();
    main.block_on(async {
        let node = Builder::new()
            .accept_on(runtimes.clone())
            .group("g", 1 << 20, None, |key: String| async move { Ok(key) })
            .start()
            .await
            .unwrap();
        let mut conns = Vec::new();
        for i in 0..16 {
            let mut s = tokio::net::TcpStream::connect(node.local_addr())
                .await
                .unwrap();
            let key = format!("k{i}");
            s.write_all(&request_frame("g", &key)).await.unwrap();
            let mut header = [0u8; 8];
            s.read_exact(&mut header).await.unwrap();
            let mut body = vec![0u8; u64::from_le_bytes(header) as usize];
            s.read_exact(&mut body).await.unwrap();
            assert!(
                body.windows(key.len()).any(|w| w == key.as_bytes()),
                "{key}: {body:?}"
            );
            conns.push(s);
        }
        // Every connection answered has its task, and each core runtime its
        // accept loop: all of them on the core threads.
        let on_cores: usize = runtimes
            .iter()
            .map(|rt| rt.handle().metrics().num_alive_tasks())
            .sum();
        assert_eq!(on_cores, 2 + conns.len());
        node.shutdown().await;
    });
    // Joins the threads: a hang here fails the test by its timeout.
    drop(cores);
}
