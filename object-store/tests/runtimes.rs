//! The object-store source serves nodes on smol and compio as it does on
//! tokio: its requests run on a tokio runtime of its own.

use groupcache_driver::{Builder, GroupConfig, PageConfig, Runtime};
use groupcache_object_store::object_store::{path::Path, ObjectStoreExt, PutPayload};
use groupcache_object_store::testing::Moto;
use groupcache_object_store::ObjectStoreSource;

const DATA: &[u8] = b"0123456789abcdefghij";

/// moto with one 20-byte object, "obj", in bucket "bkt", and a source on it.
fn setup() -> (Moto, ObjectStoreSource) {
    let m = Moto::start(&["bkt"]).unwrap_or_else(|e| panic!("{e}"));
    let store = m.store("bkt");
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(store.put(&Path::parse("obj").unwrap(), PutPayload::from_static(DATA)))
        .unwrap();
    let source = ObjectStoreSource::from_url("s3://bkt", m.options()).unwrap();
    (m, source)
}

/// A node of `builder` with a paged group over `source` (pages of 8
/// bytes) reads bytes 5..15 of "obj": two pages, each loaded once.
async fn read_through<R: Runtime>(builder: Builder<R>, source: ObjectStoreSource) {
    let n = builder
        .listen("127.0.0.1:0".parse().unwrap())
        .paged_group(
            GroupConfig::new("objects", 1 << 20),
            PageConfig::new(8),
            source,
        )
        .start()
        .await
        .unwrap();
    let g = n.group("objects").unwrap();
    assert_eq!(&g.get_range("obj", 5..15).await.unwrap()[..], &DATA[5..15]);
    assert_eq!(g.stats().local_loads, 2);
    n.shutdown().await;
}

#[test]
fn serves_a_node_on_smol() {
    let (_moto, source) = setup();
    smol::block_on(read_through(groupcache_async_std::Builder::new(), source));
}

#[test]
fn serves_a_node_on_compio() {
    use groupcache_compio::{Builder, Compio};
    let (_moto, source) = setup();
    groupcache_compio::runtime()
        .unwrap()
        // The runtime value is the current thread's: made inside.
        .block_on(async { read_through(Builder::with_runtime(Compio::current()), source).await });
}
