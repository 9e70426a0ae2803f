//! The adapter conformance suite, written once: every runtime adapter runs
//! it with [`conformance_tests!`](crate::conformance_tests). Real TCP on
//! 127.0.0.1, ports chosen by the OS.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use groupcache_core::testing::vectors;
use groupcache_core::wire::{encode_frame, Request};

use crate::{sample, timeout, Builder, Client, Error, LoadError, Node, Runtime};

/// Generates one `#[test]` per conformance case. `$run` is a function
/// `fn(impl Future<Output = ()>)` that runs a future to completion on the
/// runtime, and `$rt` an expression, evaluated inside it, giving the
/// [`Runtime`].
#[macro_export]
macro_rules! conformance_tests {
    ($run:path, $rt:expr) => {
        $crate::conformance_tests!(@each $run, $rt;
            gets_through_any_node_return_the_owners_value,
            concurrent_cold_gets_load_once_in_the_cluster,
            stopped_node_keys_still_served_within_the_timeout,
            bad_input_closes_only_that_connection,
            slow_sender_is_cut_off,
            wire_vectors_answered_byte_for_byte,
            client_decodes_vector_responses,
            panicking_loader_fails_its_waiters_only,
            peer_list_replaced_at_run_time,
            allowlist_refuses_other_addresses,
            ipv6_peers_and_allowlist,
            shutdown_lets_requests_in_flight_finish,
            unread_answers_pause_only_that_connection,
            one_address_cannot_lock_out_others,
            empty_frames_do_not_hold_a_connection,
            slow_origin_is_asked_once,
            hung_origin_is_cancelled_at_the_load_timeout,
            stopped_peer_is_backed_off,
            shutdown_answers_requests_still_open,
            value_over_the_limit_is_refused
        );
    };
    (@each $run:path, $rt:expr; $($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                // Boxed: debug-build futures are large for a test thread stack.
                $run(::std::boxed::Box::pin(async { $crate::conformance::$name($rt).await }));
            }
        )*
    };
}

/// Longest a single case may take before it is declared hung.
const CASE_LIMIT: Duration = Duration::from_secs(30);

/// Every load in a test cluster: (node index, group, key).
#[derive(Clone, Default)]
struct Loads(Arc<Mutex<Vec<(usize, String, String)>>>);

impl Loads {
    fn record(&self, node: usize, group: &str, key: &str) {
        self.0
            .lock()
            .unwrap()
            .push((node, group.to_string(), key.to_string()));
    }
    fn of(&self, group: &str, key: &str) -> Vec<usize> {
        let l = self.0.lock().unwrap();
        l.iter()
            .filter(|(_, g, k)| g == group && k == key)
            .map(|(i, _, _)| *i)
            .collect()
    }
}

/// `n` nodes with the sample groups, all knowing each other.
async fn cluster<R: Runtime>(
    rt: &R,
    n: usize,
    tweak: impl Fn(Builder<R>) -> Builder<R>,
) -> (Vec<Node<R>>, Loads) {
    let loads = Loads::default();
    let mut nodes = Vec::new();
    for i in 0..n {
        let mut b = Builder::with_runtime(rt.clone()).request_timeout(Duration::from_millis(500));
        for (name, table) in sample::GROUPS {
            let l = loads.clone();
            let group = name.to_string();
            let loader = sample::loader(table, move |key| l.record(i, &group, key));
            b = b.group(*name, sample::MAX_BYTES, Some(sample::TTL), loader);
        }
        nodes.push(tweak(b).start().await.expect("node starts"));
    }
    let addrs: Vec<String> = nodes.iter().map(|n| n.self_addr()).collect();
    for n in &nodes {
        n.set_peers(&addrs);
    }
    (nodes, loads)
}

fn index_of<R: Runtime>(nodes: &[Node<R>], addr: &str) -> usize {
    nodes
        .iter()
        .position(|n| n.self_addr() == addr)
        .expect("owner is a member")
}

async fn bounded<R: Runtime, T>(
    rt: &R,
    what: &str,
    fut: impl std::future::Future<Output = T>,
) -> T {
    timeout(rt, CASE_LIMIT, fut)
        .await
        .unwrap_or_else(|| panic!("{what} hung for {CASE_LIMIT:?}"))
}

/// A get through any node returns the value, loaded once, by the owner.
pub async fn gets_through_any_node_return_the_owners_value<R: Runtime>(rt: R) {
    let (nodes, loads) = cluster(&rt, 3, |b| b).await;
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

/// Three nodes whose origin takes `delay`; `gets` concurrent gets of one
/// cold key spread over them, each checked. Returns the origin's calls.
async fn cold_gets_over_three_nodes<R: Runtime>(
    rt: &R,
    request_timeout: Duration,
    delay: Duration,
    gets: usize,
) -> usize {
    let calls = Arc::new(AtomicUsize::new(0));
    let mut nodes = Vec::new();
    for _ in 0..3 {
        let (c, gate) = (calls.clone(), rt.clone());
        let node = Builder::with_runtime(rt.clone())
            .request_timeout(request_timeout)
            .group("slow", 1 << 20, None, move |key: String| {
                c.fetch_add(1, Ordering::SeqCst);
                let gate = gate.clone();
                async move {
                    gate.sleep(delay).await;
                    Ok(format!("v-{key}"))
                }
            })
            .start()
            .await
            .unwrap();
        nodes.push(node);
    }
    let addrs: Vec<String> = nodes.iter().map(|n| n.self_addr()).collect();
    for n in &nodes {
        n.set_peers(&addrs);
    }
    let (tx, rx) = async_channel::unbounded();
    for i in 0..gets {
        let (node, tx) = (nodes[i % 3].clone(), tx.clone());
        rt.spawn(async move {
            let _ = tx.send(node.get("slow", "cold").await).await;
        });
    }
    drop(tx);
    let mut answers = 0;
    while let Ok(r) = bounded(rt, "cold get", rx.recv()).await {
        assert_eq!(r, Ok(Bytes::from_static(b"v-cold")));
        answers += 1;
    }
    assert_eq!(answers, gets);
    for n in &nodes {
        n.shutdown().await;
    }
    calls.load(Ordering::SeqCst)
}

/// 200 concurrent gets of one cold key over three nodes load it once.
pub async fn concurrent_cold_gets_load_once_in_the_cluster<R: Runtime>(rt: R) {
    // A slow origin, so that the gets overlap the load.
    let calls =
        cold_gets_over_three_nodes(&rt, Duration::from_secs(3), Duration::from_millis(200), 200)
            .await;
    assert_eq!(calls, 1, "one load in the whole cluster");
}

/// Keys owned by a stopped node are served by the others within the request
/// timeout.
pub async fn stopped_node_keys_still_served_within_the_timeout<R: Runtime>(rt: R) {
    let (nodes, loads) = cluster(&rt, 3, |b| b).await;
    let victim = nodes[2].self_addr();
    let keys: Vec<String> = (0..)
        .map(|i| format!("k{i}"))
        .filter(|k| nodes[0].owner(k).as_deref() == Some(victim.as_str()))
        .take(3)
        .collect();
    nodes[2].shutdown().await;
    let request_timeout = Duration::from_millis(500);
    for k in &keys {
        for n in &nodes[..2] {
            let start = Instant::now();
            let r = bounded(&rt, "get", n.get("score", k)).await;
            assert_eq!(r, Err(Error::NotFound(format!("{k} not exist").into())));
            let took = start.elapsed();
            assert!(took < request_timeout * 2, "{k} took {took:?}");
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

async fn raw<R: Runtime>(rt: &R, node: &Node<R>) -> (R::Reader, R::Writer) {
    rt.connect(node.local_addr().to_string())
        .await
        .expect("connect")
}

/// Reads until the server closes the connection; returns what it sent.
async fn read_to_close<R: Runtime>(rt: &R, r: &mut R::Reader) -> Vec<u8> {
    let mut all = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match bounded(rt, "server close", r.read(&mut buf)).await {
            Ok(0) | Err(_) => return all,
            Ok(n) => all.extend_from_slice(&buf[..n]),
        }
    }
}

fn request_frame(group: &str, key: &str) -> BytesMut {
    let mut b = BytesMut::new();
    let req = Request {
        group: group.into(),
        key: key.into(),
        ..Default::default()
    };
    encode_frame(&req, &mut b);
    b
}

/// Reads exactly one response frame's bytes (header included).
async fn read_frame<R: Runtime>(rt: &R, r: &mut R::Reader) -> Vec<u8> {
    let mut header = [0u8; 8];
    bounded(rt, "response header", r.read_exact(&mut header))
        .await
        .expect("header");
    let len = i64::from_le_bytes(header) as usize;
    let mut body = vec![0u8; len];
    bounded(rt, "response body", r.read_exact(&mut body))
        .await
        .expect("body");
    [header.to_vec(), body].concat()
}

/// Garbage, a huge length, a negative length and a connection closed
/// mid-frame each close that connection only.
pub async fn bad_input_closes_only_that_connection<R: Runtime>(rt: R) {
    let (nodes, _) = cluster(&rt, 1, |b| b.max_frame(1 << 20)).await;
    let node = &nodes[0];
    let (mut good_r, mut good_w) = raw(&rt, node).await;
    let huge = (1i64 << 40).to_le_bytes().to_vec();
    let negative = (-8i64).to_le_bytes().to_vec();
    let mut garbage = vec![0xAB; 64];
    garbage[..8].copy_from_slice(&60i64.to_le_bytes());
    for bad in [huge, negative, garbage] {
        let (mut r, mut w) = raw(&rt, node).await;
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
    let (_, mut w) = raw(&rt, node).await;
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
pub async fn slow_sender_is_cut_off<R: Runtime>(rt: R) {
    let limit = Duration::from_millis(300);
    let (nodes, _) = cluster(&rt, 1, |b| b.request_timeout(limit)).await;
    let node = &nodes[0];
    let (mut r, mut w) = raw(&rt, node).await;
    let frame = request_frame("score", "Tom");
    let start = Instant::now();
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
    assert!(
        start.elapsed() >= limit,
        "cut off after {:?}",
        start.elapsed()
    );
    let v = bounded(
        &rt,
        "get",
        Client::with_runtime(rt.clone(), node.local_addr().to_string()).get("score", "Tom"),
    )
    .await;
    assert_eq!(v.unwrap(), Bytes::from_static(b"630"));
    node.shutdown().await;
}

/// Request frames of the Go vectors get byte-identical response frames.
pub async fn wire_vectors_answered_byte_for_byte<R: Runtime>(rt: R) {
    let (nodes, _) = cluster(&rt, 1, |b| {
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
    let (mut r, mut w) = raw(&rt, node).await;
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
pub async fn client_decodes_vector_responses<R: Runtime>(rt: R) {
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
    let server_rt = rt.clone();
    let served = answers.clone();
    rt.spawn(async move {
        let (mut r, mut w, _) = server_rt.accept(&listener).await.unwrap();
        let mut buf = vec![0u8; 4096];
        for answer in served {
            // One answer per request; the client reuses the connection.
            let _ = r.read(&mut buf).await;
            if w.write_all(&answer).await.is_err() {
                return;
            }
        }
    });
    let client = Client::with_runtime(rt.clone(), addr.to_string());
    for f in expected {
        let got = bounded(&rt, "client get", client.get("g", "k")).await;
        match f.code {
            200 => assert_eq!(got.unwrap(), Bytes::from(f.value.clone())),
            404 => assert!(matches!(
                got,
                Err(crate::ClientError::Remote(Error::NoGroup(_)))
            )),
            _ => match got {
                Err(crate::ClientError::Remote(Error::Load(m))) => {
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
pub async fn panicking_loader_fails_its_waiters_only<R: Runtime>(rt: R) {
    let calls = Arc::new(AtomicUsize::new(0));
    let (release_tx, release_rx) = async_channel::bounded::<()>(1);
    let c = calls.clone();
    let node = Builder::with_runtime(rt.clone())
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
pub async fn peer_list_replaced_at_run_time<R: Runtime>(rt: R) {
    let loads = Loads::default();
    let mut counted = Vec::new();
    for i in 0..3 {
        let l = loads.clone();
        let n = Builder::with_runtime(rt.clone())
            .request_timeout(Duration::from_millis(500))
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
    let keys: Vec<String> = (0..40).map(|i| format!("key{i}")).collect();
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
        // Asked through node 2 itself: it owns the key now and loads it.
        assert_eq!(
            counted[2].get("m", k).await,
            Ok(Bytes::from(format!("v-{k}")))
        );
        assert!(loads.of("m", k).contains(&2), "{k} moved to node 2");
    }
    // Node 1 leaves and stops.
    counted[1].shutdown().await;
    let without: Vec<String> = vec![addrs[0].clone(), addrs[2].clone()];
    counted[0].set_peers(&without);
    counted[2].set_peers(&without);
    for k in &keys {
        let r = bounded(&rt, "get", counted[0].get("m", k)).await;
        assert_eq!(r, Ok(Bytes::from(format!("v-{k}"))));
    }
    let now_owned_by_2 = keys
        .iter()
        .filter(|k| counted[0].owner(k).as_deref() == Some(addrs[2].as_str()))
        .count();
    assert!(
        now_owned_by_2 > moved.len(),
        "node 1's keys were shared out"
    );
    counted[0].shutdown().await;
    counted[2].shutdown().await;
}

/// Addresses outside the allowlist are disconnected at once.
pub async fn allowlist_refuses_other_addresses<R: Runtime>(rt: R) {
    let (nodes, _) = cluster(&rt, 1, |b| b.allow(["10.0.0.0/8".parse().unwrap()])).await;
    let (mut r, mut w) = raw(&rt, &nodes[0]).await;
    let _ = w.write_all(&request_frame("score", "Tom")).await;
    assert!(read_to_close(&rt, &mut r).await.is_empty());
    nodes[0].shutdown().await;
    let (nodes, _) = cluster(&rt, 1, |b| {
        b.allow(["127.0.0.0/8".parse().unwrap(), "::1/128".parse().unwrap()])
    })
    .await;
    let c = Client::with_runtime(rt.clone(), nodes[0].local_addr().to_string());
    assert_eq!(
        bounded(&rt, "get", c.get("score", "Tom")).await.unwrap(),
        "630"
    );
    nodes[0].shutdown().await;
}

/// Shutdown waits for a request in flight, then refuses new work.
pub async fn shutdown_lets_requests_in_flight_finish<R: Runtime>(rt: R) {
    let (started_tx, started_rx) = async_channel::bounded::<()>(1);
    let (release_tx, release_rx) = async_channel::bounded::<()>(1);
    let node = Builder::with_runtime(rt.clone())
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
    let client = Client::with_runtime(rt.clone(), node.local_addr().to_string());
    let (tx, rx) = async_channel::bounded(1);
    rt.spawn(async move {
        let _ = tx
            .send(client.get("s", "k").await.map_err(|e| e.to_string()))
            .await;
    });
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
        bounded(&rt, "answer", rx.recv()).await.unwrap()
    };
    let ((), answer) = bounded(&rt, "shutdown", futures_lite::future::zip(stop, work)).await;
    assert_eq!(answer, Ok(Bytes::from_static(b"done")));
    let late = Client::with_runtime(rt.clone(), node.local_addr().to_string())
        .timeouts(Duration::from_millis(500), Duration::from_millis(500));
    assert!(bounded(&rt, "late get", late.get("s", "k")).await.is_err());
}

/// Nodes on `[::1]` talk to each other; an IPv6 allowlist admits `::1` and an
/// IPv4-only one refuses it.
pub async fn ipv6_peers_and_allowlist<R: Runtime>(rt: R) {
    let v6 = "[::1]:0".parse().unwrap();
    let (nodes, loads) =
        cluster(&rt, 2, |b| b.listen(v6).allow(["::1/128".parse().unwrap()])).await;
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
    let (nodes, _) = cluster(&rt, 1, |b| {
        b.listen(v6).allow(["127.0.0.0/8".parse().unwrap()])
    })
    .await;
    let (mut r, mut w) = raw(&rt, &nodes[0]).await;
    let _ = w.write_all(&request_frame("score", "Tom")).await;
    assert!(
        read_to_close(&rt, &mut r).await.is_empty(),
        "::1 is outside 127.0.0.0/8"
    );
    nodes[0].shutdown().await;
}

/// A connection from `local` (an address of this machine, such as
/// 127.0.0.2) to `node`.
fn connect_from<R: Runtime>(rt: &R, local: &str, node: &Node<R>) -> (R::Reader, R::Writer) {
    use socket2::{Domain, Socket, Type};
    let to = node.local_addr();
    let s = Socket::new(Domain::for_address(to), Type::STREAM, None).expect("socket");
    let from: std::net::SocketAddr = format!("{local}:0").parse().expect("local address");
    s.bind(&from.into()).expect("bind the local address");
    // Loopback connects complete in the kernel, without the server.
    s.connect(&to.into()).expect("connect");
    rt.adopt_std(s.into()).expect("adopt the stream")
}

/// Sends one get on a raw connection and reads its answer.
async fn raw_get<R: Runtime>(
    rt: &R,
    (r, w): &mut (R::Reader, R::Writer),
    group: &str,
    key: &str,
) -> groupcache_core::wire::Response {
    w.write_all(&request_frame(group, key)).await.expect("send");
    let frame = read_frame(rt, r).await;
    groupcache_core::wire::Response::decode_payload(&frame[8..]).expect("response")
}

/// A client that pipelines gets of a large value and does not read: the node
/// stops reading that connection at its bound of unread answers and serves
/// everyone else; once the client reads, every answer arrives whole.
pub async fn unread_answers_pause_only_that_connection<R: Runtime>(rt: R) {
    const VALUE: usize = 256 << 10;
    const GETS: usize = 200;
    let node = Builder::with_runtime(rt.clone())
        .max_unwritten(512 << 10)
        .group("big", 64 << 20, None, |_key: String| async move {
            Ok(vec![7u8; VALUE])
        })
        .start()
        .await
        .unwrap();
    let client = Client::with_runtime(rt.clone(), node.local_addr().to_string());
    assert_eq!(
        bounded(&rt, "warm", client.get("big", "k"))
            .await
            .unwrap()
            .len(),
        VALUE
    );
    let (mut r, mut w) = raw(&rt, &node).await;
    let mut pipelined = Vec::new();
    for _ in 0..GETS {
        pipelined.extend_from_slice(&request_frame("big", "k"));
    }
    w.write_all(&pipelined).await.unwrap();
    w.flush().await.unwrap();
    // Others are served while that client reads nothing.
    for _ in 0..3 {
        let v = bounded(&rt, "get beside", client.get("big", "k")).await;
        assert_eq!(v.unwrap().len(), VALUE);
    }
    // 200 answers are 50 MiB: far more than the bound plus every socket
    // buffer, so the node cannot have read all the requests yet.
    let served = node.stats("big").unwrap().server_requests;
    assert!(
        served < 1 + 3 + GETS as u64,
        "served {served} before the client read"
    );
    for _ in 0..GETS {
        let frame = read_frame(&rt, &mut r).await;
        let resp = groupcache_core::wire::Response::decode_payload(&frame[8..]).unwrap();
        assert_eq!(resp.value.len(), VALUE);
    }
    assert_eq!(
        node.stats("big").unwrap().server_requests,
        1 + 3 + GETS as u64
    );
    node.shutdown().await;
}

/// One address holding many connections cannot lock out other clients or
/// the cluster's peers (Linux: every 127.0.0.0/8 address is local).
pub async fn one_address_cannot_lock_out_others<R: Runtime>(rt: R) {
    if !cfg!(target_os = "linux") {
        return;
    }
    let (nodes, loads) = cluster(&rt, 3, |b| {
        b.max_connections(40).max_connections_per_addr(16)
    })
    .await;
    // The hog takes its share and more; what is past its share is closed.
    let mut hog = Vec::new();
    for _ in 0..60 {
        hog.push(connect_from(&rt, "127.0.0.2", &nodes[0]));
    }
    let mut other = connect_from(&rt, "127.0.0.3", &nodes[0]);
    let resp = raw_get(&rt, &mut other, "score", "Tom").await;
    assert_eq!((resp.code, &resp.value[..]), (200, &b"630"[..]));
    // Peers (on 127.0.0.1) still reach node 0 for every key it owns.
    for (group, table) in sample::GROUPS {
        for (key, value) in table.iter() {
            for n in &nodes[1..] {
                let got = bounded(&rt, "get", n.get(group, key)).await;
                assert_eq!(got, Ok(Bytes::from_static(value.as_bytes())));
            }
            assert_eq!(loads.of(group, key).len(), 1, "{group}/{key} loaded once");
        }
    }
    // Of the hog's connections, at most its share is served.
    let mut answered = 0;
    for (r, w) in hog.iter_mut() {
        if w.write_all(&request_frame("score", "Tom")).await.is_err() {
            continue;
        }
        let mut header = [0u8; 8];
        if let Some(Ok(())) = timeout(&rt, Duration::from_secs(5), r.read_exact(&mut header)).await
        {
            answered += 1;
        }
    }
    assert_eq!(
        answered, 16,
        "the hog's connections beyond its share were closed"
    );
    for n in &nodes {
        n.shutdown().await;
    }
}

/// A connection that only sends empty frames is closed at the idle timeout,
/// though each frame is answered.
pub async fn empty_frames_do_not_hold_a_connection<R: Runtime>(rt: R) {
    let idle = Duration::from_millis(300);
    let (nodes, _) = cluster(&rt, 1, |b| b.idle_timeout(idle)).await;
    let (mut r, mut w) = raw(&rt, &nodes[0]).await;
    let start = rt.now();
    let mut answers = 0;
    let closed = bounded(&rt, "idle close", async {
        loop {
            if w.write_all(&0i64.to_le_bytes()).await.is_err() {
                return;
            }
            let mut header = [0u8; 8];
            if r.read_exact(&mut header).await.is_err() {
                return;
            }
            let mut body = vec![0u8; i64::from_le_bytes(header) as usize];
            if r.read_exact(&mut body).await.is_err() {
                return;
            }
            answers += 1;
            rt.sleep(idle / 4).await;
        }
    });
    closed.await;
    assert!(answers >= 3, "{answers} empty frames answered");
    assert!(rt.now() - start >= idle);
    nodes[0].shutdown().await;
}

/// An origin much slower than the request timeout: gets spread over three
/// nodes wait on the owner's keepalives, and the origin is asked once.
pub async fn slow_origin_is_asked_once<R: Runtime>(rt: R) {
    let calls = cold_gets_over_three_nodes(
        &rt,
        Duration::from_millis(150),
        Duration::from_millis(800),
        60,
    )
    .await;
    assert_eq!(calls, 1, "one origin load");
}

/// A load that never ends is cancelled at the group's load timeout: the
/// client gets an error naming the group and key, and the loader's future
/// is dropped.
pub async fn hung_origin_is_cancelled_at_the_load_timeout<R: Runtime>(rt: R) {
    struct OnDrop(async_channel::Sender<()>);
    impl Drop for OnDrop {
        fn drop(&mut self) {
            let _ = self.0.try_send(());
        }
    }
    let (dropped_tx, dropped_rx) = async_channel::unbounded::<()>();
    let mut g = crate::GroupConfig::new("h", 1 << 20);
    g.load_timeout = Duration::from_millis(300);
    let node = Builder::with_runtime(rt.clone())
        .group_config(g, move |_key: String| {
            // Dropped with the future: the test hears of it.
            let on_drop = OnDrop(dropped_tx.clone());
            async move {
                let _on_drop = on_drop;
                std::future::pending::<Result<Bytes, LoadError>>().await
            }
        })
        .start()
        .await
        .unwrap();
    let client = Client::with_runtime(rt.clone(), node.local_addr().to_string());
    match bounded(&rt, "hung get", client.get("h", "k")).await {
        Err(crate::ClientError::Remote(Error::Load(m))) => {
            assert!(m.contains("h/k") && m.contains("timed out"), "{m}")
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        bounded(&rt, "loader dropped", dropped_rx.recv()).await,
        Ok(()),
        "the hung loader was cancelled"
    );
    assert_eq!(node.stats("h").unwrap().load_timeouts, 1);
    node.shutdown().await;
}

/// A peer that accepts connections but never answers (a stopped process)
/// costs one request timeout; then it gets no traffic while backed off and
/// its keys are loaded locally.
pub async fn stopped_peer_is_backed_off<R: Runtime>(rt: R) {
    let listener = rt.bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let stopped = rt.local_addr(&listener).unwrap().to_string();
    let requests = Arc::new(AtomicUsize::new(0));
    let (count, srt) = (requests.clone(), rt.clone());
    rt.spawn(async move {
        // Accepts and reads, never answers; counts whole request frames.
        while let Ok((mut r, w, _)) = srt.accept(&listener).await {
            let count = count.clone();
            srt.spawn(async move {
                let _keep = w;
                let mut buf = BytesMut::new();
                let mut dec = groupcache_core::frame::FrameDecoder::new(1 << 20);
                let mut chunk = [0u8; 1024];
                while let Ok(n) = r.read(&mut chunk).await {
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    while let Ok(Some(_)) = dec.decode(&mut buf) {
                        count.fetch_add(1, Ordering::SeqCst);
                    }
                }
            });
        }
    });
    let (nodes, loads) = cluster(&rt, 1, |b| {
        b.request_timeout(Duration::from_millis(300))
            .peer_backoff(Duration::from_secs(600))
    })
    .await;
    let node = &nodes[0];
    node.set_peers([node.self_addr(), stopped.clone()]);
    let keys: Vec<String> = (0..)
        .map(|i| format!("k{i}"))
        .filter(|k| node.owner(k).as_deref() == Some(stopped.as_str()))
        .take(5)
        .collect();
    for k in &keys {
        let r = bounded(&rt, "get", node.get("score", k)).await;
        assert_eq!(r, Err(Error::NotFound(format!("{k} not exist").into())));
        assert_eq!(loads.of("score", k), vec![0], "{k} loaded locally");
    }
    assert!(
        requests.load(Ordering::SeqCst) <= 1,
        "traffic to a backed-off peer"
    );
    assert_eq!(node.stats("score").unwrap().peer_errors, 5);
    node.shutdown().await;
}

/// When shutdown's time is up, a request still loading gets an explicit
/// shutdown error rather than a closed connection.
pub async fn shutdown_answers_requests_still_open<R: Runtime>(rt: R) {
    let (started_tx, started_rx) = async_channel::bounded::<()>(1);
    let node = Builder::with_runtime(rt.clone())
        .shutdown_timeout(Duration::from_millis(200))
        .group("s", 1024, None, move |_key: String| {
            let started = started_tx.clone();
            async move {
                let _ = started.send(()).await;
                std::future::pending::<Result<Bytes, LoadError>>().await
            }
        })
        .start()
        .await
        .unwrap();
    let client = Client::with_runtime(rt.clone(), node.local_addr().to_string());
    let (tx, rx) = async_channel::bounded(1);
    rt.spawn(async move {
        let _ = tx.send(client.get("s", "k").await).await;
    });
    bounded(&rt, "load start", started_rx.recv()).await.unwrap();
    bounded(&rt, "shutdown", node.shutdown()).await;
    match bounded(&rt, "answer", rx.recv()).await.unwrap() {
        Err(crate::ClientError::Remote(Error::Load(m))) => {
            assert!(m.contains("shutting down"), "{m}")
        }
        other => panic!("{other:?}"),
    }
}

/// A value over the group's limit is an error, counted, and not cached.
pub async fn value_over_the_limit_is_refused<R: Runtime>(rt: R) {
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let mut g = crate::GroupConfig::new("v", 1 << 20);
    g.max_value = 1000;
    let node = Builder::with_runtime(rt.clone())
        .group_config(g, move |_key: String| {
            c.fetch_add(1, Ordering::SeqCst);
            async move { Ok(vec![1u8; 2000]) }
        })
        .start()
        .await
        .unwrap();
    let client = Client::with_runtime(rt.clone(), node.local_addr().to_string());
    for _ in 0..2 {
        match bounded(&rt, "get", client.get("v", "k")).await {
            Err(crate::ClientError::Remote(Error::Load(m))) => assert!(
                m.contains("v/k: value of 2000 bytes exceeds the limit of 1000"),
                "{m}"
            ),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(calls.load(Ordering::SeqCst), 2, "never cached");
    assert_eq!(node.stats("v").unwrap().values_too_large, 2);
    node.shutdown().await;
}
