//! Fuzz target `cache`: see `groupcache_core::testing::fuzz::cache`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| groupcache_core::testing::fuzz::cache(data));
