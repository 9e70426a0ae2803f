//! Mutual TLS refusals and certificate rotation: each bad client is cut off
//! within the connect timeout and counted, and the node keeps serving the
//! others; rotated files are used for new connections while established
//! ones carry on.

use std::time::Duration;

use bytes::Bytes;
use futures_lite::{AsyncReadExt, AsyncWriteExt};

use super::pki::{Kind, TestPki};
use super::Suite;
use super::{bounded, raw_get, request_frame, CASE_LIMIT};
use crate::{transport, Builder, Client, Node, Runtime, Tls, TlsStats};

const CONNECT: Duration = Duration::from_millis(300);
/// The TLS node's request timeout.
const REQUEST: Duration = Duration::from_secs(20);

/// A TLS node with the sample groups and a short connect timeout.
async fn tls_node<R: Runtime>(rt: &R, tls: Tls) -> Node<R> {
    // Requests get far longer than handshakes, so that a cut-off at the
    // connect timeout cannot be mistaken for one at the request timeout.
    let mut b = Builder::with_runtime(rt.clone()).tls(tls).configure(|c| {
        c.connect_timeout = CONNECT;
        c.request_timeout = REQUEST;
    });
    for (name, table) in crate::sample::GROUPS {
        b = b.group(
            *name,
            crate::sample::MAX_BYTES,
            None,
            crate::sample::loader(table, |_| {}),
        );
    }
    b.start().await.expect("node starts")
}

/// Waits until the node's TLS counters satisfy `done`.
async fn counted<R: Runtime>(rt: &R, node: &Node<R>, done: impl Fn(&TlsStats) -> bool) {
    bounded(rt, "the node to count it", async {
        while !done(&node.tls_stats().expect("TLS")) {
            rt.sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
}

/// A client of `node` with `tls` (or plaintext) asks for score/Tom.
async fn ask<R: Runtime>(rt: &R, node: &Node<R>, tls: Option<Tls>) -> Result<Bytes, crate::Error> {
    let mut c = Client::with_runtime(rt.clone(), node.local_addr().to_string())
        .timeouts(CONNECT, Duration::from_secs(2));
    if let Some(t) = tls {
        c = c.tls(t);
    }
    bounded(rt, "client get", c.get("score", "Tom")).await
}

/// A plaintext client, another CA's certificate, an expired one, and a
/// handshake that never finishes: each is refused or cut off within the
/// connect timeout and counted by reason, and a good client is served
/// meanwhile.
pub async fn tls_refuses_bad_clients_and_serves_good_ones<R: Runtime>(cx: Suite<R>) {
    let rt = cx.rt.clone();
    let pki = TestPki::new("cluster CA");
    let node = tls_node(&rt, pki.tls("node")).await;
    let good = pki.tls("client");
    // A client whose handshake never finishes: connected, silent.
    let addr = node.local_addr().to_string();
    let (mut silent_r, _silent_w) = transport::connect(&rt, None, &addr, CASE_LIMIT)
        .await
        .expect("TCP connects");
    // Plaintext: a groupcache request where a TLS hello should be.
    let (mut r, mut w) = transport::connect(&rt, None, &addr, CASE_LIMIT)
        .await
        .expect("TCP connects");
    let _ = w.write_all(&request_frame("score", "Tom")).await;
    let mut buf = [0u8; 64];
    let n = bounded(&rt, "plaintext cut off", r.read(&mut buf)).await;
    assert!(
        !matches!(n, Ok(n) if n >= 8 && buf[8..n].windows(3).any(|w| w == b"630")),
        "a plaintext client was answered"
    );
    counted(&rt, &node, |s| s.not_tls == 1).await;
    // Another CA's certificate.
    let other = TestPki::new("another CA");
    let stranger = Tls::from_files(crate::TlsFiles {
        ca: pki.ca_file(),
        ..other.issue("stranger", Kind::Good)
    })
    .unwrap();
    assert!(ask(&rt, &node, Some(stranger)).await.is_err());
    counted(&rt, &node, |s| s.bad_certificates == 1).await;
    // An expired certificate from the right CA.
    let expired = Tls::from_files(pki.issue("expired", Kind::Expired)).unwrap();
    assert!(ask(&rt, &node, Some(expired)).await.is_err());
    counted(&rt, &node, |s| s.expired_certificates == 1).await;
    // The silent one is cut off at the connect timeout.
    let start = rt.now();
    let n = bounded(&rt, "silent handshake cut off", silent_r.read(&mut buf)).await;
    assert!(matches!(n, Ok(0) | Err(_)), "{n:?}");
    // Cut off at the handshake's timeout (300 ms), not the request's (20 s):
    // the bound between them leaves a busy machine seconds of margin.
    let took = rt.now() - start;
    assert!(took < REQUEST / 4, "cut off after {took:?}");
    counted(&rt, &node, |s| s.timeouts == 1).await;
    // Meanwhile and after, a good client is served.
    assert_eq!(
        ask(&rt, &node, Some(good)).await,
        Ok(Bytes::from_static(b"630"))
    );
    let s = node.tls_stats().unwrap();
    assert_eq!(
        (
            s.not_tls,
            s.bad_certificates,
            s.expired_certificates,
            s.timeouts
        ),
        (1, 1, 1, 1)
    );
    node.shutdown().await;
}

/// Files rotated to a certificate of a new CA: new connections use them,
/// an established connection keeps working on the old session.
pub async fn tls_reloads_rotated_files_without_dropping_connections<R: Runtime>(cx: Suite<R>) {
    let rt = cx.rt.clone();
    let pki = TestPki::new("old CA");
    let files = pki.issue("node", Kind::Good);
    let node = tls_node(&rt, Tls::from_files(files.clone()).unwrap()).await;
    let old_client = pki.tls("client");
    let addr = node.local_addr().to_string();
    let mut held = transport::connect(&rt, Some(&old_client), &addr, CASE_LIMIT)
        .await
        .expect("handshake with the old certificate");
    let resp = raw_get(&rt, &mut held, "score", "Tom").await;
    assert_eq!(&resp.value[..], b"630");
    // cert-manager writes a new CA, certificate and key in place.
    let new = TestPki::new("new CA");
    let fresh = new.issue("node-next", Kind::Good);
    for (from, to) in [
        (&fresh.cert, &files.cert),
        (&fresh.key, &files.key),
        (&fresh.ca, &files.ca),
    ] {
        let tmp = to.with_extension("swap");
        std::fs::copy(from, &tmp).unwrap();
        std::fs::rename(&tmp, to).unwrap();
    }
    let new_client = new.tls("client");
    // New connections get the new certificate once the node has looked at
    // its files (at most a second after the change).
    bounded(&rt, "the node to reload", async {
        while ask(&rt, &node, Some(new_client.clone())).await.is_err() {
            rt.sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert_eq!(node.tls_stats().unwrap().reloads, 1);
    // The old CA no longer verifies the node; the held connection works.
    assert!(ask(&rt, &node, Some(old_client)).await.is_err());
    let resp = raw_get(&rt, &mut held, "age", "Tom").await;
    assert_eq!(&resp.value[..], b"15");
    node.shutdown().await;
}
