//! A node whose misses claim their loads ([`GroupCaches::claim`]) answers
//! every caller exactly as one whose misses all go through the node, for
//! the same inputs: claims move where a load is decided, never what a
//! caller sees, what is cached, or what the counters say.
//!
//! The claiming node runs its claims as the driver does: a loader that
//! answers at once lands in the shard ([`GroupCaches::land_claimed`]), one
//! that waits is adopted ([`Node::adopt`]). Loads are matched by key, since
//! the two nodes number them differently.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use groupcache_core::node::{
    Claim, Config, Error, Get, GetId, GroupCaches, GroupConfig, Landed, LoadError, LoadId, Loaded,
    Node, Output, WriteOp, Written,
};
use groupcache_core::testing::epoch;
use proptest::prelude::*;

const GROUP: &str = "g";
const KEYS: usize = 12;

#[derive(Debug, Clone)]
enum Op {
    /// A get whose load, if it needs one, waits on its origin.
    Get(usize),
    /// A get whose load, if it needs one, answers at once with this.
    GetAtOnce(usize, Outcome),
    /// Finishes the n-th load under way (modulo their count).
    Finish(usize, Outcome),
    Set(usize, usize),
    Remove(usize),
    Purge,
    Advance(u64),
}

#[derive(Debug, Clone)]
enum Outcome {
    Value(usize),
    NotFound,
    TooLarge,
}

impl Outcome {
    fn result(&self) -> Result<Loaded, LoadError> {
        match self {
            Outcome::Value(n) => Ok(Loaded::new(vec![b'v'; *n])),
            Outcome::NotFound => Err(LoadError::NotFound("gone".into())),
            Outcome::TooLarge => Ok(Loaded::new(vec![b'x'; MAX_VALUE + 1])),
        }
    }
}

const MAX_VALUE: usize = 300;

fn outcome() -> impl Strategy<Value = Outcome> {
    prop_oneof![
        4 => (0..200usize).prop_map(Outcome::Value),
        1 => Just(Outcome::NotFound),
        1 => Just(Outcome::TooLarge),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    let key = 0..KEYS;
    prop_oneof![
        4 => key.clone().prop_map(Op::Get),
        4 => (key.clone(), outcome()).prop_map(|(k, o)| Op::GetAtOnce(k, o)),
        5 => (any::<usize>(), outcome()).prop_map(|(i, o)| Op::Finish(i, o)),
        2 => (key.clone(), 0..200usize).prop_map(|(k, n)| Op::Set(k, n)),
        1 => key.prop_map(Op::Remove),
        1 => Just(Op::Purge),
        2 => (1..1500u64).prop_map(Op::Advance),
    ]
}

fn node(max_loads: usize) -> Node {
    let mut cfg = Config::new("self:1");
    cfg.cache_shards = 3;
    cfg.min_shard_bytes = 0;
    let mut n = Node::new(cfg);
    let mut g = GroupConfig::new(GROUP, 1 << 20).ttl(Duration::from_secs(2));
    (g.max_loads, g.max_value) = (max_loads, MAX_VALUE);
    g.load_timeout = Duration::from_secs(3);
    n.add_group(g).unwrap();
    n
}

/// One node and what its callers saw.
struct Side {
    node: Node,
    /// Gets waiting, by id: the op that started each.
    waiting: BTreeMap<GetId, usize>,
    /// Loads under way, by key.
    loads: BTreeMap<String, LoadId>,
    /// Each get op's answer.
    answers: BTreeMap<usize, Result<Bytes, Error>>,
}

impl Side {
    fn new(max_loads: usize) -> Self {
        Side {
            node: node(max_loads),
            waiting: BTreeMap::new(),
            loads: BTreeMap::new(),
            answers: BTreeMap::new(),
        }
    }

    fn got(&mut self, op: usize, g: Get) {
        match g {
            Get::Ready(r) => {
                self.answers.insert(op, r);
            }
            Get::Pending(id) => {
                self.waiting.insert(id, op);
            }
        }
    }

    /// Carries out the outputs; a load a get wanted at once is finished
    /// at once with `at_once`.
    fn drain(&mut self, now: Instant, at_once: Option<(&str, &Outcome)>) {
        while let Some(o) = self.node.poll_output() {
            match o {
                Output::Load { id, key, .. } => match at_once {
                    Some((k, outcome)) if *k == *key => {
                        self.node.handle_load(now, id, outcome.result());
                    }
                    _ => {
                        self.loads.insert(key.to_string(), id);
                    }
                },
                Output::CancelLoad { id } => self.loads.retain(|_, l| *l != id),
                Output::Done { get, result } => {
                    let op = self.waiting.remove(&get).expect("a get waited");
                    self.answers.insert(op, result);
                }
                _ => {}
            }
        }
        self.node.validate().unwrap();
    }

    /// A get through the node alone.
    fn get(&mut self, now: Instant, op: usize, key: &str) {
        let g = self.node.get(now, GROUP, key);
        self.got(op, g);
    }

    /// A get that claims, as the driver's does.
    fn claim(&mut self, now: Instant, op: usize, key: &str, at_once: Option<&Outcome>) {
        let caches: Arc<GroupCaches> = self.node.caches(GROUP).unwrap();
        let g = match caches.claim(key, now) {
            Claim::Hit(hit) => Get::Ready(Ok(hit.value)),
            Claim::Node => self.node.get_missed(now, GROUP, key),
            Claim::Load(claimed) => match at_once {
                Some(outcome) => match caches.land_claimed(key, claimed, now, outcome.result()) {
                    Landed::Done { result, wake } => {
                        if wake {
                            self.node.wake(now);
                        }
                        Get::Ready(result)
                    }
                    Landed::Node(c, r) => self.node.land_claimed(now, GROUP, key, c, r),
                },
                None => {
                    let id = claimed.id;
                    let get = self
                        .node
                        .adopt(now, GROUP, key, claimed)
                        .expect("just claimed");
                    self.loads.insert(key.to_string(), id);
                    Get::Pending(get)
                }
            },
        };
        self.got(op, g);
    }
}

fn key(k: usize) -> String {
    format!("key-{k}")
}

fn write(s: &mut Side, now: Instant, op: &WriteOp) {
    let Written::Ready(Ok(_)) = s.node.write(now, GROUP, op.clone()) else {
        panic!("a node alone writes at once");
    };
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn a_node_whose_misses_claim_answers_as_one_whose_misses_do_not(
        max_loads in 1..4usize,
        ops in proptest::collection::vec(op(), 1..120),
    ) {
        let mut now = epoch();
        let [mut a, mut b] = [Side::new(max_loads), Side::new(max_loads)];
        for (i, op) in ops.iter().enumerate() {
            match op {
                Op::Get(k) => {
                    a.get(now, i, &key(*k));
                    b.claim(now, i, &key(*k), None);
                    a.drain(now, None);
                    b.drain(now, None);
                }
                Op::GetAtOnce(k, outcome) => {
                    a.get(now, i, &key(*k));
                    b.claim(now, i, &key(*k), Some(outcome));
                    a.drain(now, Some((&key(*k), outcome)));
                    b.drain(now, Some((&key(*k), outcome)));
                }
                Op::Finish(n, outcome) => {
                    if a.loads.is_empty() {
                        prop_assert!(b.loads.is_empty());
                        continue;
                    }
                    let k = a.loads.keys().nth(n % a.loads.len()).unwrap().clone();
                    let (ia, ib) = (a.loads.remove(&k).unwrap(), b.loads.remove(&k).unwrap());
                    a.node.handle_load(now, ia, outcome.result());
                    b.node.handle_load(now, ib, outcome.result());
                    a.drain(now, None);
                    b.drain(now, None);
                }
                Op::Set(k, n) => {
                    let op = WriteOp::Set {
                        key: Arc::from(key(*k)),
                        value: Bytes::from(vec![b's'; *n]),
                        ttl: None,
                    };
                    write(&mut a, now, &op);
                    write(&mut b, now, &op);
                    a.drain(now, None);
                    b.drain(now, None);
                }
                Op::Remove(k) => {
                    let op = WriteOp::Remove { key: Arc::from(key(*k)) };
                    write(&mut a, now, &op);
                    write(&mut b, now, &op);
                    a.drain(now, None);
                    b.drain(now, None);
                }
                Op::Purge => {
                    write(&mut a, now, &WriteOp::Purge);
                    write(&mut b, now, &WriteOp::Purge);
                    a.drain(now, None);
                    b.drain(now, None);
                }
                Op::Advance(ms) => {
                    now += Duration::from_millis(*ms);
                    a.node.handle_timeout(now);
                    b.node.handle_timeout(now);
                    a.drain(now, None);
                    b.drain(now, None);
                }
            }
            prop_assert_eq!(
                a.loads.keys().collect::<Vec<_>>(),
                b.loads.keys().collect::<Vec<_>>(),
                "loads under way differ after {:?}", op
            );
            prop_assert_eq!(&a.answers, &b.answers, "answers differ after {:?}", op);
        }
        for k in 0..KEYS {
            prop_assert_eq!(a.node.peek(GROUP, &key(k)), b.node.peek(GROUP, &key(k)));
        }
        // The caches count lookups: a claim that goes on through the node
        // looks twice (the value may have landed in between), as the
        // driver's gets always did. The group's counts of gets and hits
        // must match, and what is held.
        let stats = |n: &Node| {
            let mut s = n.stats(GROUP).unwrap();
            for c in [&mut s.main, &mut s.hot] {
                c.gets = 0;
            }
            s
        };
        prop_assert_eq!(stats(&a.node), stats(&b.node));
    }
}
