//! An object-store group against a real S3 API server (moto, started by
//! each test on a loopback port the OS picks).

use std::sync::Arc;
use std::time::Duration;

use groupcache_object_store::object_store::{path::Path, ObjectStore, ObjectStoreExt, PutPayload};
use groupcache_object_store::testing::Moto;
use groupcache_object_store::ObjectStoreSource;
use groupcache_tokio::{
    Builder, Error, Group, GroupConfig, LoadError, Node, PageConfig, RangeError,
};

fn moto(buckets: &[&str]) -> Moto {
    Moto::start(buckets).unwrap_or_else(|e| panic!("{e}"))
}

async fn put(store: &Arc<dyn ObjectStore>, path: &str, data: &[u8]) {
    store
        .put(&Path::parse(path).unwrap(), PutPayload::from(data.to_vec()))
        .await
        .unwrap();
}

fn source(m: &Moto, url: &str) -> ObjectStoreSource {
    ObjectStoreSource::from_url(url, m.options()).unwrap()
}

/// One node with the paged group "objects" over `source`.
async fn node(source: ObjectStoreSource, page_size: u64) -> Node {
    Builder::new()
        .listen("127.0.0.1:0".parse().unwrap())
        .paged_group(
            GroupConfig::new("objects", 64 << 20),
            PageConfig::new(page_size),
            source,
        )
        .start()
        .await
        .unwrap()
}

fn objects(n: &Node) -> Group {
    n.group("objects").unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whole_objects_and_keys_of_every_shape() {
    let m = moto(&["bkt"]);
    let store = m.store("bkt");
    let odd = ["plain", "with space/ü.txt", "a%2fb", "x:y;z=1"];
    for (i, k) in odd.iter().enumerate() {
        put(
            &store,
            &format!("data/{k}"),
            format!("value {i} of {k}").as_bytes(),
        )
        .await;
    }
    put(&store, "data/empty", b"").await;
    put(&store, "secret", b"outside the prefix").await;
    let n = node(source(&m, "s3://bkt/data"), 4).await;
    let g = objects(&n);
    for (i, k) in odd.iter().enumerate() {
        let want = format!("value {i} of {k}");
        assert_eq!(g.get_range(k, ..).await.unwrap(), want.as_bytes(), "{k}");
        assert_eq!(g.stat(k).await.unwrap().len, want.len() as u64);
    }
    // `a%2fb` is that name, not `a/b`.
    assert!(g.get_range("a/b", ..).await.unwrap_err().is_not_found());
    assert_eq!(g.get_range("empty", ..).await.unwrap(), "");
    assert_eq!(g.stat("empty").await.unwrap().len, 0);
    for bad in ["../secret", "..", "/secret", "a/../../secret", ""] {
        let e = g.get_range(bad, ..).await.unwrap_err();
        assert!(e.is_not_found(), "{bad:?}: {e}");
        assert!(e.to_string().contains("outside the prefix"), "{bad:?}: {e}");
    }
    let e = g.get_range("missing", ..).await.unwrap_err();
    assert!(e.is_not_found(), "{e}");
    // A plain get returns an object that fits in one page, and refuses
    // a larger one rather than load it whole.
    put(&store, "data/small", b"abc").await;
    assert_eq!(g.get("small").await.unwrap(), "abc");
    assert!(
        matches!(g.get("plain").await, Err(Error::Load(m)) if m.contains("larger than a page"))
    );
    n.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ranges_at_page_edges_and_past_the_end() {
    let m = moto(&["bkt"]);
    let data: Vec<u8> = (0..10u8).collect();
    put(&m.store("bkt"), "obj", &data).await;
    let n = node(source(&m, "s3://bkt"), 4).await;
    let g = objects(&n);
    for (a, b) in [(0, 4), (3, 5), (4, 8), (0, 10), (8, 10), (9, 10), (7, 9)] {
        let got = g.get_range("obj", a..b).await.unwrap();
        assert_eq!(&got[..], &data[a as usize..b as usize], "{a}..{b}");
    }
    assert_eq!(&g.get_range("obj", 8..100).await.unwrap()[..], &data[8..]);
    assert_eq!(g.get_range("obj", 10..).await.unwrap(), "");
    assert_eq!(
        g.get_range("obj", 11..).await,
        Err(RangeError::Unsatisfiable { start: 11, len: 10 })
    );
    // Three pages, each loaded once, whatever the ranges asked.
    assert_eq!(g.stats().local_loads, 3);
    n.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_object_replaced_between_two_pages_is_never_stitched() {
    let m = moto(&["bkt"]);
    let store = m.store("bkt");
    put(&store, "obj", b"AAAAAAAA").await;
    let n = node(source(&m, "s3://bkt"), 4).await;
    let g = objects(&n);
    let v1 = g.stat("obj").await.unwrap();
    assert_eq!(g.read_range("obj", &v1, 0..4).await.unwrap(), "AAAA");
    put(&store, "obj", b"BBBBBBBBBB").await;
    // The second page of the old version is no longer to be had.
    assert_eq!(
        g.read_range("obj", &v1, 4..8).await,
        Err(RangeError::Changed)
    );
    // A whole read, though its HEAD is still cached, starts again under
    // the new version: all B, never A and B.
    assert_eq!(g.get_range("obj", ..).await.unwrap(), "BBBBBBBBBB");
    assert_ne!(g.stat("obj").await.unwrap().version, v1.version);
    n.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_bucket_is_a_load_failure_with_the_stores_message() {
    let m = moto(&["bkt"]);
    let s = source(&m, "s3://no-such-bucket/data");
    match s.check().await {
        Err(LoadError::Failed(msg)) => assert!(msg.contains("no-such-bucket"), "{msg}"),
        other => panic!("check gave {other:?}"),
    }
    assert!(source(&m, "s3://bkt").check().await.is_ok());
    let n = node(s, 4).await;
    match objects(&n).get_range("k", ..).await {
        Err(RangeError::Get(Error::Load(msg))) => {
            assert!(
                msg.contains("NoSuchBucket") || msg.contains("bucket"),
                "{msg}"
            )
        }
        other => panic!("{other:?}"),
    }
    n.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_that_stops_answering_fails_within_the_load_timeout() {
    // A "store" that accepts connections and never answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", silent.local_addr().unwrap());
    let opts = groupcache_object_store::testing::options_for(&endpoint);
    let s = ObjectStoreSource::from_url("s3://bkt", opts).unwrap();
    let mut group = GroupConfig::new("objects", 1 << 20);
    group.load_timeout = Duration::from_millis(300);
    let n = Builder::new()
        .listen("127.0.0.1:0".parse().unwrap())
        .paged_group(group, PageConfig::new(4), s)
        .group("other", 1 << 20, None, |k: String| async move {
            Ok::<_, LoadError>(k)
        })
        .start()
        .await
        .unwrap();
    let e = objects(&n).get_range("k", ..).await.unwrap_err();
    assert!(e.to_string().contains("longer than"), "{e}");
    // The node still serves its other group.
    assert_eq!(n.get("other", "hello").await.unwrap(), "hello");
    n.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_load_each_page_once_in_the_cluster() {
    let m = moto(&["bkt"]);
    let data: Vec<u8> = (0..40_000u32).map(|i| (i % 251) as u8).collect();
    put(&m.store("bkt"), "big", &data).await;
    let mut nodes = Vec::new();
    for _ in 0..3 {
        nodes.push(node(source(&m, "s3://bkt"), 1000).await);
    }
    let members: Vec<String> = nodes.iter().map(|n| n.self_addr()).collect();
    for n in &nodes {
        n.set_peers(&members);
    }
    // Every node reads the whole object, and parts of it, at once.
    let mut reads = Vec::new();
    for n in &nodes {
        for range in [0..40_000u64, 999..1001, 12_345..30_000] {
            let g = objects(n);
            reads.push(tokio::spawn(async move {
                (g.get_range("big", range.clone()).await, range)
            }));
        }
    }
    for r in reads {
        let (got, range) = r.await.unwrap();
        assert_eq!(
            &got.unwrap()[..],
            &data[range.start as usize..range.end as usize]
        );
    }
    let loads: u64 = nodes.iter().map(|n| objects(n).stats().local_loads).sum();
    assert_eq!(loads, 40, "40 pages, each loaded once");
    for n in &nodes {
        n.shutdown().await;
    }
}
