//! Connections in deterministic scenarios: what a bad peer, a full node,
//! expiring requests, pipelining and shutdown do to them.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::{cluster, ok_loader, GROUP};
use groupcache_core::node::{Config, GroupConfig, Node};
use groupcache_core::testing::{Fault, Sim};

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
