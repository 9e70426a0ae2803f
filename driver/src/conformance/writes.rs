//! Writes over real TCP: set, remove and purge through any node and
//! through the non-member client, and peers that cannot be told.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;

use super::bounded;
use super::Suite;
use crate::{Error, Node, Runtime};

/// Key versions at the origin: a write bumps a key first, as an application
/// changes its database before the cache.
#[derive(Clone, Default)]
struct Origin {
    versions: Arc<Mutex<HashMap<String, u32>>>,
    loads: Arc<Mutex<usize>>,
}

impl Origin {
    fn value(&self, key: &str) -> Bytes {
        let v = self.versions.lock().unwrap().get(key).copied().unwrap_or(0);
        Bytes::from(format!("{key}@{v}"))
    }

    fn bump(&self, key: &str) -> Bytes {
        *self.versions.lock().unwrap().entry(key.into()).or_default() += 1;
        self.value(key)
    }

    fn loads(&self) -> usize {
        *self.loads.lock().unwrap()
    }
}

/// Nodes with the group "v" over one versioned origin; `extra` peers (that
/// may not exist) are added to every peer list.
async fn versioned_cluster<R: Runtime>(
    cx: &Suite<R>,
    n: usize,
    extra: &[String],
) -> (Vec<Node<R>>, Origin) {
    let origin = Origin::default();
    let mut nodes = Vec::new();
    for _ in 0..n {
        let o = origin.clone();
        let node = cx
            .builder()
            .configure(|c| c.request_timeout = Duration::from_millis(500))
            .configure(|c| c.connect_timeout = Duration::from_millis(500))
            .group("v", 1 << 20, None, move |key: String| {
                *o.loads.lock().unwrap() += 1;
                let v = o.value(&key);
                async move { Ok::<_, crate::LoadError>(v) }
            })
            .start()
            .await
            .expect("node starts");
        nodes.push(node);
    }
    let mut addrs: Vec<String> = nodes.iter().map(|n| n.self_addr()).collect();
    addrs.extend_from_slice(extra);
    for n in &nodes {
        n.set_peers(&addrs);
    }
    (nodes, origin)
}

/// A key the ring gives to `owner`.
fn key_owned_by<R: Runtime>(nodes: &[Node<R>], owner: &str) -> String {
    (0..)
        .map(|i| format!("key-{i}"))
        .find(|k| nodes[0].owner(k).as_deref() == Some(owner))
        .expect("every member owns some key")
}

async fn get_everywhere<R: Runtime>(rt: &R, nodes: &[Node<R>], key: &str) -> Vec<Bytes> {
    let mut out = Vec::new();
    for n in nodes {
        out.push(bounded(rt, "get", n.get("v", key)).await.expect("get"));
    }
    out
}

/// Set, remove and purge through each node of three: afterwards every node
/// answers the new value, and a set value needs no origin load.
pub async fn writes_through_any_node_reach_every_node<R: Runtime>(cx: Suite<R>) {
    let rt = cx.rt.clone();
    let (nodes, origin) = versioned_cluster(&cx, 3, &[]).await;
    for via in 0..3 {
        let owner = nodes[(via + 1) % 3].self_addr();
        let key = key_owned_by(&nodes, &owner);
        let old = get_everywhere(&rt, &nodes, &key).await;
        assert!(old.windows(2).all(|w| w[0] == w[1]));
        // Remove: every node forgets, the next gets load the new version.
        let new = origin.bump(&key);
        let g = nodes[via].group("v").unwrap();
        let r = bounded(&rt, "remove", g.remove(&key))
            .await
            .expect("remove");
        assert!(r.not_reached.is_empty(), "{r:?}");
        assert_eq!(get_everywhere(&rt, &nodes, &key).await, vec![new; 3]);
        // Set: stored at the owner, fetched by the others, no load.
        let loads = origin.loads();
        let set = Bytes::from(format!("set via {via}"));
        let r = bounded(&rt, "set", g.set(&key, set.clone(), None)).await;
        assert!(r.expect("set").not_reached.is_empty());
        assert_eq!(get_everywhere(&rt, &nodes, &key).await, vec![set; 3]);
        assert_eq!(origin.loads(), loads, "a set value needs no origin load");
        // Purge: every node forgets the whole group.
        let newer = origin.bump(&key);
        let r = bounded(&rt, "purge", g.purge()).await.expect("purge");
        assert!(r.not_reached.is_empty());
        assert_eq!(get_everywhere(&rt, &nodes, &key).await, vec![newer; 3]);
        let stats = g.stats();
        assert_eq!((stats.sets, stats.removes, stats.purges), (1, 1, 1));
    }
    for n in &nodes {
        n.shutdown().await;
    }
}

/// The non-member client writes through a node, and a node that is not
/// there is a typed error, in bounded time.
pub async fn client_writes_through_a_node<R: Runtime>(cx: Suite<R>) {
    let rt = cx.rt.clone();
    let (nodes, origin) = versioned_cluster(&cx, 2, &[]).await;
    let client = cx.client(nodes[0].local_addr().to_string());
    let key = key_owned_by(&nodes, &nodes[1].self_addr());
    assert_eq!(
        bounded(&rt, "client get", client.get("v", &key)).await,
        Ok(origin.value(&key))
    );
    let r = bounded(&rt, "client set", client.set("v", &key, "S", None)).await;
    assert!(r.expect("set").not_reached.is_empty());
    assert_eq!(
        get_everywhere(&rt, &nodes, &key).await,
        vec![Bytes::from("S"); 2]
    );
    let new = origin.bump(&key);
    let r = bounded(&rt, "client remove", client.remove("v", &key)).await;
    assert!(r.expect("remove").not_reached.is_empty());
    assert_eq!(get_everywhere(&rt, &nodes, &key).await, vec![new; 2]);
    let r = bounded(&rt, "client purge", client.purge("nope")).await;
    assert!(matches!(r, Err(Error::NoGroup(_))), "{r:?}");
    // Nothing listens on a port just freed.
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .to_string();
    let nobody = cx.client(dead);
    let r = bounded(&rt, "dead get", nobody.get("v", "k")).await;
    assert!(matches!(r, Err(Error::Unreachable(_))), "{r:?}");
    let r = bounded(&rt, "dead remove", nobody.remove("v", "k")).await;
    assert!(matches!(r, Err(Error::Unreachable(_))), "{r:?}");
    for n in &nodes {
        n.shutdown().await;
    }
}

/// A member that cannot be told is named; a write whose owner cannot be
/// told fails, naming it.
pub async fn writes_name_the_peers_they_could_not_reach<R: Runtime>(cx: Suite<R>) {
    let rt = cx.rt.clone();
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .to_string();
    let (nodes, _) = versioned_cluster(&cx, 2, std::slice::from_ref(&dead)).await;
    let g = nodes[0].group("v").unwrap();
    let live = key_owned_by(&nodes, &nodes[1].self_addr());
    let r = bounded(&rt, "remove", g.remove(&live))
        .await
        .expect("remove");
    assert_eq!(r.not_reached, vec![Arc::<str>::from(dead.as_str())]);
    let theirs = key_owned_by(&nodes, &dead);
    match bounded(&rt, "set", g.set(&theirs, "x", None)).await {
        Err(Error::Write(m)) => assert!(m.contains(&dead), "{m}"),
        other => panic!("{other:?}"),
    }
    for n in &nodes {
        n.shutdown().await;
    }
}
