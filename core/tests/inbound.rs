//! An inbound connection whose state the driver keeps
//! ([`Node::accept_inbound`]): hits answered by the connection alone,
//! everything else through [`Node::serve`], answers in request order, its
//! deadlines and its draining. A fake clock throughout.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use bytes::Bytes;
use groupcache_core::frame::decode_all;
use groupcache_core::node::{
    CloseReason, Config, Get, GroupConfig, Inbound, InboundOutput, LoadId, Node, Output, Refused,
};
use groupcache_core::testing::{drain, epoch, request_frame};
use groupcache_core::wire::{Response, CODE_NO_GROUP, CODE_OK};

const GROUP: &str = "g";
const CLIENT: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7));

fn node() -> Node {
    let mut node = Node::new(Config::new("self"));
    node.add_group(GroupConfig::new(GROUP, 1 << 20)).unwrap();
    node
}

/// Caches `key` in `node` through a get and its load.
fn cache(node: &mut Node, now: std::time::Instant, key: &str) {
    let Get::Pending(_) = node.get(now, GROUP, key) else {
        panic!("{key} was cached already");
    };
    let id = load_id(node);
    node.handle_load(now, id, Ok(Bytes::from(format!("value of {key}")).into()));
    drain(node);
}

/// The load among the node's outputs now (the others are dropped).
fn load_id(node: &mut Node) -> LoadId {
    drain(node)
        .into_iter()
        .find_map(|o| match o {
            Output::Load { id, .. } => Some(id),
            _ => None,
        })
        .expect("a load")
}

/// Hands every answer among the node's outputs now to `inbound`.
fn forward_answers(node: &mut Node, inbound: &mut Inbound, now: std::time::Instant) {
    for o in drain(node) {
        if let Output::Answer { seq, response, .. } = o {
            inbound.handle_answer(now, seq, response);
        }
    }
}

/// What the connection asks for now, in order.
fn outputs(inbound: &mut Inbound) -> Vec<InboundOutput> {
    std::iter::from_fn(|| inbound.poll_output()).collect()
}

/// The responses in the bytes `out` sends.
fn responses(out: &[InboundOutput]) -> Vec<Response> {
    let data: Vec<u8> = out
        .iter()
        .filter_map(|o| match o {
            InboundOutput::Send(d) => Some(&d[..]),
            _ => None,
        })
        .flatten()
        .copied()
        .collect();
    let (frames, rest) = decode_all(&data, 1 << 20).expect("frames");
    assert_eq!(rest, 0, "whole frames");
    frames
        .iter()
        .map(|f| Response::decode_payload(f).expect("a response"))
        .collect()
}

#[test]
fn a_hit_is_answered_by_the_connection_alone_and_counted() {
    let now = epoch();
    let mut node = node();
    cache(&mut node, now, "k");
    let mut inbound = node.accept_inbound(now, CLIENT).unwrap();
    inbound.handle_data(now, &request_frame(GROUP, "k"));
    let out = outputs(&mut inbound);
    let got = responses(&out);
    assert_eq!(got.len(), 1);
    assert_eq!(
        (got[0].code, &got[0].value[..]),
        (CODE_OK, &b"value of k"[..])
    );
    assert!(
        out.iter()
            .all(|o| !matches!(o, InboundOutput::Request { .. })),
        "nothing for the node: {out:?}"
    );
    assert!(drain(&mut node).is_empty(), "the node did nothing");
    let stats = node.stats(GROUP).unwrap();
    assert_eq!(stats.server_requests, 1);
    assert_eq!(stats.cache_hits, 1);
    assert!(inbound.owes_nothing());
}

#[test]
fn a_miss_goes_to_the_node_and_answers_keep_request_order() {
    let now = epoch();
    let mut node = node();
    cache(&mut node, now, "hit");
    let mut inbound = node.accept_inbound(now, CLIENT).unwrap();
    let conn = inbound.id();
    let mut pipelined = request_frame(GROUP, "miss");
    pipelined.extend_from_slice(&request_frame(GROUP, "hit"));
    pipelined.extend_from_slice(&request_frame("nope", "k"));
    inbound.handle_data(now, &pipelined);
    let out = outputs(&mut inbound);
    // The hit waits behind the miss: nothing is sent yet.
    assert!(responses(&out).is_empty(), "{out:?}");
    let asked: Vec<(u64, String, String)> = out
        .into_iter()
        .filter_map(|o| match o {
            InboundOutput::Request { seq, request } => Some((seq, request.group, request.key)),
            _ => None,
        })
        .collect();
    assert_eq!(
        asked,
        [
            (0, GROUP.into(), "miss".into()),
            (2, "nope".into(), "k".into())
        ]
    );
    for (seq, group, key) in asked {
        let request = groupcache_core::wire::Request {
            group,
            key,
            ..Default::default()
        };
        node.serve(now, conn, seq, request);
    }
    // The unknown group is answered at once; the miss is loaded.
    let mut load = None;
    for o in drain(&mut node) {
        match o {
            Output::Answer {
                conn: c,
                seq,
                response,
            } => {
                assert_eq!((c, seq, response.code), (conn, 2, CODE_NO_GROUP));
                inbound.handle_answer(now, seq, response);
            }
            Output::Load { id, .. } => load = Some(id),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(
        responses(&outputs(&mut inbound)).is_empty(),
        "still in order"
    );
    let later = now + Duration::from_millis(5);
    node.handle_load(
        later,
        load.expect("a load"),
        Ok(Bytes::from("loaded").into()),
    );
    forward_answers(&mut node, &mut inbound, later);
    let got = responses(&outputs(&mut inbound));
    let got: Vec<(i32, &[u8])> = got.iter().map(|r| (r.code, &r.value[..])).collect();
    assert_eq!(got[0], (CODE_OK, &b"loaded"[..]));
    assert_eq!(got[1], (CODE_OK, &b"value of hit"[..]));
    assert_eq!(got[2].0, CODE_NO_GROUP);
    assert!(inbound.owes_nothing());
    assert_eq!(node.stats(GROUP).unwrap().server_requests, 2);
}

#[test]
fn an_idle_connection_closes_at_its_deadline_and_frees_its_place() {
    let now = epoch();
    let mut cfg = Config::new("self");
    cfg.max_inbound_per_addr = 1;
    let idle = cfg.idle_timeout;
    let mut node = Node::new(cfg);
    node.add_group(GroupConfig::new(GROUP, 1 << 20)).unwrap();
    let mut inbound = node.accept_inbound(now, CLIENT).unwrap();
    assert_eq!(
        node.accept_inbound(now, CLIENT).map(|i| i.id()),
        Err(Refused::TooManyFromAddr)
    );
    assert_eq!(inbound.poll_timeout(), Some(now + idle));
    inbound.handle_timeout(now + idle / 2);
    assert!(outputs(&mut inbound).is_empty(), "not yet");
    inbound.handle_timeout(now + idle);
    assert_eq!(
        outputs(&mut inbound),
        [InboundOutput::Close(CloseReason::Idle)]
    );
    assert!(!inbound.wants_read());
    node.handle_closed(now + idle, inbound.id());
    assert!(node.accept_inbound(now + idle, CLIENT).is_ok());
}

#[test]
fn at_shutdown_a_busy_connection_closes_once_its_answers_are_sent() {
    let now = epoch();
    let mut node = node();
    let mut idle = node.accept_inbound(now, CLIENT).unwrap();
    let mut busy = node.accept_inbound(now, CLIENT).unwrap();
    busy.handle_data(now, &request_frame(GROUP, "slow"));
    let Some(InboundOutput::Request { seq, request }) = busy.poll_output() else {
        panic!("a request for the node");
    };
    node.serve(now, busy.id(), seq, request);
    node.shutdown(now);
    idle.handle_shutdown(now);
    busy.handle_shutdown(now);
    assert_eq!(
        outputs(&mut idle),
        [InboundOutput::Close(CloseReason::Shutdown)]
    );
    assert!(outputs(&mut busy).is_empty(), "an answer is owed");
    let load = load_id(&mut node);
    node.handle_load(now, load, Ok(Bytes::from("v").into()));
    forward_answers(&mut node, &mut busy, now);
    let out = outputs(&mut busy);
    assert_eq!(responses(&out).len(), 1);
    assert_eq!(
        out.last(),
        Some(&InboundOutput::Close(CloseReason::Shutdown))
    );
}

#[test]
fn a_bad_frame_closes_after_the_answers_before_it() {
    let now = epoch();
    let mut node = node();
    cache(&mut node, now, "k");
    let mut inbound = node.accept_inbound(now, CLIENT).unwrap();
    let mut data = request_frame(GROUP, "k");
    data.extend_from_slice(&(-1i64).to_le_bytes());
    inbound.handle_data(now, &data);
    let out = outputs(&mut inbound);
    assert_eq!(responses(&out).len(), 1, "{out:?}");
    assert!(matches!(
        out.last(),
        Some(InboundOutput::Close(CloseReason::Frame(_)))
    ));
    inbound.handle_data(now, &request_frame(GROUP, "k"));
    assert!(outputs(&mut inbound).is_empty(), "nothing after the close");
}
