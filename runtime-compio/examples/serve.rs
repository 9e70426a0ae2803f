//! A node on compio (io_uring) serving the group `bench`, whose origin makes
//! a value of VALUE_SIZE bytes from each key, on THREADS threads, each with
//! its own `SO_REUSEPORT` listener (thread-per-core). It is what
//! `benches/scripts/cpu-matrix.py` measures beside the tokio node and
//! memcached.
//!
//! Run: `cargo run --release -p groupcache-compio --example serve -- 127.0.0.1:8001 1 100`
//! (ADDR THREADS VALUE_SIZE); it serves until killed.

use groupcache_compio::{Builder, CompioThreads};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let addr = args
        .next()
        .unwrap_or_else(|| "127.0.0.1:8001".into())
        .parse()?;
    let threads: usize = args.next().map_or(Ok(1), |a| a.parse())?;
    let size: usize = args.next().map_or(Ok(100), |a| a.parse())?;
    let cores = CompioThreads::start(threads)?;
    let runtimes = cores.runtimes();
    let node = futures_lite::future::block_on(
        Builder::with_runtime(runtimes[0].clone())
            .listen(addr)
            .accept_on(runtimes)
            .group("bench", 1 << 30, None, move |key: String| async move {
                // The key, padded to the value size.
                let mut v = key.into_bytes();
                v.resize(size.max(v.len()), b'.');
                Ok(v)
            })
            .start(),
    )?;
    println!(
        "node {} listening on {}",
        node.self_addr(),
        node.local_addr()
    );
    loop {
        std::thread::park();
    }
}
