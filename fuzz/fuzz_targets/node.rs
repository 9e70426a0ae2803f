//! Fuzz target `node`: see `groupcache_core::testing::fuzz::node`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| groupcache_core::testing::fuzz::node(data));
