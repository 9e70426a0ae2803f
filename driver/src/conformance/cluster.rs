//! Conformance cases: gets and routing, the wire, bad input, membership,
//! the allowlist and shutdown.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use groupcache_core::testing::vectors;

use super::Suite;
use crate::{sample, transport, Error, LoadError, Runtime};

use super::{
    bounded, cluster, cold_gets_over_three_nodes, get_in_background, index_of, raw, raw_get,
    read_frame, read_to_close, refused, request_frame, Loads,
};

/// A get through any node returns the value, loaded once, by the owner.
pub async fn gets_through_any_node_return_the_owners_value<R: Runtime>(cx: Suite<R>) {
    let rt = cx.rt.clone();
    let (nodes, loads) = cluster(&cx, 3, |b| b).await;
    for (group, table) in sample::GROUPS {
        for (key, value) in table.iter() {
            for n in &nodes {
                let got = bounded(&rt, "get", n.get(group, key)).await;
                assert_eq!(
                    got,
                    Ok(Bytes::from_static(value.as_bytes())),
                    "{group}/{key}"
                );
            }
            let owner = index_of(&nodes, &nodes[0].owner(key).unwrap());
            assert_eq!(
                loads.of(group, key),
                vec![owner],
                "{group}/{key} loaded once, by its owner"
            );
        }
    }
    let missing = bounded(&rt, "get", nodes[1].get("score", "kkk")).await;
    assert_eq!(missing, Err(Error::NotFound("kkk not exist".into())));
    assert_eq!(
        loads.of("score", "kkk").len(),
        1,
        "not found is final: no fallback load"
    );
    let unknown = bounded(&rt, "get", nodes[0].get("nope", "Tom")).await;
    assert_eq!(unknown, Err(Error::NoGroup("nope".into())));
    for n in &nodes {
        n.shutdown().await;
    }
}

/// 200 concurrent gets of one cold key over three nodes load it once.
pub async fn concurrent_cold_gets_load_once_in_the_cluster<R: Runtime>(cx: Suite<R>) {
    // A slow origin, so that the gets overlap the load.
    let calls =
        cold_gets_over_three_nodes(&cx, Duration::from_secs(3), Duration::from_millis(200), 200)
            .await;
    assert_eq!(calls, 1, "one load in the whole cluster");
}

/// Keys owned by a stopped node are served by the others within the request
/// timeout.
pub async fn stopped_node_keys_still_served_within_the_timeout<R: Runtime>(cx: Suite<R>) {
    let rt = cx.rt.clone();
    let (nodes, loads) = cluster(&cx, 3, |b| b).await;
    let victim = nodes[2].self_addr();
    let keys: Vec<String> = (0..)
        .map(|i| format!("k{i}"))
        .filter(|k| nodes[0].owner(k).as_deref() == Some(victim.as_str()))
        .take(3)
        .collect();
    nodes[2].shutdown().await;
    // The stopped node refuses connections: a get falls back at once, or
    // at worst after the request timeout (500 ms). What must never happen
    // is a wait for the load timeout or the longest wait (30 s and more);
    // the bound sits far from both, so a busy machine cannot trip it.
    let bound = Duration::from_secs(10);
    for k in &keys {
        for n in &nodes[..2] {
            let start = rt.now();
            let r = bounded(&rt, "get", n.get("score", k)).await;
            assert_eq!(r, Err(Error::NotFound(format!("{k} not exist").into())));
            let took = rt.now() - start;
            assert!(took < bound, "{k} took {took:?}");
        }
    }
    // Each survivor loaded the keys itself.
    for k in &keys {
        let mut by = loads.of("score", k);
        by.sort_unstable();
        assert_eq!(by, vec![0, 1], "{k}");
    }
    for n in &nodes[..2] {
        n.shutdown().await;
    }
}

/// Garbage, a huge length, a negative length and a connection closed
/// mid-frame each close that connection only.
pub async fn bad_input_closes_only_that_connection<R: Runtime>(cx: Suite<R>) {
    let rt = cx.rt.clone();
    let (nodes, _) = cluster(&cx, 1, |b| b.configure(|c| c.max_frame = 1 << 20)).await;
    let node = &nodes[0];
    let (mut good_r, mut good_w) = raw(&cx, node).await;
    let huge = (1i64 << 40).to_le_bytes().to_vec();
    let negative = (-8i64).to_le_bytes().to_vec();
    let mut garbage = vec![0xAB; 64];
    garbage[..8].copy_from_slice(&60i64.to_le_bytes());
    for bad in [huge, negative, garbage] {
        let (mut r, mut w) = raw(&cx, node).await;
        w.write_all(&bad).await.unwrap();
        w.flush().await.unwrap();
        let answer = read_to_close(&rt, &mut r).await;
        assert!(answer.is_empty(), "no answer to bad input");
        // The good connection is still served.
        good_w
            .write_all(&request_frame("score", "Tom"))
            .await
            .unwrap();
        let frame = read_frame(&rt, &mut good_r).await;
        assert!(frame.ends_with(b"\x0a\x03630\x10\xc8\x01"), "{frame:?}");
    }
    // Closed mid-frame: the server just forgets it.
    let (_, mut w) = raw(&cx, node).await;
    let half = request_frame("score", "Jack");
    w.write_all(&half[..half.len() / 2]).await.unwrap();
    w.close().await.unwrap();
    drop(w);
    good_w
        .write_all(&request_frame("score", "Sam"))
        .await
        .unwrap();
    let frame = read_frame(&rt, &mut good_r).await;
    assert!(frame.ends_with(b"\x0a\x03567\x10\xc8\x01"));
    node.shutdown().await;
}

/// A client that starts a frame and trickles it is cut off after the
/// request timeout; others are served meanwhile.
pub async fn slow_sender_is_cut_off<R: Runtime>(cx: Suite<R>) {
    let rt = cx.rt.clone();
    let limit = Duration::from_millis(300);
    let (nodes, _) = cluster(&cx, 1, |b| b.configure(|c| c.request_timeout = limit)).await;
    let node = &nodes[0];
    let (mut r, mut w) = raw(&cx, node).await;
    let frame = request_frame("score", "Tom");
    let start = rt.now();
    w.write_all(&frame[..9]).await.unwrap();
    w.flush().await.unwrap();
    let tick = rt.clone();
    let trickle = async {
        for b in &frame[9..frame.len() - 1] {
            tick.sleep(limit / 4).await;
            if w.write_all(&[*b]).await.is_err() {
                break;
            }
        }
        std::future::pending::<()>().await
    };
    let answer = futures_lite::future::or(read_to_close(&rt, &mut r), async {
        trickle.await;
        unreachable!()
    })
    .await;
    assert!(answer.is_empty());
    let took = rt.now() - start;
    assert!(took >= limit, "cut off after {took:?}");
    let v = bounded(
        &rt,
        "get",
        cx.client(node.local_addr().to_string()).get("score", "Tom"),
    )
    .await;
    assert_eq!(v.unwrap(), Bytes::from_static(b"630"));
    node.shutdown().await;
}

/// Request frames of the Go vectors get byte-identical response frames.
pub async fn wire_vectors_answered_byte_for_byte<R: Runtime>(cx: Suite<R>) {
    let rt = cx.rt.clone();
    let (nodes, _) = cluster(&cx, 1, |b| {
        b.group("empty", 1024, None, |key: String| async move {
            Err::<Bytes, _>(LoadError::NotFound(format!("{key} not exist")))
        })
    })
    .await;
    let node = &nodes[0];
    let frames = vectors::frames();
    let find_resp = |code: i32, value: &[u8]| {
        frames
            .iter()
            .find(|f| !f.request && f.code == code && f.value == value)
            .map(|f| f.frame.clone())
            .expect("vector")
    };
    let find_req = |group: &str, key: &str| {
        frames
            .iter()
            .find(|f| f.request && f.group == group && f.key == key)
            .map(|f| f.frame.clone())
            .expect("vector")
    };
    let (mut r, mut w) = raw(&cx, node).await;
    // score/Tom → 630, 200.
    w.write_all(&find_req("score", "Tom")).await.unwrap();
    assert_eq!(read_frame(&rt, &mut r).await, find_resp(200, b"630"));
    // A group this node does not have → 404 "no group".
    w.write_all(&find_req("g", "")).await.unwrap();
    assert_eq!(read_frame(&rt, &mut r).await, find_resp(404, b"no group"));
    // A loader error → 500 with its message, and no extension fields.
    w.write_all(&request_frame("empty", "Tom")).await.unwrap();
    assert_eq!(
        read_frame(&rt, &mut r).await,
        find_resp(500, b"Tom not exist")
    );
    // Every request vector gets a well-formed answer on the same connection.
    for f in frames.iter().filter(|f| f.request) {
        w.write_all(&f.frame).await.unwrap();
        let resp = read_frame(&rt, &mut r).await;
        let known = sample::GROUPS
            .iter()
            .find(|(g, _)| *g == f.group)
            .map(|(_, table)| table.iter().any(|(k, _)| *k == f.key));
        let code = match known {
            None => 404,
            Some(true) => 200,
            Some(false) => 500,
        };
        let decoded = groupcache_core::wire::Response::decode_payload(&resp[8..]).unwrap();
        assert_eq!(decoded.code, code, "{:?}/{:?}", f.group, f.key);
    }
    node.shutdown().await;
}

/// The client decodes the Go vectors' response frames, served by a fake
/// node that answers with them.
pub async fn client_decodes_vector_responses<R: Runtime>(cx: Suite<R>) {
    let rt = cx.rt.clone();
    let listener = rt.bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let addr = rt.local_addr(&listener).unwrap();
    let answers: Vec<Vec<u8>> = vectors::frames()
        .into_iter()
        .filter(|f| !f.request)
        .map(|f| f.frame)
        .collect();
    let expected: Vec<_> = vectors::frames()
        .into_iter()
        .filter(|f| !f.request)
        .collect();
    let (server_rt, server_tls) = (rt.clone(), cx.tls.clone());
    let served = answers.clone();
    rt.spawn(async move {
        let (stream, _) = server_rt.accept(&listener).await.unwrap();
        let tls = server_tls.as_ref();
        let (mut r, mut w) = transport::accepted(&server_rt, tls, stream, super::CASE_LIMIT)
            .await
            .unwrap();
        let mut buf = vec![0u8; 4096];
        for answer in served {
            // One answer per request; the client reuses the connection.
            let _ = r.read(&mut buf).await;
            if w.write_all(&answer).await.is_err() {
                return;
            }
        }
    });
    let client = cx.client(addr.to_string());
    for f in expected {
        let got = bounded(&rt, "client get", client.get("g", "k")).await;
        match f.code {
            200 => assert_eq!(got.unwrap(), Bytes::from(f.value.clone())),
            404 => assert!(matches!(got, Err(Error::NoGroup(_)))),
            _ => match got {
                Err(Error::Load(m)) => {
                    assert_eq!(m.as_bytes(), &f.value[..]);
                }
                other => panic!("code {}: {other:?}", f.code),
            },
        }
    }
}

/// A loader that panics fails that key's waiters; the next get loads again.
/// The panicking load is held until both gets have joined it, so both see
/// its failure whatever the scheduling.
pub async fn panicking_loader_fails_its_waiters_only<R: Runtime>(cx: Suite<R>) {
    let rt = cx.rt.clone();
    let calls = Arc::new(AtomicUsize::new(0));
    let (release_tx, release_rx) = async_channel::bounded::<()>(1);
    let c = calls.clone();
    let node = cx
        .builder()
        .group("p", 1 << 20, None, move |key: String| {
            // Only the first load of "boom" panics, once released.
            let first_boom = key == "boom" && c.fetch_add(1, Ordering::SeqCst) == 0;
            let release = release_rx.clone();
            async move {
                if first_boom {
                    let _ = release.recv().await;
                    panic!("origin exploded");
                }
                Ok(format!("v-{key}"))
            }
        })
        .start()
        .await
        .unwrap();
    let release = async {
        // Both gets are in the flight once one of them joined the other.
        while node.stats("p").unwrap().loads_deduped < 1 {
            rt.sleep(Duration::from_millis(1)).await;
        }
        release_tx.send(()).await.unwrap();
    };
    let (((a, b), other), ()) = bounded(
        &rt,
        "gets",
        futures_lite::future::zip(
            futures_lite::future::zip(
                futures_lite::future::zip(node.get("p", "boom"), node.get("p", "boom")),
                node.get("p", "fine"),
            ),
            release,
        ),
    )
    .await;
    for r in [a, b] {
        match r {
            Err(Error::Load(m)) => assert!(m.contains("origin exploded"), "{m}"),
            other => panic!("waiter got {other:?}"),
        }
    }
    assert_eq!(other, Ok(Bytes::from_static(b"v-fine")));
    let again = bounded(&rt, "get", node.get("p", "boom")).await;
    assert_eq!(again, Ok(Bytes::from_static(b"v-boom")));
    node.shutdown().await;
}

/// A node joins and another leaves at run time: gets keep succeeding and
/// keys move to their new owners.
pub async fn peer_list_replaced_at_run_time<R: Runtime>(cx: Suite<R>) {
    let rt = cx.rt.clone();
    let loads = Loads::default();
    let mut counted = Vec::new();
    for i in 0..3 {
        let l = loads.clone();
        let n = cx
            .builder()
            .configure(|c| c.request_timeout = Duration::from_millis(500))
            .group("m", 1 << 20, None, move |key: String| {
                l.record(i, "m", &key);
                async move { Ok(format!("v-{key}")) }
            })
            .start()
            .await
            .unwrap();
        counted.push(n);
    }
    let addrs: Vec<String> = counted.iter().map(|n| n.self_addr()).collect();
    for n in &counted {
        n.set_peers(&addrs[..2]);
    }
    // Forty keys, among them some that each node owns once all three are
    // members, whatever ports the OS chose.
    let full = groupcache_core::ring::Ring::with_peers(50, &addrs);
    let mut keys: Vec<String> = Vec::new();
    for i in 0.. {
        let k = format!("key{i}");
        let needed = addrs
            .iter()
            .any(|a| !keys.iter().any(|x| full.owner(x) == Some(a.as_str())));
        if keys.len() >= 40 && !needed {
            break;
        }
        if keys.len() < 40 || !keys.iter().any(|x| full.owner(x) == full.owner(&k)) {
            keys.push(k);
        }
    }
    let owned_by_1: Vec<String> = keys
        .iter()
        .filter(|k| full.owner(k) == Some(addrs[1].as_str()))
        .cloned()
        .collect();
    for k in &keys {
        assert_eq!(
            counted[0].get("m", k).await,
            Ok(Bytes::from(format!("v-{k}")))
        );
    }
    assert!(loads.0.lock().unwrap().iter().all(|(i, _, _)| *i < 2));
    // Node 2 joins.
    for n in &counted {
        n.set_peers(&addrs);
    }
    let moved: Vec<&String> = keys
        .iter()
        .filter(|k| counted[0].owner(k).as_deref() == Some(addrs[2].as_str()))
        .collect();
    assert!(!moved.is_empty());
    for k in &moved {
        // Asked through node 2 itself: it owns the key now, and its
        // previous owner hands the value over instead of the origin.
        assert_eq!(
            counted[2].get("m", k).await,
            Ok(Bytes::from(format!("v-{k}")))
        );
        assert_eq!(loads.of("m", k).len(), 1, "{k} loaded again");
        assert_eq!(counted[2].owner(k).as_deref(), Some(addrs[2].as_str()));
    }
    let s = counted[2].stats("m").unwrap();
    assert_eq!(s.handoff_hits as usize, moved.len());
    assert_eq!(s.local_loads, 0);
    // Node 1 leaves and stops.
    counted[1].shutdown().await;
    let without: Vec<String> = vec![addrs[0].clone(), addrs[2].clone()];
    counted[0].set_peers(&without);
    counted[2].set_peers(&without);
    for k in &keys {
        let r = bounded(&rt, "get", counted[0].get("m", k)).await;
        assert_eq!(r, Ok(Bytes::from(format!("v-{k}"))));
    }
    assert!(!owned_by_1.is_empty());
    for k in &owned_by_1 {
        let owner = counted[0].owner(k).unwrap();
        assert!(
            owner == addrs[0] || owner == addrs[2],
            "{k} still on node 1"
        );
    }
    counted[0].shutdown().await;
    counted[2].shutdown().await;
}

/// Addresses outside the allowlist are disconnected at once.
pub async fn allowlist_refuses_other_addresses<R: Runtime>(cx: Suite<R>) {
    let rt = cx.rt.clone();
    let (nodes, _) = cluster(&cx, 1, |b| {
        b.configure(|c| c.allow = Some(["10.0.0.0/8".parse().unwrap()].into()))
    })
    .await;
    assert!(refused(&cx, &nodes[0]).await);
    nodes[0].shutdown().await;
    let (nodes, _) = cluster(&cx, 1, |b| {
        b.configure(|c| {
            c.allow = Some(["127.0.0.0/8".parse().unwrap(), "::1/128".parse().unwrap()].into())
        })
    })
    .await;
    let c = cx.client(nodes[0].local_addr().to_string());
    assert_eq!(
        bounded(&rt, "get", c.get("score", "Tom")).await.unwrap(),
        "630"
    );
    nodes[0].shutdown().await;
}

/// Shutdown waits for a request in flight, then refuses new work.
pub async fn shutdown_lets_requests_in_flight_finish<R: Runtime>(cx: Suite<R>) {
    let rt = cx.rt.clone();
    let (started_tx, started_rx) = async_channel::bounded::<()>(1);
    let (release_tx, release_rx) = async_channel::bounded::<()>(1);
    let node = cx
        .builder()
        .group("s", 1024, None, move |_key: String| {
            let (started, release) = (started_tx.clone(), release_rx.clone());
            async move {
                let _ = started.send(()).await;
                let _ = release.recv().await;
                Ok("done")
            }
        })
        .start()
        .await
        .unwrap();
    let rx = get_in_background(&cx, &node, "s", "k");
    bounded(&rt, "load start", started_rx.recv()).await.unwrap();
    let stopped = AtomicUsize::new(0);
    let stop = async {
        node.shutdown().await;
        stopped.store(1, Ordering::SeqCst);
    };
    let work = async {
        // Shutdown has begun (zip polls it first): new gets are refused, and
        // it waits for the request in flight.
        assert_eq!(node.get("s", "other").await, Err(Error::Shutdown));
        assert_eq!(
            stopped.load(Ordering::SeqCst),
            0,
            "shutdown waits for the request"
        );
        release_tx.send(()).await.unwrap();
        bounded(&rt, "answer", rx.recv())
            .await
            .unwrap()
            .map_err(|e| e.to_string())
    };
    let ((), answer) = bounded(&rt, "shutdown", futures_lite::future::zip(stop, work)).await;
    assert_eq!(answer, Ok(Bytes::from_static(b"done")));
    let late = cx
        .client(node.local_addr().to_string())
        .timeouts(Duration::from_millis(500), Duration::from_millis(500));
    assert!(bounded(&rt, "late get", late.get("s", "k")).await.is_err());
}

/// Nodes on `[::1]` talk to each other; an IPv6 allowlist admits `::1` and an
/// IPv4-only one refuses it.
pub async fn ipv6_peers_and_allowlist<R: Runtime>(cx: Suite<R>) {
    let rt = cx.rt.clone();
    let v6 = "[::1]:0".parse().unwrap();
    let (nodes, loads) = cluster(&cx, 2, |b| {
        b.listen(v6)
            .configure(|c| c.allow = Some(["::1/128".parse().unwrap()].into()))
    })
    .await;
    let owner = nodes[1].self_addr();
    assert!(owner.starts_with("[::1]:"), "{owner}");
    let key = (0..)
        .map(|i| format!("k{i}"))
        .find(|k| nodes[0].owner(k).as_deref() == Some(owner.as_str()))
        .unwrap();
    let r = bounded(&rt, "get over IPv6", nodes[0].get("score", &key)).await;
    assert_eq!(r, Err(Error::NotFound(format!("{key} not exist").into())));
    assert_eq!(
        loads.of("score", &key),
        vec![1],
        "the owner answered over IPv6"
    );
    assert_eq!(nodes[1].stats("score").unwrap().server_requests, 1);
    for n in &nodes {
        n.shutdown().await;
    }
    let (nodes, _) = cluster(&cx, 1, |b| {
        b.listen(v6)
            .configure(|c| c.allow = Some(["127.0.0.0/8".parse().unwrap()].into()))
    })
    .await;
    assert!(refused(&cx, &nodes[0]).await, "::1 is outside 127.0.0.0/8");
    nodes[0].shutdown().await;
}

/// Nodes with a listener per runtime ([`Builder::accept_on`](crate::Builder::accept_on)) share their
/// port among the listeners: gets over many connections to it, whichever
/// listener took each, are answered, and keys owned by the other node are
/// fetched from it and loaded once.
pub async fn listeners_per_runtime_share_the_port<R: Runtime>(cx: Suite<R>) {
    let rt = cx.rt.clone();
    let runtimes = [rt.clone(), rt.clone(), rt.clone()];
    let (nodes, loads) = cluster(&cx, 2, |b| b.accept_on(runtimes.clone())).await;
    let mut conns = Vec::new();
    for _ in 0..24 {
        conns.push(raw(&cx, &nodes[0]).await);
    }
    for (i, c) in conns.iter_mut().enumerate() {
        let (key, want) = sample::SCORE[i % sample::SCORE.len()];
        let got = bounded(&rt, "get", raw_get(&rt, c, "score", key)).await;
        assert_eq!(got.value, want.as_bytes(), "{key} on connection {i}");
    }
    for (key, _) in sample::SCORE {
        assert_eq!(loads.of("score", key).len(), 1, "{key} loaded once");
    }
    for n in &nodes {
        n.shutdown().await;
    }
}
