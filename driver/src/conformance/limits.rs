//! Conformance cases for the limits: clients that do not read, one address
//! with many connections, empty frames, slow and hung origins, a stopped
//! peer, shutdown with loads open, oversized values.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_lite::{AsyncReadExt, AsyncWriteExt};

use super::Suite;
use crate::{sample, timeout, transport, Error, LoadError, Runtime};

use super::{
    bounded, cluster, cold_gets_over_three_nodes, connect_from, get_in_background, raw, raw_get,
    read_frame, request_frame,
};

/// A client that pipelines gets of a large value and does not read: the node
/// stops reading that connection at its bound of unread answers and serves
/// everyone else; once the client reads, every answer arrives whole.
pub async fn unread_answers_pause_only_that_connection<R: Runtime>(cx: Suite<R>) {
    let rt = cx.rt.clone();
    const VALUE: usize = 256 << 10;
    const GETS: usize = 200;
    let node = cx
        .builder()
        // Room for a slow test machine before a stalled write is cut.
        .configure(|c| c.request_timeout = Duration::from_secs(10))
        .configure(|c| c.max_unwritten = 512 << 10)
        .group("big", 64 << 20, None, |_key: String| async move {
            Ok(vec![7u8; VALUE])
        })
        .start()
        .await
        .unwrap();
    let client = cx.client(node.local_addr().to_string());
    assert_eq!(
        bounded(&rt, "warm", client.get("big", "k"))
            .await
            .unwrap()
            .len(),
        VALUE
    );
    let (mut r, mut w) = raw(&cx, &node).await;
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
pub async fn one_address_cannot_lock_out_others<R: Runtime>(cx: Suite<R>) {
    let rt = cx.rt.clone();
    if !cfg!(target_os = "linux") {
        return;
    }
    let (nodes, loads) = cluster(&cx, 3, |b| {
        b.configure(|c| {
            c.max_inbound = 40;
            c.max_inbound_per_addr = 16;
        })
    })
    .await;
    // The hog takes its share and more; what is past its share is closed.
    let mut hog = Vec::new();
    for _ in 0..60 {
        // Over TLS a refused connection fails its handshake: not kept.
        if let Ok(c) = connect_from(&cx, "127.0.0.2", &nodes[0]).await {
            hog.push(c);
        }
    }
    let mut other = connect_from(&cx, "127.0.0.3", &nodes[0])
        .await
        .expect("another address connects");
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
pub async fn empty_frames_do_not_hold_a_connection<R: Runtime>(cx: Suite<R>) {
    let rt = cx.rt.clone();
    let idle = Duration::from_secs(1);
    let (nodes, _) = cluster(&cx, 1, |b| b.configure(|c| c.idle_timeout = idle)).await;
    let (mut r, mut w) = raw(&cx, &nodes[0]).await;
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
            // Ten times as often as the idle timeout: the frames alone
            // would keep it open forever if they counted.
            rt.sleep(idle / 10).await;
        }
    });
    closed.await;
    assert!(answers >= 1, "{answers} empty frames answered");
    assert!(rt.now() - start >= idle);
    nodes[0].shutdown().await;
}

/// An origin much slower than the request timeout: gets spread over three
/// nodes wait on the owner's keepalives, and the origin is asked once.
pub async fn slow_origin_is_asked_once<R: Runtime>(cx: Suite<R>) {
    let calls =
        cold_gets_over_three_nodes(&cx, Duration::from_secs(1), Duration::from_secs(3), 60).await;
    assert_eq!(calls, 1, "one origin load");
}

/// A load that never ends is cancelled at the group's load timeout: the
/// client gets an error naming the group and key, and the loader's future
/// is dropped.
pub async fn hung_origin_is_cancelled_at_the_load_timeout<R: Runtime>(cx: Suite<R>) {
    let rt = cx.rt.clone();
    struct OnDrop(async_channel::Sender<()>);
    impl Drop for OnDrop {
        fn drop(&mut self) {
            let _ = self.0.try_send(());
        }
    }
    let (dropped_tx, dropped_rx) = async_channel::unbounded::<()>();
    let mut g = crate::GroupConfig::new("h", 1 << 20);
    g.load_timeout = Duration::from_millis(300);
    let node = cx
        .builder()
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
    let client = cx.client(node.local_addr().to_string());
    match bounded(&rt, "hung get", client.get("h", "k")).await {
        Err(Error::Load(m)) => {
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
pub async fn stopped_peer_is_backed_off<R: Runtime>(cx: Suite<R>) {
    let rt = cx.rt.clone();
    let listener = rt.bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let stopped = rt.local_addr(&listener).unwrap().to_string();
    let requests = Arc::new(AtomicUsize::new(0));
    let (count, srt, stls) = (requests.clone(), rt.clone(), cx.tls.clone());
    rt.spawn(async move {
        // Accepts and reads, never answers; counts whole request frames.
        while let Ok((stream, _)) = srt.accept(&listener).await {
            let (count, hrt, htls) = (count.clone(), srt.clone(), stls.clone());
            srt.spawn(async move {
                let accepted =
                    transport::accepted(&hrt, htls.as_ref(), stream, super::CASE_LIMIT).await;
                let Ok((mut r, w)) = accepted else {
                    return;
                };
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
    let (nodes, loads) = cluster(&cx, 1, |b| {
        b.configure(|c| {
            c.request_timeout = Duration::from_millis(300);
            c.peer_backoff = Duration::from_secs(600);
        })
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
pub async fn shutdown_answers_requests_still_open<R: Runtime>(cx: Suite<R>) {
    let rt = cx.rt.clone();
    let (started_tx, started_rx) = async_channel::bounded::<()>(1);
    let node = cx
        .builder()
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
    let rx = get_in_background(&cx, &node, "s", "k");
    bounded(&rt, "load start", started_rx.recv()).await.unwrap();
    bounded(&rt, "shutdown", node.shutdown()).await;
    match bounded(&rt, "answer", rx.recv()).await.unwrap() {
        Err(Error::Load(m)) => {
            assert!(m.contains("shutting down"), "{m}")
        }
        other => panic!("{other:?}"),
    }
}

/// A value over the group's limit is an error, counted, and not cached.
pub async fn value_over_the_limit_is_refused<R: Runtime>(cx: Suite<R>) {
    let rt = cx.rt.clone();
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let mut g = crate::GroupConfig::new("v", 1 << 20);
    g.max_value = 1000;
    let node = cx
        .builder()
        .group_config(g, move |_key: String| {
            c.fetch_add(1, Ordering::SeqCst);
            async move { Ok(vec![1u8; 2000]) }
        })
        .start()
        .await
        .unwrap();
    let client = cx.client(node.local_addr().to_string());
    for _ in 0..2 {
        match bounded(&rt, "get", client.get("v", "k")).await {
            Err(Error::Load(m)) => assert!(
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
