//! Fuzz target `cluster`: see `groupcache_core::testing::fuzz::cluster`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| groupcache_core::testing::fuzz::cluster(data));
