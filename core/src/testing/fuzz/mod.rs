//! Bodies of the cargo-fuzz targets. They live here so that the checked-in
//! corpus is replayed by plain `cargo test` on stable
//! (`core/tests/fuzz_corpus.rs`), and each target in `fuzz/` is one line.
//!
//! Every body panics on a broken property; a clean return means the input
//! passed.

mod harness;
mod node;

use arbitrary::Unstructured;
use bytes::BytesMut;
use prost::Message;

use crate::frame::{decode_all, FrameDecoder};
use crate::testing::epoch;
use crate::testing::model::{CacheCheck, CacheOp};
use crate::wire::{Request, Response};

pub use node::node;

/// Steps a schedule takes at most, so one input runs in milliseconds.
const CLUSTER_STEPS: usize = 64;

/// A schedule of gets, writes, origin changes and faults on a simulated
/// three-node cluster ([`schedule`](crate::testing::history::schedule)),
/// recorded as a history and checked against the consistency model: any
/// violation panics, with the operations that show it.
pub fn cluster(data: &[u8]) {
    use crate::testing::history::{check, schedule};
    let mut u = Unstructured::new(data);
    let mut steps = Vec::new();
    while steps.len() < CLUSTER_STEPS && !u.is_empty() {
        match schedule::Step::arbitrary(&mut u) {
            Ok(s) => steps.push(s),
            Err(_) => break,
        }
    }
    let h = schedule::run(&steps);
    let r = check(&h, &schedule::model());
    assert!(r.is_clean(), "{}", r.explain(&h));
}

/// Feeds bytes to the frame decoder in the splits the input chooses and
/// compares with one-shot decoding. No frame exceeds the maximum and the
/// buffer never grows beyond what arrived.
pub fn frame_decoder(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let max = usize::from(u.arbitrary::<u16>().unwrap_or(0) % 4096);
    let seed = u.arbitrary::<u64>().unwrap_or(1) | 1;
    let stream = u.take_rest();
    let whole = decode_all(stream, max);
    let mut dec = FrameDecoder::new(max);
    let mut buf = BytesMut::new();
    let mut frames = Vec::new();
    let mut err = None;
    let mut pos = 0;
    let mut rng = seed;
    while pos < stream.len() && err.is_none() {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let n = 1 + (rng as usize % 32).min(stream.len() - pos - 1);
        buf.extend_from_slice(&stream[pos..pos + n]);
        pos += n;
        assert!(
            buf.capacity() <= 2 * stream.len() + 64,
            "buffer grew to {} for {} bytes of input",
            buf.capacity(),
            stream.len()
        );
        loop {
            match dec.decode(&mut buf) {
                Ok(Some(f)) => {
                    assert!(f.len() <= max, "frame of {} over max {max}", f.len());
                    frames.push(f);
                }
                Ok(None) => break,
                Err(e) => {
                    err = Some(e);
                    break;
                }
            }
        }
    }
    match (whole, err) {
        (Ok((all, _)), None) => assert_eq!(all, frames),
        (Err(a), Some(b)) => assert_eq!(a, b),
        (a, b) => panic!("one-shot {a:?} but incremental error {b:?}"),
    }
}

/// Decodes arbitrary bytes as Request and Response: never a panic, and a
/// decoded message re-encodes to bytes that decode to the same message.
pub fn wire(data: &[u8]) {
    if let Ok(req) = Request::decode_payload(data) {
        let again = Request::decode_payload(&req.encode_to_vec()).expect("re-decodes");
        assert_eq!(again, req);
    }
    if let Ok(resp) = Response::decode_payload(data) {
        let again = Response::decode_payload(&resp.encode_to_vec()).expect("re-decodes");
        assert_eq!(again, resp);
    }
}

/// A sequence of cache operations checked against the model after every
/// step.
pub fn cache(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let max = usize::from(u.arbitrary::<u8>().unwrap_or(100)) * 2;
    let overhead = usize::from(u.arbitrary::<u8>().unwrap_or(0) % 24);
    // 0: every entry in a segment of its own.
    let segment = usize::from(u.arbitrary::<u8>().unwrap_or(0) % 128);
    let mut check = CacheCheck::with_segment_size(max, overhead, segment, epoch());
    while !u.is_empty() {
        let Ok(op) = cache_op(&mut u) else { break };
        if let Err(e) = check.step(&op) {
            panic!("{op:?}: {e}");
        }
    }
}

fn cache_op(u: &mut Unstructured<'_>) -> arbitrary::Result<CacheOp> {
    Ok(match u.int_in_range(0..=12u8)? {
        0..=3 => CacheOp::Get(u.int_in_range(0..=15)?),
        4..=7 => CacheOp::Insert {
            key: u.int_in_range(0..=15)?,
            len: u.int_in_range(0..=60)?,
            ttl: if u.arbitrary()? {
                Some(u.int_in_range(1..=30)?)
            } else {
                None
            },
        },
        8 => CacheOp::Remove(u.int_in_range(0..=15)?),
        9 | 10 => CacheOp::Advance(u.int_in_range(0..=20)?),
        11 => CacheOp::Budget(u.int_in_range(0..=600)?),
        _ => CacheOp::Sweep(u.int_in_range(0..=8)?),
    })
}
