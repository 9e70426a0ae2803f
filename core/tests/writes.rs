//! Writes across the cluster (set, remove, purge), per-key expiry and the
//! hot-copy bound, on the pure state machine with a fake clock. The origin
//! is versioned: a write bumps a key's version first, as an application
//! updates its database and then the cache, so "the old value" is exact.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use bytes::Bytes;
use groupcache_core::node::{
    Config, Error, Get, GroupConfig, Loaded, Node, Output, WriteOp, WriteReport, Written,
};
use groupcache_core::testing::epoch;
use groupcache_core::testing::{
    connected, drain, frame, probe_answered_as_go, requests, sent_on, Fault, Sim, SimLoader,
};
use groupcache_core::wire::{Request, Response, OP_REMOVE};

mod common;

use common::{Origin, GROUP};

fn cluster_with(n: usize, group: impl Fn() -> GroupConfig + 'static) -> (Sim, Origin) {
    let origin = Origin::default();
    let o = origin.clone();
    let sim = Sim::new(
        n,
        |a: &str| Config::new(a),
        move |node: &mut Node| node.add_group(group()).unwrap(),
        move |_| o.loader(),
    );
    (sim, origin)
}

fn cluster(n: usize) -> (Sim, Origin) {
    cluster_with(n, || GroupConfig::new(GROUP, 1 << 20))
}

fn remove(key: &str) -> WriteOp {
    WriteOp::remove(key)
}

fn set(key: &str, value: &Bytes) -> WriteOp {
    WriteOp::set(key, value.clone(), None)
}

/// Every node gets `key` once, so the owner holds it and the others hold
/// hot copies.
fn warm(sim: &mut Sim, key: &str) -> Bytes {
    let mut seen = Vec::new();
    for i in 0..sim.nodes.len() {
        seen.push(sim.get_and_wait(i, GROUP, key).unwrap());
    }
    assert!(seen.windows(2).all(|w| w[0] == w[1]), "{seen:?}");
    for (i, n) in sim.nodes.iter().enumerate() {
        assert_eq!(n.node.peek(GROUP, key).as_ref(), Some(&seen[0]), "node {i}");
    }
    seen.swap_remove(0)
}

fn reached_all() -> Result<WriteReport, Error> {
    Ok(WriteReport::default())
}

#[test]
fn remove_through_any_node_leaves_no_old_value_anywhere() {
    for via in 0..3 {
        let (mut sim, origin) = cluster(3);
        let key = sim.key_owned_by((via + 1) % 3, 0);
        let old = warm(&mut sim, &key);
        let new = origin.bump(&key);
        assert_eq!(sim.write_and_wait(via, GROUP, remove(&key)), reached_all());
        for i in 0..3 {
            assert_eq!(
                sim.nodes[i].node.peek(GROUP, &key),
                None,
                "node {i} kept it"
            );
        }
        for i in 0..3 {
            let got = sim.get_and_wait(i, GROUP, &key).unwrap();
            assert_ne!(got, old);
            assert_eq!(got, new, "through node {i}, removed via {via}");
        }
        // One load before, one after: the owner's.
        assert_eq!(sim.loads_of(GROUP, &key), 2);
    }
}

#[test]
fn remove_owned_by_the_node_it_enters_through() {
    let (mut sim, origin) = cluster(3);
    let key = sim.key_owned_by(0, 0);
    warm(&mut sim, &key);
    let new = origin.bump(&key);
    assert_eq!(sim.write_and_wait(0, GROUP, remove(&key)), reached_all());
    for i in 0..3 {
        assert_eq!(sim.get_and_wait(i, GROUP, &key).unwrap(), new);
    }
}

#[test]
fn a_load_under_way_when_a_remove_arrives_is_not_cached_after_it() {
    let (mut sim, origin) = cluster(3);
    sim.load_latency = Duration::from_millis(100);
    let key = sim.key_owned_by(0, 0);
    // A get through node 1 makes the owner load the key: slowly.
    let early = sim.get(1, GROUP, &key).unwrap_err();
    sim.run_for(Duration::from_millis(20));
    assert_eq!(sim.loads_of(GROUP, &key), 1, "the owner is loading");
    // The application changes the key while that load reads the old row.
    let new = origin.bump(&key);
    let w = sim.write(2, GROUP, remove(&key)).unwrap_err();
    assert!(sim.run_until(Duration::from_secs(10), |s| s.writes.contains_key(&(2, w))));
    assert_eq!(sim.writes[&(2, w)], reached_all());
    // The old load was cancelled and the key loaded again.
    assert_eq!(sim.cancelled.len(), 1);
    let got = sim.get_and_wait(1, GROUP, &key).unwrap();
    assert_eq!(got, new);
    assert!(sim.run_until(Duration::from_secs(10), |s| s.result(1, early).is_some()));
    assert_eq!(sim.result(1, early).unwrap().as_ref().unwrap(), &new);
    for i in 0..3 {
        assert_eq!(sim.get_and_wait(i, GROUP, &key).unwrap(), new, "node {i}");
    }
}

#[test]
fn set_through_any_node_is_stored_once_at_the_owner() {
    for via in 0..3 {
        let (mut sim, origin) = cluster(3);
        let owner = (via + 2) % 3;
        let key = sim.key_owned_by(owner, 0);
        warm(&mut sim, &key);
        let loads = sim.loads_of(GROUP, &key);
        let new = origin.bump(&key);
        assert_eq!(
            sim.write_and_wait(via, GROUP, set(&key, &new)),
            reached_all()
        );
        // The owner holds it; the others dropped their copies (no N-way
        // copy of every set).
        for i in 0..3 {
            let held = sim.nodes[i].node.peek(GROUP, &key);
            assert_eq!(held, (i == owner).then(|| new.clone()), "node {i}");
        }
        for i in 0..3 {
            assert_eq!(sim.get_and_wait(i, GROUP, &key).unwrap(), new);
        }
        assert_eq!(
            sim.loads_of(GROUP, &key),
            loads,
            "a set value needs no load"
        );
        let stats = sim.nodes[via].node.stats(GROUP).unwrap();
        assert_eq!(stats.sets, 1);
    }
}

#[test]
fn two_sets_of_one_key_are_both_applied_in_order_at_the_owner() {
    let (mut sim, _) = cluster(3);
    let key = sim.key_owned_by(0, 0);
    warm(&mut sim, &key);
    let (a, b) = (Bytes::from("A"), Bytes::from("B"));
    // Same node, same instant: neither is dropped (the second does not join
    // the first, as in groupcache-go v3); the owner applies both, here B
    // last, and every node then answers what it applied last.
    let wa = sim.write(1, GROUP, set(&key, &a)).unwrap_err();
    let wb = sim.write(1, GROUP, set(&key, &b)).unwrap_err();
    assert!(sim.run_until(Duration::from_secs(10), |s| {
        s.writes.contains_key(&(1, wa)) && s.writes.contains_key(&(1, wb))
    }));
    assert_eq!(sim.writes[&(1, wa)], reached_all());
    assert_eq!(sim.writes[&(1, wb)], reached_all());
    for i in 0..3 {
        assert_eq!(sim.get_and_wait(i, GROUP, &key).unwrap(), b, "node {i}");
    }
    // The owner applied both sets; node 2 was told twice to drop its copy.
    assert_eq!(sim.nodes[0].node.stats(GROUP).unwrap().writes_applied, 2);
    assert_eq!(sim.nodes[2].node.stats(GROUP).unwrap().writes_applied, 2);
}

#[test]
fn concurrent_sets_through_two_nodes_leave_one_value_everywhere() {
    let (mut sim, _) = cluster(3);
    let key = sim.key_owned_by(0, 0);
    warm(&mut sim, &key);
    let (a, b) = (Bytes::from("A"), Bytes::from("B"));
    let wa = sim.write(1, GROUP, set(&key, &a)).unwrap_err();
    let wb = sim.write(2, GROUP, set(&key, &b)).unwrap_err();
    assert!(sim.run_until(Duration::from_secs(10), |s| {
        s.writes.contains_key(&(1, wa)) && s.writes.contains_key(&(2, wb))
    }));
    assert_eq!(sim.writes[&(1, wa)], reached_all());
    assert_eq!(sim.writes[&(2, wb)], reached_all());
    let winner = sim.nodes[0].node.peek(GROUP, &key).unwrap();
    assert!(winner == a || winner == b);
    for i in 0..3 {
        assert_eq!(
            sim.get_and_wait(i, GROUP, &key).unwrap(),
            winner,
            "node {i}"
        );
    }
}

#[test]
fn purge_costs_the_same_messages_whatever_the_number_of_keys() {
    let mut sent = Vec::new();
    for keys in [1, 200] {
        let (mut sim, origin) = cluster(3);
        // A first purge teaches node 1 that its peers understand writes.
        assert_eq!(sim.write_and_wait(1, GROUP, WriteOp::Purge), reached_all());
        let names: Vec<String> = (0..keys).map(|k| format!("k{k}")).collect();
        for k in &names {
            for i in 0..3 {
                sim.get_and_wait(i, GROUP, k).unwrap();
            }
        }
        let before = sim.sent_bytes[1];
        assert_eq!(sim.write_and_wait(1, GROUP, WriteOp::Purge), reached_all());
        sent.push(sim.sent_bytes[1] - before);
        for k in &names {
            for i in 0..3 {
                assert_eq!(sim.nodes[i].node.peek(GROUP, k), None, "node {i} kept {k}");
            }
        }
        let k = &names[0];
        let new = origin.bump(k);
        assert_eq!(sim.get_and_wait(2, GROUP, k).unwrap(), new);
        assert_eq!(sim.nodes[1].node.stats(GROUP).unwrap().purges, 2);
    }
    assert_eq!(sent[0], sent[1], "bytes the purge sent, 1 key vs 200 keys");
}

#[test]
fn purge_restarts_loads_under_way() {
    let (mut sim, origin) = cluster(2);
    sim.load_latency = Duration::from_millis(100);
    let key = sim.key_owned_by(0, 0);
    let early = sim.get(0, GROUP, &key).unwrap_err();
    sim.run_for(Duration::from_millis(20));
    let new = origin.bump(&key);
    assert_eq!(sim.write_and_wait(1, GROUP, WriteOp::Purge), reached_all());
    assert!(sim.run_until(Duration::from_secs(10), |s| s.result(0, early).is_some()));
    assert_eq!(sim.result(0, early).unwrap().as_ref().unwrap(), &new);
    assert_eq!(sim.nodes[0].node.peek(GROUP, &key), Some(new));
}

#[test]
fn a_peer_that_cannot_be_told_is_named_and_its_copy_expires_within_hot_ttl() {
    let (mut sim, origin) = cluster(3);
    let key = sim.key_owned_by(0, 0);
    let old = warm(&mut sim, &key);
    let new = origin.bump(&key);
    // Node 1 cannot reach node 2 (bytes are lost): it times out.
    sim.cut(1, 2);
    let started = sim.now;
    let r = sim.write_and_wait(1, GROUP, remove(&key)).unwrap();
    assert_eq!(r.not_reached, vec!["node-2:9000".into()]);
    assert!(
        sim.now - started <= Duration::from_secs(4),
        "bounded by the request timeout"
    );
    assert_eq!(
        sim.nodes[1]
            .node
            .stats(GROUP)
            .unwrap()
            .write_peers_not_reached,
        1
    );
    // Node 2 still serves its hot copy, but never past the hot TTL.
    assert_eq!(sim.get_and_wait(2, GROUP, &key).unwrap(), old);
    sim.run_for(GroupConfig::new(GROUP, 0).hot_ttl);
    assert_eq!(sim.get_and_wait(2, GROUP, &key).unwrap(), new);
}

#[test]
fn a_write_whose_owner_is_down_fails_naming_it_and_still_drops_copies() {
    let (mut sim, origin) = cluster(3);
    let key = sim.key_owned_by(0, 0);
    warm(&mut sim, &key);
    origin.bump(&key);
    sim.faults.insert(0, Fault::Refuse);
    for op in [set(&key, &Bytes::from("x")), remove(&key)] {
        match sim.write_and_wait(1, GROUP, op) {
            Err(Error::Write(m)) => {
                assert!(m.contains("owner node-0:9000 not reached"), "{m}");
            }
            other => panic!("{other:?}"),
        }
        // Node 2 was reached and dropped its copy all the same.
        assert_eq!(sim.nodes[2].node.peek(GROUP, &key), None);
    }
}

#[test]
fn a_loaders_ttl_is_capped_by_the_groups_and_inherited_by_hot_copies() {
    for (loader_ttl, group_ttl, expect) in [(5, 60, 5), (100, 10, 10)] {
        let origin = Origin::default();
        let o = origin.clone();
        let mut sim = Sim::new(
            2,
            |a: &str| Config::new(a),
            move |node: &mut Node| {
                let g = GroupConfig::new(GROUP, 1 << 20).ttl(Duration::from_secs(group_ttl));
                node.add_group(g).unwrap();
            },
            move |_| -> SimLoader {
                let o = o.clone();
                Box::new(move |_, key| {
                    Ok(Loaded::new(o.value(key)).ttl(Duration::from_secs(loader_ttl)))
                })
            },
        );
        let key = sim.key_owned_by(0, 0);
        warm(&mut sim, &key);
        let new = origin.bump(&key);
        sim.run_for(Duration::from_secs(expect) - Duration::from_millis(100));
        assert_ne!(
            sim.get_and_wait(1, GROUP, &key).unwrap(),
            new,
            "still fresh"
        );
        sim.run_for(Duration::from_millis(200));
        // Expired on both nodes: the hot copy lived no longer than the
        // owner's.
        assert_eq!(sim.get_and_wait(1, GROUP, &key).unwrap(), new);
        assert_eq!(sim.loads_of(GROUP, &key), 2);
    }
}

#[test]
fn hot_copies_live_at_most_hot_ttl_without_any_group_ttl() {
    let (mut sim, _) = cluster_with(2, || {
        let mut g = GroupConfig::new(GROUP, 1 << 20);
        g.hot_ttl = Duration::from_secs(10);
        g
    });
    let key = sim.key_owned_by(0, 0);
    warm(&mut sim, &key);
    sim.run_for(Duration::from_secs(9));
    sim.get_and_wait(1, GROUP, &key).unwrap();
    assert_eq!(sim.nodes[1].node.stats(GROUP).unwrap().peer_loads, 1);
    sim.run_for(Duration::from_secs(2));
    sim.get_and_wait(1, GROUP, &key).unwrap();
    assert_eq!(sim.nodes[1].node.stats(GROUP).unwrap().peer_loads, 2);
    // The owner's own copy has no expiry.
    assert_eq!(sim.loads_of(GROUP, &key), 1);
}

#[test]
fn a_client_that_is_not_a_member_gets_and_writes_through_a_node() {
    let (mut sim, origin) = cluster(3);
    let c = sim.add_client();
    let key = sim.key_owned_by(2, 0);
    let get = sim.nodes[c]
        .node
        .get_via(sim.now, "node-0:9000", GROUP, &key);
    sim.drain(c);
    assert!(sim.run_until(Duration::from_secs(5), |s| s.result(c, get).is_some()));
    assert_eq!(
        sim.result(c, get).unwrap().as_ref().unwrap(),
        &origin.value(&key)
    );
    let new = origin.bump(&key);
    let op = remove(&key);
    let w = sim.nodes[c]
        .node
        .write_via(sim.now, "node-0:9000", GROUP, op);
    sim.drain(c);
    assert!(sim.run_until(Duration::from_secs(5), |s| s.writes.contains_key(&(c, w))));
    assert_eq!(sim.writes[&(c, w)], reached_all());
    for i in 0..3 {
        assert_eq!(sim.get_and_wait(i, GROUP, &key).unwrap(), new);
    }
    // Unknown group and unreachable node: typed errors, no hang.
    let w = sim.nodes[c]
        .node
        .write_via(sim.now, "node-0:9000", "nope", WriteOp::Purge);
    sim.drain(c);
    assert!(sim.run_until(Duration::from_secs(5), |s| s.writes.contains_key(&(c, w))));
    assert!(matches!(sim.writes[&(c, w)], Err(Error::NoGroup(_))));
    sim.faults.insert(1, Fault::Refuse);
    let get = sim.nodes[c]
        .node
        .get_via(sim.now, "node-1:9000", GROUP, &key);
    sim.drain(c);
    assert!(sim.run_until(Duration::from_secs(5), |s| s.result(c, get).is_some()));
    assert!(matches!(
        sim.result(c, get),
        Some(Err(Error::Unreachable(_)))
    ));
}

#[test]
fn writes_never_reach_a_peer_that_did_not_announce_them() {
    // A Go node reads every request as a get: it must only ever see the
    // empty probe, and is reported as not reached.
    let now = epoch();
    let (me, go) = ("rust:1", "go:1");
    let mut node = Node::new(Config::new(me));
    node.add_group(GroupConfig::new(GROUP, 1 << 20)).unwrap();
    node.set_peers(now, [me, go]);
    let mine = (0..)
        .map(|i| format!("k{i}"))
        .find(|k| node.owner(k) == Some(me))
        .unwrap();
    let theirs = (0..)
        .map(|i| format!("k{i}"))
        .find(|k| node.owner(k) == Some(go))
        .unwrap();
    let Written::Pending(w) = node.write(now, GROUP, remove(&mine)) else {
        panic!("a peer to tell")
    };
    let out = drain(&mut node);
    // The Go original's answer to an unknown group: no extension fields.
    let (conn, out) = probe_answered_as_go(&mut node, now, &out);
    let result = out.iter().find_map(|o| match o {
        Output::Written { write, result } if *write == w => Some(result.clone()),
        _ => None,
    });
    let report = result.expect("finished").expect("applied here");
    assert_eq!(report.not_reached, vec![go.into()]);
    // A key the Go node owns cannot be written: the error says why.
    match node.write(now, GROUP, set(&theirs, &Bytes::from("x"))) {
        Written::Ready(Err(Error::Write(m))) => {
            assert!(m.contains("does not understand writes"), "{m}")
        }
        other => panic!("{other:?}"),
    }
    assert!(sent_on(&drain(&mut node), conn).is_empty());
}

#[test]
fn an_answer_that_predates_a_remove_is_not_cached() {
    // Node "a" asks the owner "b" for a key; before the answer comes, a
    // remove reaches "a" from a peer. The answer may hold the old value:
    // "a" must not cache it, and asks again.
    let now = epoch();
    let (a, b) = ("127.0.0.1:1", "127.0.0.2:1");
    let mut node = Node::new(Config::new(a));
    node.add_group(GroupConfig::new(GROUP, 1 << 20)).unwrap();
    node.set_peers(now, [a, b]);
    let key = (0..)
        .map(|i| format!("k{i}"))
        .find(|k| node.owner(k) == Some(b))
        .unwrap();
    let Get::Pending(get) = node.get(now, GROUP, &key) else {
        panic!("a miss")
    };
    let out = drain(&mut node);
    let conn = connected(&mut node, now, &out);
    assert_eq!(requests(&sent_on(&drain(&mut node), conn)).len(), 1);
    // The remove arrives on a connection from b.
    let from_b = node
        .accept(now, IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)))
        .unwrap();
    let rm = Request {
        group: GROUP.into(),
        key: key.clone(),
        from_peer: true,
        ext: true,
        op: OP_REMOVE,
        ..Default::default()
    };
    node.handle_data(now, from_b, &frame(&rm));
    let out = drain(&mut node);
    assert!(
        !sent_on(&out, from_b).is_empty(),
        "the remove is acknowledged"
    );
    // Now the answer to the first request: the old value.
    let answer = |v: &'static str| Response {
        value: v.into(),
        code: 200,
        pipelining: true,
        writes: true,
        ..Default::default()
    };
    node.handle_data(now, conn, &frame(&answer("old")));
    let out = drain(&mut node);
    assert!(
        !out.iter().any(|o| matches!(o, Output::Done { .. })),
        "{out:?}"
    );
    assert_eq!(
        node.peek(GROUP, &key),
        None,
        "the old answer was not cached"
    );
    // The get asked again: its answer is the one that counts.
    let again = requests(&sent_on(&out, conn));
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].key, key);
    node.handle_data(now, conn, &frame(&answer("new")));
    let out = drain(&mut node);
    assert!(out.contains(&Output::Done {
        get,
        result: Ok("new".into())
    }));
    assert_eq!(node.peek(GROUP, &key), Some("new".into()));
}
