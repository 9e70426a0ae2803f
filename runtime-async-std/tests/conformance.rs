//! The shared adapter conformance suite, on smol and on async-std (each with
//! its feature; `cargo test --all-features` runs both).

#[cfg(feature = "smol")]
mod on_smol {
    use groupcache_async_std::AsyncIo;

    fn run(f: impl std::future::Future<Output = ()>) {
        smol::block_on(f);
    }

    groupcache_driver::conformance_tests!(run, AsyncIo::smol());

    /// The same suite over mutual TLS.
    mod over_tls {
        use super::run;
        use groupcache_async_std::AsyncIo;

        groupcache_driver::conformance_tests!(tls: run, AsyncIo::smol());
    }
}

#[cfg(feature = "async-std")]
mod on_async_std {
    use groupcache_async_std::AsyncIo;

    fn run(f: impl std::future::Future<Output = ()>) {
        async_std::task::block_on(f);
    }

    groupcache_driver::conformance_tests!(run, AsyncIo::async_std());

    /// The same suite over mutual TLS.
    mod over_tls {
        use super::run;
        use groupcache_async_std::AsyncIo;

        groupcache_driver::conformance_tests!(tls: run, AsyncIo::async_std());
    }
}
