//! Replays the checked-in fuzz corpus (`fuzz/corpus/<target>/`) through the
//! fuzz targets' bodies, so stable `cargo test` catches regressions that a
//! fuzzer once found, without nightly.

use std::path::PathBuf;

use groupcache_core::testing::fuzz;

fn replay(target: &str, body: fn(&[u8])) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target);
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        let data = std::fs::read(&path).unwrap();
        let outcome = std::panic::catch_unwind(|| body(&data));
        assert!(outcome.is_ok(), "{target}: {} fails", path.display());
        n += 1;
    }
    assert!(n > 0, "empty corpus for {target}");
}

#[test]
fn frame_decoder_corpus() {
    replay("frame_decoder", fuzz::frame_decoder);
}

#[test]
fn wire_corpus() {
    replay("wire", fuzz::wire);
}

#[test]
fn cache_corpus() {
    replay("cache", fuzz::cache);
}

#[test]
fn node_corpus() {
    replay("node", fuzz::node);
}

#[test]
fn cluster_corpus() {
    replay("cluster", fuzz::cluster);
}
