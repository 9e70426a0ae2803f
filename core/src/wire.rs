//! The protobuf messages of go-needle/groupcache, plus extension fields that a
//! Go peer ignores. The schema is documented in `proto/groupcache.proto`.
//!
//! Fields 1 and 2 and the codes 200/404/500 keep the original's meaning. The
//! extensions are only ever sent in a response to a request that set
//! [`Request::ext`], so a Go client gets byte-identical answers.

use bytes::{Bytes, BytesMut};
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
    // Cannot fail: put_header reserved room for the payload.
    msg.encode(dst).expect("reserved capacity");
}

/// Encodes `msg` as one frame in a buffer of its own.
pub fn frame_bytes<M: Message>(msg: &M) -> Bytes {
    let mut b = BytesMut::new();
    encode_frame(msg, &mut b);
    b.freeze()
}
