//! The protobuf messages of go-needle/groupcache, plus extension fields that a
//! Go peer ignores. The schema is documented in `proto/groupcache.proto`.
//!
//! Fields 1 and 2 and the codes 200/404/500 keep the original's meaning. The
//! extensions are only ever sent in a response to a request that set
//! [`Request::ext`], so a Go client gets byte-identical answers.

use bytes::{BufMut, Bytes, BytesMut};
use prost::Message;

use crate::frame;

/// Code of a response that carries a value.
pub const CODE_OK: i32 = 200;
/// Code of a response from a node that has no such group.
pub const CODE_NO_GROUP: i32 = 404;
/// Code of a response whose `value` holds an error message.
pub const CODE_ERROR: i32 = 500;

/// Message the original sends with [`CODE_NO_GROUP`].
pub const NO_GROUP_MESSAGE: &str = "no group";

/// [`Request::op`] of a get: the original's only request.
pub const OP_GET: i32 = 0;
/// [`Request::op`] of a set.
pub const OP_SET: i32 = 1;
/// [`Request::op`] of a remove.
pub const OP_REMOVE: i32 = 2;
/// [`Request::op`] of a purge.
pub const OP_PURGE: i32 = 3;
/// [`Request::op`] of a peek: answer from the cache alone, never load.
/// A node that became a key's owner asks the previous owner this way
/// (warm handoff) before it loads the key from the origin.
pub const OP_PEEK: i32 = 4;

/// A request for one key of one group.
#[derive(Clone, PartialEq, Eq, Message)]
pub struct Request {
    /// Group name.
    #[prost(string, tag = "1")]
    pub group: String,
    /// Key within the group.
    #[prost(string, tag = "2")]
    pub key: String,
    /// Extension: the request comes from a member peer; serve it here and
    /// never forward it again (breaks A→B→A loops when rings disagree).
    #[prost(bool, tag = "3")]
    pub from_peer: bool,
    /// Extension: the requester understands the response extension fields.
    #[prost(bool, tag = "4")]
    pub ext: bool,
    /// Extension: while answers to this connection are pending, send a
    /// [`Response::keepalive`] frame every so often, so the requester can
    /// tell a slow load from a dead node. Only sent with `ext`.
    #[prost(bool, tag = "5")]
    pub progress: bool,
    /// Extension: what to do; [`OP_GET`] (0, the original's meaning), a
    /// write, or [`OP_PEEK`]. Only ever sent to a node that announced
    /// [`Response::writes`]: any other node would read a write as a get.
    /// With `from_peer` a write applies on that node alone; without, that
    /// node carries it out across the cluster.
    #[prost(int32, tag = "6")]
    pub op: i32,
    /// Extension: the value of a set.
    #[prost(bytes = "bytes", tag = "7")]
    pub value: Bytes,
    /// Extension: milliseconds a set value is served; 0 means the group's
    /// time to live.
    #[prost(uint64, tag = "8")]
    pub ttl_ms: u64,
}

/// The answer to a [`Request`].
#[derive(Clone, PartialEq, Eq, Message)]
pub struct Response {
    /// The value (code 200) or an error message (other codes).
    #[prost(bytes = "bytes", tag = "1")]
    pub value: Bytes,
    /// 200 value, 404 no group, 500 error.
    #[prost(int32, tag = "2")]
    pub code: i32,
    /// Extension: milliseconds the value stays fresh; 0 means no expiry.
    #[prost(uint64, tag = "3")]
    pub ttl_ms: u64,
    /// Extension: the owner's loader says the key does not exist; do not
    /// fall back to a local load.
    #[prost(bool, tag = "4")]
    pub not_found: bool,
    /// Extension: this server answers pipelined requests, in order.
    #[prost(bool, tag = "5")]
    pub pipelining: bool,
    /// Extension: the owner's loader failed (code 500); the requester must
    /// not load the key itself, which would only hit the origin again.
    #[prost(bool, tag = "6")]
    pub load_failed: bool,
    /// Extension: not an answer. The server is alive and still working on
    /// this connection's pending requests; sent only to requesters that set
    /// [`Request::progress`].
    #[prost(bool, tag = "7")]
    pub keepalive: bool,
    /// Extension: this server understands writes ([`Request::op`]). Set in
    /// answers to an empty request (a probe) and to writes, when the
    /// requester set `ext`.
    #[prost(bool, tag = "8")]
    pub writes: bool,
    /// Extension: in the answer to a write, the peers it could not reach.
    #[prost(string, repeated, tag = "9")]
    pub not_reached: Vec<String>,
}

/// A payload that is not a valid message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed {what}: {reason}")]
pub struct WireError {
    what: &'static str,
    reason: String,
}

impl Request {
    /// Decodes a request payload (without the frame header).
    pub fn decode_payload(payload: &[u8]) -> Result<Self, WireError> {
        Self::decode(payload).map_err(|e| WireError {
            what: "request",
            reason: e.to_string(),
        })
    }
}

impl Response {
    /// Decodes a response payload (without the frame header).
    pub fn decode_payload(payload: &[u8]) -> Result<Self, WireError> {
        Self::decode(payload).map_err(|e| WireError {
            what: "response",
            reason: e.to_string(),
        })
    }
}

/// Encodes `msg` as one whole frame (header and payload) appended to `dst`.
///
/// ```
/// use bytes::BytesMut;
/// use groupcache_core::wire::{encode_frame, Request};
///
/// let mut out = BytesMut::new();
/// encode_frame(&Request { group: "score".into(), key: "Tom".into(), ..Default::default() }, &mut out);
/// assert_eq!(hex(&out), "0c000000000000000a0573636f72651203546f6d");
/// # fn hex(b: &[u8]) -> String { b.iter().map(|x| format!("{x:02x}")).collect() }
/// ```
pub fn encode_frame<M: Message>(msg: &M, dst: &mut BytesMut) {
    frame::put_header(msg.encoded_len(), dst);
    // put_header reserved room for the payload, so the length check that
    // `encode` repeats (a second `encoded_len` on every answer) is skipped.
    msg.encode_raw(dst);
}

/// Values at least this large are written from the cache's own buffer
/// instead of being copied into the frame (see [`encode_response`]).
pub const SHARE_VALUE_MIN: usize = 16 * 1024;

/// Encodes a response frame appended to `dst`, without copying a large
/// value: when the value has at least [`SHARE_VALUE_MIN`] bytes, `dst` gets
/// only the frame's head, and the value (the same shared buffer) and the
/// rest of the frame are returned, to be written after `dst` in that order.
///
/// ```
/// use bytes::{BufMut, Bytes, BytesMut};
/// use groupcache_core::wire::{encode_response, frame_bytes, Response};
///
/// let resp = Response { value: Bytes::from(vec![7u8; 1 << 20]), code: 200, ..Default::default() };
/// let mut head = BytesMut::new();
/// let (value, tail) = encode_response(&resp, &mut head).expect("large value");
/// assert_eq!(value.as_ptr(), resp.value.as_ptr()); // shared, not copied
/// assert_eq!([&head[..], &value[..], &tail[..]].concat(), frame_bytes(&resp));
/// ```
pub fn encode_response(resp: &Response, dst: &mut BytesMut) -> Option<(Bytes, BytesMut)> {
    if resp.value.len() < SHARE_VALUE_MIN {
        encode_frame(resp, dst);
        return None;
    }
    let rest = Response {
        value: Bytes::new(),
        ..resp.clone()
    };
    dst.reserve(frame::HEADER_LEN + 11);
    dst.put_i64_le(resp.encoded_len() as i64);
    prost::encoding::encode_key(1, prost::encoding::WireType::LengthDelimited, dst);
    prost::encoding::encode_varint(resp.value.len() as u64, dst);
    // Empty bytes are not encoded in proto3: `rest` is every other field.
    let mut tail = BytesMut::with_capacity(rest.encoded_len());
    rest.encode_raw(&mut tail);
    Some((resp.value.clone(), tail))
}

/// The whole frame of a keepalive (`Response { pipelining, keepalive }`):
/// the same bytes every time, so never encoded again.
///
/// ```
/// use groupcache_core::wire::{frame_bytes, Response, KEEPALIVE_FRAME};
/// let r = Response { pipelining: true, keepalive: true, ..Default::default() };
/// assert_eq!(frame_bytes(&r), &KEEPALIVE_FRAME[..]);
/// ```
pub const KEEPALIVE_FRAME: [u8; 12] = [4, 0, 0, 0, 0, 0, 0, 0, 0x28, 1, 0x38, 1];

/// Encodes `msg` as one frame in a buffer of its own.
pub fn frame_bytes<M: Message>(msg: &M) -> Bytes {
    let mut b = BytesMut::new();
    encode_frame(msg, &mut b);
    b.freeze()
}
