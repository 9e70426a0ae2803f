//! A request to a peer, from the moment it is queued until answered, and
//! whom its answer goes to.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::wire::{Request, OP_GET};

use crate::node::handoff::peek_request;
use crate::node::write::op_fields;
use crate::node::{GetId, WriteId, WriteOp};

/// Why a request to a peer was sent: whom its answer goes to.
#[derive(Debug, Clone)]
pub(in crate::node) enum Ask {
    /// A get for this node's flight of the key; `token` tells whether the
    /// flight still waits on this request.
    Flight { token: u64 },
    /// A peek at the key's previous owner for this node's flight (warm
    /// handoff); a miss or a failure sends the flight to the origin.
    Handoff { token: u64 },
    /// A health probe or a capability hello: an empty request. Any answer
    /// proves the peer alive and says whether it understands writes.
    Probe,
    /// A get on a caller's behalf ([`Node::get_via`](crate::node::Node::get_via)):
    /// the answer is the caller's, as is.
    Get(GetId),
    /// A write: `relay` asks that node to carry it out across the cluster
    /// ([`Node::write_via`](crate::node::Node::write_via)); otherwise it
    /// applies there alone, as part of a write this node carries out.
    Write {
        id: WriteId,
        op: WriteOp,
        relay: bool,
    },
}

/// A request to a peer, from the moment it is queued until answered.
#[derive(Debug)]
pub(in crate::node) struct Sent {
    pub(in crate::node) group: Arc<str>,
    pub(in crate::node) key: Arc<str>,
    pub(in crate::node) ask: Ask,
    pub(in crate::node) asked_at: Instant,
    pub(in crate::node) deadline: Instant,
    /// Latest the deadline may be pushed by keepalives: the owner's load
    /// timeout plus one request timeout after asking.
    pub(in crate::node) max_deadline: Instant,
}

impl Sent {
    /// A request asked now, due in one request timeout; keepalives may push
    /// that back to `max_deadline`.
    pub(in crate::node) fn new(
        now: Instant,
        request_timeout: Duration,
        group: Arc<str>,
        key: Arc<str>,
        ask: Ask,
        max_deadline: Instant,
    ) -> Self {
        let deadline = now + request_timeout;
        Sent {
            group,
            key,
            ask,
            asked_at: now,
            deadline,
            max_deadline: max_deadline.max(deadline),
        }
    }

    /// Whether the peer answers this at once, from memory: a peek never
    /// loads and a probe names no group. Such requests go on a connection
    /// of their own, so that none waits behind a get the peer is loading,
    /// which could wait on a peek of its own back to this node: two nodes
    /// peeking each other behind gets would each hold the other's answer.
    pub(super) fn is_quick(&self) -> bool {
        matches!(self.ask, Ask::Handoff { .. } | Ask::Probe)
    }

    /// The request this record stands for.
    pub(super) fn request(&self) -> Request {
        let (group, key) = (self.group.to_string(), self.key.to_string());
        let get = |from_peer| Request {
            group: group.clone(),
            key: key.clone(),
            from_peer,
            ext: true,
            progress: true,
            op: OP_GET,
            ..Default::default()
        };
        match &self.ask {
            Ask::Flight { .. } => get(true),
            Ask::Handoff { .. } => peek_request(group, key),
            Ask::Get(_) => get(false),
            Ask::Probe => Request {
                from_peer: true,
                ext: true,
                ..Default::default()
            },
            Ask::Write { op, relay, .. } => {
                let (op, value, ttl_ms) = op_fields(op);
                Request {
                    group,
                    key,
                    // A relayed write is carried out by that node across
                    // the cluster, which can take a while: keepalives tell
                    // it lives.
                    from_peer: !relay,
                    ext: true,
                    progress: *relay,
                    op,
                    value,
                    ttl_ms,
                }
            }
        }
    }
}
