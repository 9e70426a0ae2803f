//! Test helpers shared by the core's tests, the adapters' tests and the
//! fuzzers (feature `testing`): the golden vectors made by the Go original,
//! a deterministic cluster simulator, a cache model, histories of what
//! clients saw with their checker, and the fuzz targets'
//! bodies (so stable `cargo test` replays the fuzz corpus).

pub mod fuzz;
pub mod history;
pub mod model;
mod sim;
pub mod vectors;

pub use sim::{sharded, Fault, Sim, SimLoader, SimNode, SIM_SHARDS};

use std::time::Instant;

use bytes::BytesMut;

use crate::frame::decode_all;
use crate::node::{ConnId, Node, Output};
use crate::wire::{encode_frame, Request, Response, CODE_NO_GROUP, NO_GROUP_MESSAGE};

/// The one real instant of a test or fuzz run: where its fake clock starts.
/// Every later time is this plus a simulated duration, so nothing the test
/// checks depends on how fast the machine runs it.
pub fn epoch() -> Instant {
    #[allow(clippy::disallowed_methods)] // the one real instant
    Instant::now()
}

/// A whole request frame for `group`/`key` as a Go client sends it: no
/// extension fields.
pub fn request_frame(group: &str, key: &str) -> BytesMut {
    let mut b = BytesMut::new();
    let req = Request {
        group: group.into(),
        key: key.into(),
        ..Default::default()
    };
    encode_frame(&req, &mut b);
    b
}

/// The Go original's answer to a request for a group it does not have (an
/// empty probe included): no extension fields.
pub fn go_no_group() -> Response {
    Response {
        value: NO_GROUP_MESSAGE.into(),
        code: CODE_NO_GROUP,
        ..Default::default()
    }
}

/// Completes the first connection `out` asks for; returns it.
pub fn connected(node: &mut Node, now: std::time::Instant, out: &[Output]) -> ConnId {
    let conn = out
        .iter()
        .find_map(|o| match o {
            Output::Connect { conn, .. } => Some(*conn),
            _ => None,
        })
        .expect("a connect");
    node.handle_connected(now, conn);
    conn
}

/// Plays a Go node that `node` reaches for the first time: completes the
/// connection `out` asks for, checks that only an empty probe was sent on
/// it, answers as the Go original does, checks that nothing more is sent,
/// and returns the connection and the node's outputs after the answer.
pub fn probe_answered_as_go(
    node: &mut Node,
    now: std::time::Instant,
    out: &[Output],
) -> (ConnId, Vec<Output>) {
    let conn = connected(node, now, out);
    let reqs = requests(&sent_on(&drain(node), conn));
    assert_eq!(reqs.len(), 1, "one request: {reqs:?}");
    assert_eq!(
        (reqs[0].group.as_str(), reqs[0].op),
        ("", 0),
        "only a probe"
    );
    node.handle_data(now, conn, &frame(&go_no_group()));
    let out = drain(node);
    assert!(
        sent_on(&out, conn).is_empty(),
        "nothing more was sent to it"
    );
    (conn, out)
}

/// Every output the node has queued, in order.
pub fn drain(node: &mut Node) -> Vec<Output> {
    std::iter::from_fn(|| node.poll_output()).collect()
}

/// The bytes `out` sends on `conn`, concatenated.
pub fn sent_on(out: &[Output], conn: ConnId) -> Vec<u8> {
    out.iter()
        .filter_map(|o| match o {
            Output::Send { conn: c, data } if *c == conn => Some(&data[..]),
            _ => None,
        })
        .flatten()
        .copied()
        .collect()
}

/// The requests in `data`, which must be whole frames.
pub fn requests(data: &[u8]) -> Vec<Request> {
    let (frames, rest) = decode_all(data, 1 << 20).expect("valid frames");
    assert_eq!(rest, 0, "whole frames");
    frames
        .iter()
        .map(|f| Request::decode_payload(f).expect("a request"))
        .collect()
}

/// A message as one frame.
pub fn frame<M: prost::Message>(m: &M) -> BytesMut {
    let mut b = BytesMut::new();
    encode_frame(m, &mut b);
    b
}
