//! The shared adapter conformance suite, on tokio.

use std::future::Future;

use groupcache_tokio::Tokio;

fn run(f: impl Future<Output = ()>) {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(f);
}

groupcache_driver::conformance_tests!(run, Tokio::current());

/// The same suite over mutual TLS.
mod over_tls {
    use super::run;
    use groupcache_tokio::Tokio;

    groupcache_driver::conformance_tests!(tls: run, Tokio::current());
}
