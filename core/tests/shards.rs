//! A node whose caches are split into shards answers exactly as one whose
//! caches are whole, for the same inputs: sharding moves where a key is
//! kept, never what a caller sees. (With room for every key, so that
//! eviction, which shards do change, has no part in it.)

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use groupcache_core::node::{
    Config, ConnId, Get, GroupConfig, LoadError, LoadId, Loaded, Node, Output, WriteOp,
};
use groupcache_core::testing::{epoch, request_frame};
use proptest::prelude::*;

const GROUP: &str = "g";
const KEYS: usize = 24;

#[derive(Debug, Clone)]
enum Op {
    Get(usize),
    /// A request for the key on the client's connection.
    Serve(usize),
    /// Finishes the n-th load under way (modulo their count).
    Finish(usize, Outcome),
    Set(usize, usize, Option<u64>),
    Remove(usize),
    Purge,
    Advance(u64),
}

#[derive(Debug, Clone)]
enum Outcome {
    Value(usize, Option<u64>),
    NotFound,
    Failed,
}

fn op() -> impl Strategy<Value = Op> {
    let key = 0..KEYS;
    prop_oneof![
        6 => key.clone().prop_map(Op::Get),
        3 => key.clone().prop_map(Op::Serve),
        5 => (any::<usize>(), prop_oneof![
            4 => (0..200usize, proptest::option::of(1..3000u64)).prop_map(|(n, t)| Outcome::Value(n, t)),
            1 => Just(Outcome::NotFound),
            1 => Just(Outcome::Failed),
        ]).prop_map(|(i, o)| Op::Finish(i, o)),
        2 => (key.clone(), 0..200usize, proptest::option::of(1..3000u64))
            .prop_map(|(k, n, t)| Op::Set(k, n, t)),
        1 => key.prop_map(Op::Remove),
        1 => Just(Op::Purge),
        2 => (1..1500u64).prop_map(Op::Advance),
    ]
}

fn node(shards: usize) -> Node {
    let mut cfg = Config::new("self:1");
    cfg.cache_shards = shards;
    cfg.min_shard_bytes = 0;
    let mut n = Node::new(cfg);
    // Room for every key many times over in each shard.
    let mut g = GroupConfig::new(GROUP, 1 << 20).ttl(Duration::from_secs(2));
    g.max_loads = 4;
    n.add_group(g).unwrap();
    n
}

struct Pair {
    nodes: [Node; 2],
    conn: [ConnId; 2],
    loads: Vec<LoadId>,
    now: std::time::Instant,
}

impl Pair {
    fn new(shards: usize) -> Self {
        let now = epoch();
        let mut nodes = [node(1), node(shards)];
        let client = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 9));
        let conn = [
            nodes[0].accept(now, client).unwrap(),
            nodes[1].accept(now, client).unwrap(),
        ];
        let mut p = Pair {
            nodes,
            conn,
            loads: Vec::new(),
            now,
        };
        p.drain();
        p
    }

    /// Gives the same input to both and checks that they answer alike.
    fn both<T: PartialEq + std::fmt::Debug>(&mut self, mut f: impl FnMut(&mut Node, ConnId) -> T) {
        let a = f(&mut self.nodes[0], self.conn[0]);
        let b = f(&mut self.nodes[1], self.conn[1]);
        assert_eq!(a, b, "direct answers differ");
        self.drain();
    }

    fn drain(&mut self) {
        let [a, b] = &mut self.nodes;
        loop {
            let (x, y) = (a.poll_output(), b.poll_output());
            assert_eq!(x, y, "outputs differ");
            let Some(o) = x else { break };
            if let Output::Load { id, .. } = o {
                self.loads.push(id);
            }
        }
        a.validate().unwrap();
        b.validate().unwrap();
    }

    fn apply(&mut self, op: &Op) {
        let now = self.now;
        match op {
            Op::Get(k) => self.both(|n, _| n.get(now, GROUP, &key(*k))),
            Op::Serve(k) => self.both(|n, c| {
                n.handle_data(now, c, &request_frame(GROUP, &key(*k)));
            }),
            Op::Finish(i, outcome) => {
                if self.loads.is_empty() {
                    return;
                }
                let id = self.loads.remove(i % self.loads.len());
                let result = match outcome {
                    Outcome::Value(len, ttl) => {
                        let l = Loaded::new(vec![b'v'; *len]);
                        Ok(match ttl {
                            Some(ms) => l.ttl(Duration::from_millis(*ms)),
                            None => l,
                        })
                    }
                    Outcome::NotFound => Err(LoadError::NotFound("gone".into())),
                    Outcome::Failed => Err(LoadError::Failed("down".into())),
                };
                self.both(|n, _| n.handle_load(now, id, result.clone()));
            }
            Op::Set(k, len, ttl) => {
                let op = WriteOp::Set {
                    key: Arc::from(key(*k)),
                    value: Bytes::from(vec![b's'; *len]),
                    ttl: ttl.map(Duration::from_millis),
                };
                self.both(|n, _| n.write(now, GROUP, op.clone()));
            }
            Op::Remove(k) => {
                let op = WriteOp::Remove {
                    key: Arc::from(key(*k)),
                };
                self.both(|n, _| n.write(now, GROUP, op.clone()));
            }
            Op::Purge => self.both(|n, _| n.write(now, GROUP, WriteOp::Purge)),
            Op::Advance(ms) => {
                self.now += Duration::from_millis(*ms);
                let now = self.now;
                self.both(|n, _| n.handle_timeout(now));
            }
        }
    }
}

fn key(k: usize) -> String {
    format!("key-{k}")
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn a_sharded_node_answers_as_an_unsharded_one(
        shards in 2..9usize,
        ops in proptest::collection::vec(op(), 1..120),
    ) {
        let mut p = Pair::new(shards);
        for op in &ops {
            p.apply(op);
        }
        // What is held (dead items of updates, expired items not yet
        // swept) depends on how items fall into segments, and so does when
        // the timer asks for a sweep: every count of what callers saw must
        // match.
        let stats = |n: &Node| {
            let mut s = n.stats(GROUP).unwrap();
            for c in [&mut s.main, &mut s.hot] {
                (c.bytes, c.items, c.expirations) = (0, 0, 0);
            }
            s
        };
        prop_assert_eq!(stats(&p.nodes[0]), stats(&p.nodes[1]));
        prop_assert_eq!(p.nodes[1].caches(GROUP).unwrap().shards(), shards);
    }
}

/// The shard count follows the budget: never a shard under the minimum.
#[test]
fn a_small_group_keeps_fewer_shards() {
    let mut cfg = Config::new("self:1");
    cfg.cache_shards = 16;
    let mut n = Node::new(cfg.clone());
    n.add_group(GroupConfig::new("small", 1 << 20)).unwrap();
    n.add_group(GroupConfig::new("mid", 10 * cfg.min_shard_bytes))
        .unwrap();
    n.add_group(GroupConfig::new("big", 1 << 30)).unwrap();
    // Pages of 1 MiB: a shard holds at least 16 of them.
    let mut pages = GroupConfig::new("pages", 64 << 20);
    pages.max_value = 1 << 20;
    n.add_group(pages).unwrap();
    let shards = |g: &str| n.caches(g).unwrap().shards();
    assert_eq!((shards("small"), shards("mid"), shards("big")), (1, 10, 16));
    assert_eq!(shards("pages"), 4);
}

/// A get is counted once, whether it hits in the shared caches or misses
/// there and goes on under the node; one that missed there and finds the
/// value landed before it took the node is a hit, not a second load.
#[test]
fn gets_count_once_on_either_path() {
    let now = epoch();
    let mut n = node(4);
    let caches = n.caches(GROUP).unwrap();
    // Caller A misses and starts the load.
    assert!(caches.get("k", now).is_none());
    let Get::Pending(_) = n.get_missed(now, GROUP, "k") else {
        panic!("a miss loads");
    };
    let id = match n.poll_output() {
        Some(Output::Load { id, .. }) => id,
        o => panic!("expected a load, got {o:?}"),
    };
    // Caller B misses too; the load lands before B takes the node.
    assert!(caches.get("k", now).is_none());
    n.handle_load(now, id, Ok(Loaded::new("v")));
    assert_eq!(
        n.get_missed(now, GROUP, "k"),
        Get::Ready(Ok(Bytes::from_static(b"v")))
    );
    assert_eq!(
        n.poll_output().map(|o| matches!(o, Output::Done { .. })),
        Some(true)
    );
    assert_eq!(n.poll_output(), None, "no second load");
    // Caller C hits without the node.
    assert_eq!(caches.get("k", now).unwrap().value, "v");
    let s = n.stats(GROUP).unwrap();
    assert_eq!((s.gets, s.cache_hits, s.loads), (3, 2, 1));
}
