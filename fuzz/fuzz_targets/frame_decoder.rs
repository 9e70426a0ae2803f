//! Fuzz target `frame_decoder`: see `groupcache_core::testing::fuzz::frame_decoder`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| groupcache_core::testing::fuzz::frame_decoder(data));
