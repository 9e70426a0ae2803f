//! Hostile clients, slow and hung origins, stopped peers: each has a bound,
//! checked here on the pure state machine with a fake clock.

mod common;

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use groupcache_core::frame::decode_all;
use groupcache_core::node::{
    CloseReason, Config, ConnId, Error, Get, GetId, GroupConfig, LoadId, Node, Output, Refused,
};
use groupcache_core::testing::epoch;
use groupcache_core::testing::{request_frame, Fault, Sim, SimLoader};
use groupcache_core::wire::{encode_frame, Request, Response};

use common::{finish, ok_loader, value_of, GROUP};

fn cluster(n: usize, group: impl Fn() -> GroupConfig + 'static) -> Sim {
    Sim::new(
        n,
        |a: &str| Config::new(a),
        move |node: &mut Node| node.add_group(group()).unwrap(),
        ok_loader,
    )
}

/// Runs a get on node `i` to its end; returns the result and how long it
/// took in simulated time.
fn timed_get(
    sim: &mut Sim,
    i: usize,
    key: &str,
    limit: Duration,
) -> (Result<Bytes, Error>, Duration) {
    let start = sim.now;
    let r = sim.get(i, GROUP, key);
    (finish(sim, i, r, limit), sim.now - start)
}

/// Gets spread over three nodes while the owner's origin takes longer than
/// the request timeout (3 s): the owner's keepalives keep the requesters
/// waiting, and the origin is asked once.
#[test]
fn a_load_slower_than_the_request_timeout_happens_once_in_the_cluster() {
    for load in [Duration::from_secs(5), Duration::from_secs(20)] {
        let mut sim = cluster(3, || GroupConfig::new(GROUP, 1 << 20));
        sim.load_latency = load;
        let key = sim.key_owned_by(2, 0);
        let mut pending: Vec<(usize, GetId)> = Vec::new();
        // 300 gets in three waves: at once, after 1 s, and after a whole
        // request timeout has passed.
        for wave in 0..3 {
            for n in 0..100 {
                let i = n % 3;
                match sim.get(i, GROUP, &key) {
                    Err(id) => pending.push((i, id)),
                    Ok(r) => panic!("cold key answered at once: {r:?}"),
                }
            }
            sim.run_for(Duration::from_millis([1000, 2500, 0][wave]));
        }
        let done = sim.run_until(load + Duration::from_secs(5), |s| {
            pending.iter().all(|&(i, id)| s.result(i, id).is_some())
        });
        assert!(done, "{load:?}: gets did not finish");
        for &(i, id) in &pending {
            assert_eq!(sim.result(i, id).unwrap(), &Ok(value_of(&key)));
        }
        assert_eq!(sim.loads_of(GROUP, &key), 1, "{load:?}: one origin load");
        assert_eq!(sim.load_calls[0].0, 2, "loaded by the owner");
    }
}

/// An origin that never answers: the load is cancelled at the group's load
/// timeout, every waiter in the cluster gets an error that says so, and no
/// requester loads the key a second time.
#[test]
fn a_hung_origin_is_cancelled_at_the_load_timeout_and_asked_once() {
    let mut sim = cluster(3, || {
        let mut g = GroupConfig::new(GROUP, 1 << 20);
        g.load_timeout = Duration::from_secs(10);
        g
    });
    sim.hang_loads = true;
    let key = sim.key_owned_by(2, 0);
    let ids: Vec<(usize, GetId)> = (0..3)
        .map(|i| (i, sim.get(i, GROUP, &key).unwrap_err()))
        .collect();
    let all = |s: &Sim| ids.iter().all(|&(i, id)| s.result(i, id).is_some());
    assert!(
        !sim.run_until(Duration::from_secs(9), all),
        "requesters gave up on a live owner before its load timeout"
    );
    assert!(sim.run_until(Duration::from_secs(5), all));
    for &(i, id) in &ids {
        match sim.result(i, id).unwrap() {
            Err(Error::Load(m)) => {
                assert!(m.contains("g/") && m.contains("timed out"), "node {i}: {m}")
            }
            other => panic!("node {i}: {other:?}"),
        }
    }
    assert_eq!(sim.loads_of(GROUP, &key), 1);
    assert_eq!(sim.cancelled.len(), 1, "the hung load was cancelled");
    assert_eq!(sim.cancelled[0].0, 2);
    assert_eq!(sim.nodes[2].node.stats(GROUP).unwrap().load_timeouts, 1);
}

/// A stopped owner (connections accepted, nothing answered) costs one
/// request timeout once; then its keys are loaded locally without waiting
/// while it is backed off and while it is probed, and traffic returns to it
/// once a probe is answered.
#[test]
fn a_stopped_owner_costs_one_request_timeout_then_nothing() {
    let mut sim = cluster(3, || GroupConfig::new(GROUP, 1 << 20));
    let request_timeout = Config::new("x").request_timeout;
    let load = sim.load_latency;
    sim.faults.insert(2, Fault::Frozen);
    let keys: Vec<String> = (0..12).map(|n| sim.key_owned_by(2, n)).collect();
    let limit = Duration::from_secs(10);
    let (r, took) = timed_get(&mut sim, 0, &keys[0], limit);
    assert_eq!(r, Ok(value_of(&keys[0])));
    assert!(
        took <= request_timeout + load + Duration::from_millis(10),
        "{took:?}"
    );
    // Backed off, then (past the backoff) probed: neither makes a get wait.
    let served_without_waiting = |sim: &mut Sim, keys: &[String]| {
        for k in keys {
            let (r, took) = timed_get(sim, 0, k, limit);
            assert_eq!(r, Ok(value_of(k)));
            assert!(
                took <= load + Duration::from_millis(2),
                "{k} waited {took:?}"
            );
        }
    };
    served_without_waiting(&mut sim, &keys[1..4]);
    sim.run_for(Duration::from_secs(2));
    served_without_waiting(&mut sim, &keys[4..6]);
    // The owner comes back. The probe to the frozen process times out; the
    // next one, after another backoff, is answered and brings it back.
    sim.faults.remove(&2);
    sim.run_for(Duration::from_secs(5));
    let (r, _) = timed_get(&mut sim, 0, &keys[6], limit);
    assert_eq!(r, Ok(value_of(&keys[6])));
    sim.run_for(Duration::from_secs(1));
    let served_before = sim.nodes[2].node.stats(GROUP).unwrap().server_requests;
    let (r, _) = timed_get(&mut sim, 0, &keys[7], limit);
    assert_eq!(r, Ok(value_of(&keys[7])));
    assert_eq!(
        sim.nodes[2].node.stats(GROUP).unwrap().server_requests,
        served_before + 1,
        "the owner serves its keys again"
    );
}

/// A value larger than the group's limit is an error, counted, never cached,
/// and final for the requesters (no second origin load).
#[test]
fn a_value_over_the_limit_is_refused_and_never_cached() {
    let mut sim = Sim::new(
        3,
        |a: &str| Config::new(a),
        |node: &mut Node| {
            let mut g = GroupConfig::new(GROUP, 1 << 20);
            g.max_value = 100;
            node.add_group(g).unwrap();
        },
        |_| -> SimLoader { Box::new(|_, _| Ok(Bytes::from(vec![b'x'; 101]).into())) },
    );
    let key = sim.key_owned_by(2, 0);
    let (r, _) = timed_get(&mut sim, 0, &key, Duration::from_secs(5));
    match r {
        Err(Error::Load(m)) => assert!(
            m.contains(&format!("g/{key}"))
                && m.contains("value of 101 bytes exceeds the limit of 100"),
            "{m}"
        ),
        other => panic!("{other:?}"),
    }
    assert_eq!(sim.loads_of(GROUP, &key), 1, "the requester does not retry");
    assert_eq!(sim.nodes[2].node.stats(GROUP).unwrap().values_too_large, 1);
    let (r, _) = timed_get(&mut sim, 2, &key, Duration::from_secs(5));
    assert!(r.is_err());
    assert_eq!(sim.loads_of(GROUP, &key), 2, "not cached: loaded again");
}

/// The default limit is what fits in a frame: no node sends a frame it
/// would refuse itself.
#[test]
fn the_default_value_limit_fits_in_a_frame() {
    let now = epoch();
    let mut cfg = Config::new("a");
    cfg.max_frame = 1000;
    let mut node = Node::new(cfg);
    node.add_group(GroupConfig::new(GROUP, 1 << 20)).unwrap();
    let mut last_ok = 0;
    for size in [900, 936, 937, 990] {
        let key = format!("k{size}");
        let Get::Pending(get) = node.get(now, GROUP, &key) else {
            panic!()
        };
        let id = load_id(&mut node);
        node.handle_load(now, id, Ok(Bytes::from(vec![1; size]).into()));
        match node.poll_output() {
            Some(Output::Done {
                get: g,
                result: Ok(_),
            }) if g == get => last_ok = size,
            Some(Output::Done { result: Err(_), .. }) => {}
            other => panic!("{other:?}"),
        }
    }
    // 1000 minus the response overhead.
    assert_eq!(last_ok, 936);
}

fn load_id(node: &mut Node) -> LoadId {
    match node.poll_output() {
        Some(Output::Load { id, .. }) => id,
        other => panic!("expected a load, got {other:?}"),
    }
}

/// Loads of a group beyond its cap wait for a free slot, oldest first.
#[test]
fn concurrent_loads_are_capped_and_the_rest_wait() {
    let now = epoch();
    let mut node = Node::new(Config::new("a"));
    let mut g = GroupConfig::new(GROUP, 1 << 20);
    g.max_loads = 2;
    node.add_group(g).unwrap();
    let gets: Vec<GetId> = (0..5)
        .map(|k| match node.get(now, GROUP, &format!("k{k}")) {
            Get::Pending(id) => id,
            Get::Ready(r) => panic!("{r:?}"),
        })
        .collect();
    let mut started = Vec::new();
    while let Some(o) = node.poll_output() {
        match o {
            Output::Load { id, key, .. } => started.push((id, key)),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(started.len(), 2, "two loads at once");
    let mut done = 0;
    while let Some((id, key)) = started.first().cloned() {
        started.remove(0);
        node.handle_load(now, id, Ok(value_of(&key).into()));
        while let Some(o) = node.poll_output() {
            match o {
                Output::Done { result, .. } => {
                    assert_eq!(result, Ok(value_of(&key)));
                    done += 1;
                }
                Output::Load { id, key, .. } => started.push((id, key)),
                other => panic!("{other:?}"),
            }
        }
        assert!(started.len() <= 2);
        node.validate().unwrap();
    }
    assert_eq!(done, gets.len());
}

const CLIENT: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 9));

/// A client that pipelines gets of a large cached value and never reads:
/// the node queues at most its byte bound of answers, then stops reading
/// that connection, and resumes as the answers are written. Every answer
/// sends the cache's own buffer, not a copy.
#[test]
fn unread_answers_are_bounded_and_share_the_cached_value() {
    let now = epoch();
    let mut cfg = Config::new("a");
    cfg.max_unwritten = 1 << 20;
    let mut node = Node::new(cfg);
    node.add_group(GroupConfig::new(GROUP, 64 << 20)).unwrap();
    let value = Bytes::from(vec![7u8; 256 << 10]);
    let Get::Pending(_) = node.get(now, GROUP, "big") else {
        panic!()
    };
    let id = load_id(&mut node);
    node.handle_load(now, id, Ok(value.clone().into()));
    while node.poll_output().is_some() {}
    // The cache keeps its own copy, apart from the loader's buffer.
    let cached = node.peek(GROUP, "big").unwrap();
    assert_eq!(cached, value);
    let conn = node.accept(now, CLIENT).unwrap();
    let mut pipelined = BytesMut::new();
    for _ in 0..100 {
        pipelined.extend_from_slice(&request_frame(GROUP, "big"));
    }
    node.handle_data(now, conn, &pipelined);
    let mut wire = Vec::new();
    let mut batches = 0;
    loop {
        let mut sent = 0;
        while let Some(o) = node.poll_output() {
            match o {
                Output::Send { conn: c, data } => {
                    assert_eq!(c, conn);
                    if data.len() == value.len() {
                        assert_eq!(data.as_ptr(), cached.as_ptr(), "value copied");
                    }
                    sent += data.len();
                    wire.extend_from_slice(&data);
                }
                other => panic!("{other:?}"),
            }
        }
        assert!(
            sent <= (1 << 20) + value.len() + 64,
            "{sent} bytes queued at once"
        );
        if node.wants_read(conn) {
            break;
        }
        batches += 1;
        node.handle_written(now, conn, sent);
        node.validate().unwrap();
    }
    assert!(batches >= 20, "paused only {batches} times");
    let (frames, rest) = decode_all(&wire, 1 << 20).unwrap();
    assert_eq!((frames.len(), rest), (100, 0));
    for f in frames {
        assert_eq!(Response::decode_payload(&f).unwrap().value, value);
    }
}

/// A connection that only sends empty frames is closed at the idle timeout;
/// one that sends real requests stays.
#[test]
fn empty_frames_do_not_keep_a_connection_open() {
    let mut now = epoch();
    let mut cfg = Config::new("a");
    cfg.idle_timeout = Duration::from_secs(10);
    let mut node = Node::new(cfg);
    node.add_group(GroupConfig::new(GROUP, 1 << 20)).unwrap();
    let Get::Pending(_) = node.get(now, GROUP, "k") else {
        panic!()
    };
    let id = load_id(&mut node);
    node.handle_load(now, id, Ok(value_of("k").into()));
    while node.poll_output().is_some() {}
    let idle = node.accept(now, CLIENT).unwrap();
    let busy = node.accept(now, CLIENT).unwrap();
    let mut closed = Vec::new();
    for _ in 0..10 {
        now += Duration::from_secs(4);
        node.handle_timeout(now);
        node.handle_data(now, idle, &0i64.to_le_bytes());
        node.handle_data(now, busy, &request_frame(GROUP, "k"));
        while let Some(o) = node.poll_output() {
            if let Output::Close { conn, reason } = o {
                closed.push((conn, reason, now));
            }
        }
    }
    assert_eq!(closed.len(), 1, "{closed:?}");
    let (conn, reason, _) = &closed[0];
    assert_eq!((*conn, reason), (idle, &CloseReason::Idle));
}

/// Peers have their own budget of connections; one client address gets only
/// its share of the clients' budget.
#[test]
fn peers_and_each_client_address_have_their_own_budget() {
    let now = epoch();
    let mut cfg = Config::new("192.0.2.1:8001");
    cfg.max_inbound = 4;
    cfg.max_inbound_per_addr = 2;
    cfg.max_peer_inbound = 2;
    let mut node = Node::new(cfg);
    node.set_peers(
        now,
        ["192.0.2.1:8001", "192.0.2.2:8001", "[2001:db8::2]:8001"],
    );
    let ip = |s: &str| -> IpAddr { s.parse().unwrap() };
    let a = node.accept(now, ip("10.0.0.1")).unwrap();
    node.accept(now, ip("10.0.0.1")).unwrap();
    assert_eq!(
        node.accept(now, ip("10.0.0.1")),
        Err(Refused::TooManyFromAddr)
    );
    node.accept(now, ip("10.0.0.2")).unwrap();
    node.accept(now, ip("10.0.0.2")).unwrap();
    assert_eq!(node.accept(now, ip("10.0.0.3")), Err(Refused::TooMany));
    // Clients are full; peers still get in, over IPv4 (also mapped) and IPv6.
    node.accept(now, ip("::ffff:192.0.2.2")).unwrap();
    node.accept(now, ip("2001:db8::2")).unwrap();
    assert_eq!(node.accept(now, ip("192.0.2.2")), Err(Refused::TooMany));
    // A closed connection frees its place.
    node.handle_closed(now, a);
    node.accept(now, ip("10.0.0.3")).unwrap();
    node.validate().unwrap();
}

/// When shutdown's time is up, a request still waiting for its load gets an
/// explicit error before its connection closes, and the load is cancelled.
#[test]
fn abort_answers_open_requests_before_closing() {
    let now = epoch();
    let mut node = Node::new(Config::new("a"));
    node.add_group(GroupConfig::new(GROUP, 1 << 20)).unwrap();
    let conn = node.accept(now, CLIENT).unwrap();
    node.handle_data(now, conn, &request_frame(GROUP, "slow"));
    let id = load_id(&mut node);
    node.shutdown(now);
    assert_eq!(node.poll_output(), None, "busy connections stay open");
    node.abort(now);
    let outputs: Vec<Output> = std::iter::from_fn(|| node.poll_output()).collect();
    let sends: Vec<&Bytes> = outputs
        .iter()
        .filter_map(|o| match o {
            Output::Send { data, .. } => Some(data),
            _ => None,
        })
        .collect();
    assert_eq!(sends.len(), 1, "{outputs:?}");
    let (frames, _) = decode_all(sends[0], 1 << 20).unwrap();
    let resp = Response::decode_payload(&frames[0]).unwrap();
    assert_eq!(
        (resp.code, &resp.value[..]),
        (500, &b"node is shutting down"[..])
    );
    let close_at = outputs
        .iter()
        .position(|o| matches!(o, Output::Close { conn: c, .. } if *c == conn))
        .expect("closed");
    let send_at = outputs
        .iter()
        .position(|o| matches!(o, Output::Send { .. }))
        .unwrap();
    assert!(send_at < close_at, "answer before close");
    assert!(outputs.contains(&Output::CancelLoad { id }));
    assert!(node.is_idle());
    node.handle_load(now, id, Ok(value_of("slow").into()));
    assert_eq!(node.poll_output(), None, "a late report is ignored");
}

/// Keepalives go only to requesters that asked for them, a third of the
/// request timeout apart, while an answer is pending.
#[test]
fn keepalives_only_for_requesters_that_ask() {
    let mut now = epoch();
    let mut node = Node::new(Config::new("a"));
    node.add_group(GroupConfig::new(GROUP, 1 << 20)).unwrap();
    let asks = node.accept(now, CLIENT).unwrap();
    let plain = node.accept(now, CLIENT).unwrap();
    let mut req = BytesMut::new();
    let r = Request {
        group: GROUP.into(),
        key: "slow".into(),
        ext: true,
        progress: true,
        ..Default::default()
    };
    encode_frame(&r, &mut req);
    node.handle_data(now, asks, &req);
    node.handle_data(now, plain, &request_frame(GROUP, "slow"));
    let id = load_id(&mut node);
    assert_eq!(node.poll_output(), None, "the second get joined the load");
    let mut keepalives: Vec<(ConnId, Duration)> = Vec::new();
    let start = now;
    for _ in 0..50 {
        now += Duration::from_millis(100);
        node.handle_timeout(now);
        while let Some(o) = node.poll_output() {
            match o {
                Output::Send { conn, data } => {
                    let (frames, _) = decode_all(&data, 1 << 20).unwrap();
                    assert!(Response::decode_payload(&frames[0]).unwrap().keepalive);
                    keepalives.push((conn, now - start));
                }
                other => panic!("{other:?}"),
            }
        }
    }
    assert!(keepalives.iter().all(|(c, _)| *c == asks));
    let at: Vec<u64> = keepalives
        .iter()
        .map(|(_, t)| t.as_millis() as u64)
        .collect();
    assert_eq!(at, vec![1000, 2000, 3000, 4000, 5000]);
    node.handle_load(now, id, Ok(value_of("slow").into()));
    let answered = std::iter::from_fn(|| node.poll_output()).count();
    assert_eq!(answered, 2);
}

/// A key too long for the owner's frame limit is loaded here rather than
/// sent in a frame the owner would refuse.
#[test]
fn a_request_too_large_for_a_frame_is_never_sent() {
    let now = epoch();
    let mut cfg = Config::new("a:1");
    cfg.max_frame = 200;
    let mut node = Node::new(cfg);
    node.set_peers(now, ["b:1"]);
    node.add_group(GroupConfig::new(GROUP, 1 << 20)).unwrap();
    let long = "k".repeat(300);
    let Get::Pending(_) = node.get(now, GROUP, &long) else {
        panic!()
    };
    assert!(matches!(node.poll_output(), Some(Output::Load { .. })));
    assert_eq!(node.poll_output(), None, "nothing sent to the owner");
    let Get::Pending(_) = node.get(now, GROUP, "short") else {
        panic!()
    };
    assert!(matches!(node.poll_output(), Some(Output::Connect { .. })));
}
