//! What the compio adapter adds to the conformance suite: its threads, and
//! the bounds of a connection whose peer never reads.

use std::io::Read;
use std::time::Duration;

use futures_lite::AsyncWriteExt;
use groupcache_compio::{Compio, CompioThreads};
use groupcache_driver::{timeout, Runtime};

#[test]
fn compio_threads_run_what_is_spawned_on_them_and_stop_when_dropped() {
    let threads = CompioThreads::start(2).unwrap();
    let runtimes = threads.runtimes();
    assert_eq!(runtimes.len(), 2);
    let (tx, rx) = std::sync::mpsc::channel();
    for rt in &runtimes {
        let tx = tx.clone();
        // Spawned from this (non-compio) thread: runs on the value's home.
        rt.spawn(async move {
            let name = std::thread::current().name().map(str::to_string);
            tx.send(name).unwrap();
        });
    }
    let mut names: Vec<_> = (0..2).map(|_| rx.recv().unwrap()).collect();
    names.sort();
    assert_eq!(
        names,
        [
            Some("groupcache-compio-0".to_string()),
            Some("groupcache-compio-1".to_string())
        ]
    );
    // Joins both threads: a hang here fails the test by its timeout.
    drop(threads);
}

#[test]
fn writes_to_a_peer_that_never_reads_stall_at_a_bound_and_drop_closes() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    groupcache_compio::runtime().unwrap().block_on(async {
        let rt = Compio::current();
        let stream = rt.connect(addr).await.unwrap();
        let (mut peer, _) = listener.accept().unwrap();
        let (r, mut w) = Compio::split(stream);
        let chunk = vec![7u8; 64 << 10];
        let mut accepted = 0usize;
        // The kernel's buffers fill, then the adapter's queue: writes stop
        // being accepted instead of queueing without end.
        while let Some(n) = timeout(&rt, Duration::from_millis(300), w.write(&chunk)).await {
            accepted += n.unwrap();
            assert!(accepted < 256 << 20, "{accepted} bytes accepted unread");
        }
        assert!(accepted >= 1 << 20, "only {accepted} bytes before stalling");
        // Dropping both halves cancels the stalled write and closes the
        // socket: the peer reads what was sent, then the end.
        drop((r, w));
        let reader = std::thread::spawn(move || {
            peer.set_read_timeout(Some(Duration::from_secs(20)))
                .unwrap();
            let mut total = 0usize;
            let mut buf = vec![0u8; 1 << 20];
            loop {
                match peer.read(&mut buf) {
                    Ok(0) => return Ok(total),
                    Ok(n) => total += n,
                    Err(e) => return Err(e),
                }
            }
        });
        // The runtime must keep turning for the tasks to see their halves
        // gone: wait for the reader without blocking it.
        while !reader.is_finished() {
            rt.sleep(Duration::from_millis(10)).await;
        }
        let read = reader.join().unwrap().expect("the socket closes");
        assert!(read <= accepted, "{read} read, {accepted} accepted");
    });
}
