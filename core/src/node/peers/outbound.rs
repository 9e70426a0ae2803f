//! An outbound connection to a peer: its bytes, and the requests in flight
//! on it.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use bytes::BytesMut;

use super::Sent;
use crate::frame::FrameDecoder;
use crate::node::Config;

pub(super) struct Outbound {
    pub(super) peer: Arc<str>,
    /// Set until the connection is up.
    pub(super) connect_deadline: Option<Instant>,
    /// Bytes read and not yet decoded.
    pub(super) buf: BytesMut,
    pub(super) dec: FrameDecoder,
    /// Requests sent, in order: answers come back in this order.
    pub(super) inflight: VecDeque<Sent>,
    /// Whether the peer said it takes several requests at once.
    pub(super) pipelining: bool,
    pub(super) last_active: Instant,
    /// The pool's quick connection: it carries only requests the peer
    /// answers at once ([`Sent::is_quick`]), so none waits behind a get.
    pub(super) quick: bool,
}

impl Outbound {
    /// A connection being opened now.
    pub(super) fn new(now: Instant, peer: Arc<str>, quick: bool, cfg: &Config) -> Self {
        Self {
            peer,
            connect_deadline: Some(now + cfg.connect_timeout),
            buf: BytesMut::new(),
            dec: FrameDecoder::new(cfg.max_frame),
            inflight: VecDeque::new(),
            pipelining: false,
            last_active: now,
            quick,
        }
    }

    /// When the connection is due: its connect, its oldest request, or
    /// idleness.
    pub(super) fn deadline(&self, cfg: &Config) -> Option<Instant> {
        self.connect_deadline.or_else(|| {
            self.inflight
                .front()
                .map(|s| s.deadline)
                .or(Some(self.last_active + cfg.idle_timeout))
        })
    }
}
