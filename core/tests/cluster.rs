//! Deterministic cluster scenarios: in-memory links, a fake clock, counted
//! loaders. Every run is the same run.

use std::time::Duration;

use bytes::Bytes;
use groupcache_core::node::{Config, Error, GroupConfig, LoadError, Node};
use groupcache_core::testing::{Fault, Sim, SimLoader};

const GROUP: &str = "g";

fn value_of(key: &str) -> Bytes {
    Bytes::from(format!("value of {key}"))
}

fn ok_loader(_: usize) -> SimLoader {
    Box::new(|_, key| Ok(value_of(key).into()))
}

/// `n` nodes formed at once. Handoff (asking a key's previous owner after
/// a membership change) is off here and tested in `handoff.rs`, so these
/// scenarios count the requests of routing alone.
fn cluster(n: usize, ttl: Option<Duration>) -> Sim {
    Sim::new(
        n,
        |a: &str| {
            let mut c = Config::new(a);
            c.handoff_period = Duration::ZERO;
            c
        },
        |node: &mut Node| {
            let mut g = GroupConfig::new(GROUP, 1 << 20);
            g.ttl = ttl;
            node.add_group(g).unwrap();
        },
        ok_loader,
    )
}

/// Runs until `get` on node `i` finishes, within `limit`.
fn finish(
    sim: &mut Sim,
    i: usize,
    r: Result<Result<Bytes, Error>, groupcache_core::node::GetId>,
    limit: Duration,
) -> Result<Bytes, Error> {
    match r {
        Ok(r) => r,
        Err(id) => {
            assert!(
                sim.run_until(limit, |s| s.result(i, id).is_some()),
                "get on node {i} did not finish within {limit:?}"
            );
            sim.result(i, id).unwrap().clone()
        }
    }
}

#[test]
fn thousand_concurrent_gets_of_one_cold_key_load_once() {
    let mut sim = cluster(3, None);
    let key = sim.key_owned_by(2, 0);
    let mut pending = Vec::new();
    for n in 0..1000 {
        let i = n % 3;
        match sim.get(i, GROUP, &key) {
            Err(id) => pending.push((i, id)),
            Ok(r) => panic!("cold key answered at once: {r:?}"),
        }
    }
    let all_done = sim.run_until(Duration::from_secs(5), |s| {
        pending.iter().all(|&(i, id)| s.result(i, id).is_some())
    });
    assert!(all_done);
    for &(i, id) in &pending {
        assert_eq!(sim.result(i, id).unwrap(), &Ok(value_of(&key)));
    }
    assert_eq!(
        sim.loads_of(GROUP, &key),
        1,
        "loader ran {:?}",
        sim.load_calls
    );
    assert_eq!(sim.load_calls[0].0, 2, "the owner loads");
    let s0 = sim.nodes[0].node.stats(GROUP).unwrap();
    assert_eq!(
        (s0.gets, s0.loads, s0.loads_deduped, s0.peer_loads),
        (334, 1, 333, 1)
    );
    let s2 = sim.nodes[2].node.stats(GROUP).unwrap();
    assert_eq!((s2.local_loads, s2.server_requests), (1, 2));
}

#[test]
fn unreachable_owner_falls_back_after_the_timeout() {
    for fault in [Fault::Blackhole, Fault::Refuse] {
        let mut sim = cluster(3, None);
        let key = sim.key_owned_by(1, 0);
        sim.faults.insert(1, fault);
        let start = sim.now;
        let r = sim.get(0, GROUP, &key);
        let cfg = sim.nodes[0].node.config().clone();
        let limit = cfg.request_timeout + sim.load_latency + Duration::from_millis(10);
        assert_eq!(finish(&mut sim, 0, r, limit), Ok(value_of(&key)));
        let took = sim.now - start;
        if fault == Fault::Blackhole {
            assert!(
                took >= cfg.connect_timeout,
                "{fault:?}: answered after {took:?}"
            );
        }
        assert_eq!(sim.load_calls, vec![(0, GROUP.to_string(), key.clone())]);
        assert_eq!(sim.nodes[0].node.stats(GROUP).unwrap().peer_errors, 1);
        // While the peer is in back-off, the next miss does not wait for it.
        let other = sim.key_owned_by(1, 1);
        let start = sim.now;
        let r = sim.get(0, GROUP, &other);
        assert_eq!(finish(&mut sim, 0, r, limit), Ok(value_of(&other)));
        assert_eq!(sim.now - start, sim.load_latency, "{fault:?}");
    }
}

#[test]
fn owner_that_stops_answering_times_out_and_falls_back() {
    let mut sim = cluster(2, None);
    let k1 = sim.key_owned_by(1, 0);
    let r = sim.get(0, GROUP, &k1);
    assert_eq!(
        finish(&mut sim, 0, r, Duration::from_secs(1)),
        Ok(value_of(&k1))
    );
    // The connection is up; now every byte between the two is lost.
    sim.cut(0, 1);
    let k2 = sim.key_owned_by(1, 1);
    let start = sim.now;
    let r = sim.get(0, GROUP, &k2);
    let timeout = sim.nodes[0].node.config().request_timeout;
    assert_eq!(finish(&mut sim, 0, r, timeout * 2), Ok(value_of(&k2)));
    assert_eq!(sim.now - start, timeout + sim.load_latency);
    assert_eq!(sim.loads_of(GROUP, &k2), 1);
    assert_eq!(sim.load_calls.last().unwrap().0, 0);
}

#[test]
fn disagreeing_peer_lists_do_not_loop() {
    let mut sim = cluster(2, None);
    // Node 0 believes node 1 owns everything, and node 1 believes node 0 does.
    let (a, b) = (sim.nodes[0].addr.clone(), sim.nodes[1].addr.clone());
    let now = sim.now;
    sim.nodes[0].node.set_peers(now, [&b]);
    sim.nodes[1].node.set_peers(now, [&a]);
    let r = sim.get(0, GROUP, "k");
    assert_eq!(
        finish(&mut sim, 0, r, Duration::from_millis(100)),
        Ok(value_of("k"))
    );
    assert_eq!(
        sim.load_calls,
        vec![(1, GROUP.to_string(), "k".to_string())]
    );
    // Both ask at once: each sees the other's request while its own is out.
    let (r0, r1) = (sim.get(0, GROUP, "x"), sim.get(1, GROUP, "x"));
    assert_eq!(
        finish(&mut sim, 0, r0, Duration::from_millis(100)),
        Ok(value_of("x"))
    );
    assert_eq!(
        finish(&mut sim, 1, r1, Duration::from_millis(100)),
        Ok(value_of("x"))
    );
    assert!(sim.loads_of(GROUP, "x") <= 2);
    for n in &sim.nodes {
        assert_eq!(
            n.node.stats(GROUP).unwrap().peer_errors,
            0,
            "no timeout was needed"
        );
    }
}

#[test]
fn loader_error_reaches_every_waiter_and_is_not_cached() {
    let mut sim = Sim::new(
        3,
        |a: &str| Config::new(a),
        |n: &mut Node| n.add_group(GroupConfig::new(GROUP, 1 << 20)).unwrap(),
        |_| {
            let mut calls = 0;
            Box::new(move |_, key| {
                calls += 1;
                if calls == 1 {
                    Err(LoadError::Failed("origin down".into()))
                } else {
                    Ok(value_of(key).into())
                }
            })
        },
    );
    let key = sim.key_owned_by(0, 0);
    let pending: Vec<_> = (0..30)
        .map(|n| (n % 3, sim.get(n % 3, GROUP, &key).unwrap_err()))
        .collect();
    assert!(sim.run_until(Duration::from_secs(1), |s| pending
        .iter()
        .all(|&(i, id)| s.result(i, id).is_some())));
    for &(i, id) in &pending {
        let r = sim.result(i, id).unwrap();
        assert!(
            matches!(r, Err(Error::Load(m)) if m.contains("origin down")),
            "{r:?}"
        );
    }
    assert_eq!(
        sim.loads_of(GROUP, &key),
        1,
        "owner's error is final for the peers"
    );
    // Not cached: the next get loads again and succeeds.
    let r = sim.get(1, GROUP, &key);
    assert_eq!(
        finish(&mut sim, 1, r, Duration::from_secs(1)),
        Ok(value_of(&key))
    );
    assert_eq!(sim.loads_of(GROUP, &key), 2);
}

#[test]
fn not_found_from_the_owner_is_final() {
    let mut sim = Sim::new(
        2,
        |a: &str| Config::new(a),
        |n: &mut Node| n.add_group(GroupConfig::new(GROUP, 1 << 20)).unwrap(),
        |_| Box::new(|_, key| Err(LoadError::NotFound(format!("{key} not exist")))),
    );
    let key = sim.key_owned_by(1, 0);
    let r = sim.get(0, GROUP, &key);
    let got = finish(&mut sim, 0, r, Duration::from_secs(1));
    assert_eq!(got, Err(Error::NotFound(format!("{key} not exist").into())));
    assert_eq!(sim.load_calls.len(), 1, "no duplicate local load");
    assert_eq!(sim.nodes[0].node.stats(GROUP).unwrap().peer_errors, 0);
}

#[test]
fn ttl_serves_until_just_before_expiry_and_reloads_at_it() {
    let ttl = Duration::from_secs(10);
    let mut sim = cluster(2, Some(ttl));
    let key = sim.key_owned_by(1, 0);
    let r = sim.get(1, GROUP, &key);
    assert_eq!(
        finish(&mut sim, 1, r, Duration::from_secs(1)),
        Ok(value_of(&key))
    );
    let loaded_at = sim.now;
    // Node 0 fetches it half-way through: its hot copy inherits the rest.
    sim.run_for(ttl / 2);
    let r = sim.get(0, GROUP, &key);
    assert_eq!(
        finish(&mut sim, 0, r, Duration::from_secs(1)),
        Ok(value_of(&key))
    );
    // The copy counts its TTL from when it asked, so it lapses up to one
    // round trip (plus rounding to milliseconds) before the owner's.
    let round_trip = 2 * sim.latency + Duration::from_millis(1);
    let sent = sim.sent_bytes.clone();
    sim.run_until(loaded_at + ttl - round_trip - sim.now, |_| false);
    assert_eq!(
        sim.get(0, GROUP, &key),
        Ok(Ok(value_of(&key))),
        "hot copy still fresh"
    );
    let just_before = loaded_at + ttl - Duration::from_millis(1);
    sim.run_until(just_before - sim.now, |_| false);
    assert_eq!(sim.now, just_before);
    assert_eq!(
        sim.get(1, GROUP, &key),
        Ok(Ok(value_of(&key))),
        "owner's copy still fresh"
    );
    assert_eq!(sim.sent_bytes, sent, "served without traffic");
    assert_eq!(sim.loads_of(GROUP, &key), 1);
    sim.run_for(Duration::from_millis(1));
    assert_eq!(sim.now, loaded_at + ttl);
    let r = sim.get(0, GROUP, &key);
    assert!(r.is_err(), "expired everywhere: pending");
    assert_eq!(
        finish(&mut sim, 0, r, Duration::from_secs(1)),
        Ok(value_of(&key))
    );
    assert_eq!(sim.loads_of(GROUP, &key), 2);
    assert_eq!(sim.load_calls[1].0, 1, "the owner reloads");
}

#[test]
fn hot_cache_serves_peer_keys_without_traffic_and_keeps_its_share() {
    let mut sim = Sim::new(
        2,
        |a: &str| Config::new(a),
        |n: &mut Node| n.add_group(GroupConfig::new(GROUP, 8 * 1024)).unwrap(),
        |_| Box::new(|_, _| Ok(Bytes::from(vec![b'x'; 100]).into())),
    );
    let key = sim.key_owned_by(1, 0);
    let r = sim.get(0, GROUP, &key);
    finish(&mut sim, 0, r, Duration::from_secs(1)).unwrap();
    let sent = sim.sent_bytes.clone();
    for _ in 0..10 {
        assert!(matches!(sim.get(0, GROUP, &key), Ok(Ok(_))));
    }
    assert_eq!(sim.sent_bytes, sent);
    // Many peer-owned keys: the hot cache stays within an eighth.
    for n in 1..60 {
        let k = sim.key_owned_by(1, n);
        let r = sim.get(0, GROUP, &k);
        finish(&mut sim, 0, r, Duration::from_secs(1)).unwrap();
        let s = sim.nodes[0].node.stats(GROUP).unwrap();
        assert!(s.hot.bytes <= 1024, "hot cache holds {} bytes", s.hot.bytes);
        assert_eq!(
            s.main.bytes, 0,
            "peer-owned values stay out of the main cache"
        );
    }
    let s = sim.nodes[0].node.stats(GROUP).unwrap();
    assert!(s.hot.evictions > 0);
}

#[test]
fn many_keys_to_one_peer_pipeline_on_few_connections() {
    let mut sim = cluster(2, None);
    let keys: Vec<String> = (0..200).map(|n| sim.key_owned_by(1, n)).collect();
    // Warm one connection so node 0 learns that node 1 pipelines.
    let r = sim.get(0, GROUP, &keys[0]);
    finish(&mut sim, 0, r, Duration::from_secs(1)).unwrap();
    let pending: Vec<_> = keys[1..]
        .iter()
        .map(|k| sim.get(0, GROUP, k).unwrap_err())
        .collect();
    assert!(sim.run_until(Duration::from_secs(1), |s| pending
        .iter()
        .all(|&id| s.result(0, id).is_some())));
    for (k, &id) in keys[1..].iter().zip(&pending) {
        assert_eq!(sim.result(0, id).unwrap(), &Ok(value_of(k)));
    }
    assert_eq!(
        sim.nodes[1].node.connections(),
        1,
        "one pipelined connection"
    );
    assert_eq!(sim.nodes[0].node.stats(GROUP).unwrap().peer_loads, 200);
}

#[test]
fn membership_change_moves_keys_to_their_new_owner() {
    let mut sim = cluster(3, None);
    let addrs: Vec<String> = sim.nodes.iter().map(|n| n.addr.clone()).collect();
    // Start with nodes 0 and 1 only.
    let now = sim.now;
    for n in &mut sim.nodes {
        n.node.set_peers(now, &addrs[..2]);
    }
    let keys: Vec<String> = (0..30).map(|i| format!("m{i}")).collect();
    for k in &keys {
        let r = sim.get(0, GROUP, k);
        assert_eq!(
            finish(&mut sim, 0, r, Duration::from_secs(1)),
            Ok(value_of(k))
        );
    }
    assert!(sim.load_calls.iter().all(|(i, _, _)| *i < 2));
    let old_owner: Vec<String> = keys
        .iter()
        .map(|k| sim.nodes[0].node.owner(k).unwrap().to_string())
        .collect();
    // Node 2 joins; keys it now owns are loaded there on their next miss,
    // unless the asking node still holds them from when it owned them.
    let now = sim.now;
    for n in &mut sim.nodes {
        n.node.set_peers(now, &addrs);
    }
    let mut expect_on_2 = 0;
    for (k, old) in keys.iter().zip(&old_owner) {
        if sim.nodes[0].node.owner(k) != Some(addrs[2].as_str()) {
            continue;
        }
        expect_on_2 += usize::from(*old != addrs[1]);
        let r = sim.get(1, GROUP, k);
        assert_eq!(
            finish(&mut sim, 1, r, Duration::from_secs(1)),
            Ok(value_of(k))
        );
    }
    let on_2 = sim.load_calls.iter().filter(|(i, _, _)| *i == 2).count();
    assert!(expect_on_2 > 0);
    assert_eq!(on_2, expect_on_2);
    // Node 1 leaves; everything still answers.
    let without_1 = [addrs[0].clone(), addrs[2].clone()];
    let now = sim.now;
    for n in &mut sim.nodes {
        n.node.set_peers(now, &without_1);
    }
    sim.faults.insert(1, Fault::Refuse);
    for k in &keys {
        let r = sim.get(0, GROUP, k);
        assert_eq!(
            finish(&mut sim, 0, r, Duration::from_secs(1)),
            Ok(value_of(k))
        );
    }
}

#[test]
fn garbage_on_one_connection_closes_only_that_connection() {
    let mut sim = cluster(2, None);
    let key = sim.key_owned_by(1, 0);
    let now = sim.now;
    let node = &mut sim.nodes[1].node;
    let bad = node.accept(now, "127.0.0.1".parse().unwrap()).unwrap();
    let good = node.accept(now, "::1".parse().unwrap()).unwrap();
    node.handle_data(now, bad, &(-5i64).to_le_bytes());
    let closed = std::iter::from_fn(|| node.poll_output()).collect::<Vec<_>>();
    assert!(
        matches!(&closed[..], [groupcache_core::node::Output::Close { conn, .. }] if *conn == bad)
    );
    let mut frame = bytes::BytesMut::new();
    groupcache_core::wire::encode_frame(
        &groupcache_core::wire::Request {
            group: GROUP.into(),
            key: key.clone(),
            ..Default::default()
        },
        &mut frame,
    );
    node.handle_data(now, good, &frame);
    let out = std::iter::from_fn(|| node.poll_output()).collect::<Vec<_>>();
    assert!(
        matches!(&out[..], [groupcache_core::node::Output::Load { .. }]),
        "{out:?}"
    );
    assert_eq!(node.connections(), 1);
}

#[test]
fn allowlist_and_connection_limit_refuse_at_accept() {
    use groupcache_core::node::Refused;
    let mut cfg = Config::new("a:1");
    cfg.allow = Some(vec![
        "10.1.0.0/16".parse().unwrap(),
        "fd00::/8".parse().unwrap(),
    ]);
    cfg.max_inbound = 1;
    let mut node = Node::new(cfg);
    let now = groupcache_core::testing::epoch();
    assert_eq!(
        node.accept(now, "10.2.0.1".parse().unwrap()),
        Err(Refused::NotAllowed)
    );
    assert_eq!(
        node.accept(now, "::1".parse().unwrap()),
        Err(Refused::NotAllowed)
    );
    assert!(node.accept(now, "::ffff:10.1.2.3".parse().unwrap()).is_ok());
    assert_eq!(
        node.accept(now, "fd00::1".parse().unwrap()),
        Err(Refused::TooMany)
    );
}

#[test]
fn queued_peer_requests_expire_even_after_timer_compaction() {
    // Found by the node fuzzer: once timer records were compacted to one per
    // peer, requests queued behind the first expiring one were never timed
    // out, and their gets waited forever.
    let mut sim = Sim::new(
        2,
        |a: &str| {
            let mut c = Config::new(a);
            c.connect_timeout = Duration::from_secs(10);
            c.max_conns_per_peer = 1;
            c
        },
        |n: &mut Node| n.add_group(GroupConfig::new(GROUP, 1 << 20)).unwrap(),
        ok_loader,
    );
    sim.faults.insert(1, Fault::Blackhole);
    let timeout = sim.nodes[0].node.config().request_timeout;
    let mut pending = Vec::new();
    for n in 0..100 {
        let k = sim.key_owned_by(1, n);
        pending.push((sim.now, sim.get(0, GROUP, &k).unwrap_err()));
        sim.run_for(Duration::from_millis(10));
    }
    // Each get is answered by a local load once its own request times out.
    for (asked, id) in pending {
        let due = asked + timeout + sim.load_latency;
        if due > sim.now {
            sim.run_until(due - sim.now, |_| false);
        }
        assert_eq!(
            sim.result(0, id).cloned().map(|r| r.is_ok()),
            Some(true),
            "{id} due at {:?}",
            due - sim.now
        );
    }
}

/// Frames in one `Send` output.
fn frames_in(data: &[u8]) -> usize {
    groupcache_core::frame::decode_all(data, 1 << 20)
        .unwrap()
        .0
        .len()
}

#[test]
fn requests_are_pipelined_only_to_peers_that_announce_it() {
    use groupcache_core::node::Output;
    use groupcache_core::wire::{frame_bytes, Response};
    for announces in [false, true] {
        let mut cfg = Config::new("a:1");
        cfg.max_conns_per_peer = 1;
        let mut node = Node::new(cfg);
        let now = groupcache_core::testing::epoch();
        node.set_peers(now, ["a:1", "b:1"]);
        node.add_group(GroupConfig::new(GROUP, 1 << 20)).unwrap();
        let keys: Vec<String> = (0..)
            .map(|i| format!("k{i}"))
            .filter(|k| node.owner(k) == Some("b:1"))
            .take(4)
            .collect();
        for k in &keys {
            assert!(matches!(
                node.get(now, GROUP, k),
                groupcache_core::node::Get::Pending(_)
            ));
        }
        let Some(Output::Connect { conn, .. }) = node.poll_output() else {
            panic!("expected one connect")
        };
        assert_eq!(node.poll_output(), None, "one connection per peer");
        node.handle_connected(now, conn);
        // A Go peer answers plain responses; a Rust peer sets `pipelining`.
        let resp = frame_bytes(&Response {
            value: "v".into(),
            code: 200,
            pipelining: announces,
            ..Default::default()
        });
        let mut per_send = Vec::new();
        let mut done = 0;
        while let Some(o) = node.poll_output() {
            match o {
                Output::Send { data, .. } => {
                    let n = frames_in(&data);
                    per_send.push(n);
                    for _ in 0..n {
                        node.handle_data(now, conn, &resp);
                    }
                }
                Output::Done { result, .. } => {
                    assert_eq!(result, Ok(Bytes::from_static(b"v")));
                    done += 1;
                }
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(done, keys.len());
        if announces {
            assert_eq!(
                per_send,
                vec![1, 3],
                "after the first answer the rest go at once"
            );
        } else {
            assert_eq!(
                per_send,
                vec![1, 1, 1, 1],
                "one request at a time to a Go peer"
            );
        }
    }
}

#[test]
fn shutdown_closes_idle_connections_in_the_order_they_opened() {
    use groupcache_core::node::{CloseReason, Output};
    let mut node = Node::new(Config::new("a:1"));
    node.add_group(GroupConfig::new(GROUP, 1 << 20)).unwrap();
    let now = groupcache_core::testing::epoch();
    let mut opened = Vec::new();
    for i in 0..64u8 {
        let from = std::net::IpAddr::from([10, 0, i / 8, i % 8 + 1]);
        opened.push(node.accept(now, from).expect("accepted"));
    }
    groupcache_core::testing::drain(&mut node);
    node.shutdown(now);
    let closed: Vec<_> = groupcache_core::testing::drain(&mut node)
        .into_iter()
        .filter_map(|o| match o {
            Output::Close {
                conn,
                reason: CloseReason::Shutdown,
            } => Some(conn),
            _ => None,
        })
        .collect();
    // Not a hash seed's order: the same every run.
    assert_eq!(closed, opened);
}

/// With a loader that answers at once, a member's gets of the keys it owns
/// are claimed and landed in their shards without the node (no output at
/// all), while keys other members own go to their owners; across the
/// cluster every key is still loaded once, and every get answers the
/// owner's value.
#[test]
fn owned_misses_are_claimed_without_the_node_and_every_key_loads_once() {
    let mut sim = cluster(3, None);
    sim.load_latency = Duration::ZERO;
    let keys: Vec<String> = (0..60).map(|i| format!("key-{i}")).collect();
    for (n, key) in keys.iter().enumerate() {
        let i = n % 3;
        let owned = sim.nodes[i].node.owner(key) == Some(sim.nodes[i].addr.as_str());
        let caches = sim.nodes[i].node.caches(GROUP).unwrap();
        let claim = caches.claim(key, sim.now);
        assert_eq!(
            matches!(claim, groupcache_core::node::Claim::Load(_)),
            owned,
            "{key} on node {i}: {claim:?}"
        );
        // Hand it back as the driver would: the loader answers at once.
        if let groupcache_core::node::Claim::Load(c) = claim {
            let landed = caches.land_claimed(key, c, sim.now, Ok(value_of(key).into()));
            assert!(matches!(
                landed,
                groupcache_core::node::Landed::Done {
                    result: Ok(_),
                    wake: false
                }
            ));
            assert_eq!(
                sim.nodes[i].node.poll_output(),
                None,
                "the node heard nothing"
            );
            sim.load_calls.push((i, GROUP.into(), key.clone()));
            continue;
        }
        let r = sim.get(i, GROUP, key);
        assert_eq!(
            finish(&mut sim, i, r, Duration::from_secs(1)),
            Ok(value_of(key))
        );
    }
    // Every member asks for every key: hits, hot copies or the owner's.
    for i in 0..3 {
        for key in &keys {
            let r = sim.get(i, GROUP, key);
            assert_eq!(
                finish(&mut sim, i, r, Duration::from_secs(1)),
                Ok(value_of(key))
            );
        }
    }
    for key in &keys {
        assert_eq!(sim.loads_of(GROUP, key), 1, "{key}");
    }
    for n in &sim.nodes {
        n.node.validate().unwrap();
    }
}
