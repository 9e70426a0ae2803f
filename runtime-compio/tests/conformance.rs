//! The shared adapter conformance suite, on compio (io_uring on Linux).

use groupcache_compio::Compio;

fn run(f: impl std::future::Future<Output = ()>) {
    groupcache_compio::runtime()
        .expect("a compio runtime")
        .block_on(f);
}

groupcache_driver::conformance_tests!(run, Compio::current());

/// The same suite over mutual TLS.
mod over_tls {
    use super::run;
    use groupcache_compio::Compio;

    groupcache_driver::conformance_tests!(tls: run, Compio::current());
}
