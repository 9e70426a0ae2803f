//! Deterministic cluster scenarios: in-memory links, a fake clock, counted
//! loaders. Every run is the same run.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::{cluster, finish, value_of, GROUP};
use groupcache_core::node::{Config, Error, GroupConfig, LoadError, Node};
use groupcache_core::testing::{Fault, Sim};

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
