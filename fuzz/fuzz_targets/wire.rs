//! Fuzz target `wire`: see `groupcache_core::testing::fuzz::wire`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| groupcache_core::testing::fuzz::wire(data));
