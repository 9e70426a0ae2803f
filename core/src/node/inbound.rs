//! One inbound connection's own state: reassembling its requests, keeping
//! their answers in order, how much of them its client has not read, and
//! its deadlines. Nothing here reaches into the rest of the node, so the
//! node decides what a request means and this struct decides what the
//! connection owes and when.

use std::collections::VecDeque;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

use crate::frame::FrameDecoder;
use crate::wire::{encode_response, Request, Response, CODE_NO_GROUP, KEEPALIVE_FRAME};

use super::{CloseReason, Config};

/// An inbound connection, from a client or a peer.
pub(super) struct Inbound {
    buf: BytesMut,
    dec: FrameDecoder,
    /// Answers in request order; `None` until ready. A ready answer keeps its
    /// value as the cache's shared `Bytes` until it is written out.
    slots: VecDeque<Option<Response>>,
    first_seq: u64,
    /// When the frame now arriving began, while one is incomplete.
    frame_started: Option<Instant>,
    /// Last real request or answer: what the idle timeout counts from.
    last_active: Instant,
    /// Last bytes sent: keepalives are due a keepalive interval after it.
    last_sent: Instant,
    /// Answers encoded but not yet handed to the driver: requests read in
    /// one batch are answered with one send.
    pending: BytesMut,
    /// Bytes of answers (queued or sent) that the driver has not reported
    /// written yet.
    unwritten: usize,
    /// The client asked for keepalives while its answers are pending.
    progress: bool,
    /// The client's address, canonical, and whether it is a peer's.
    pub(super) from: IpAddr,
    pub(super) peer: bool,
}

/// What an inbound connection's deadline calls for when it comes.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Due {
    /// Nothing yet: the deadline moved later.
    Later,
    /// Answers are pending and nothing is late: tell the client this node
    /// is alive.
    Keepalive,
    /// Close it: a frame took too long ([`CloseReason::Timeout`]), or it
    /// was idle ([`CloseReason::Idle`]).
    Close(CloseReason),
}

/// How often a node tells a waiting requester it is alive: a third of the
/// request timeout, so that two keepalives can be lost or late before a
/// requester with the same timeout gives up.
pub(super) fn keepalive_interval(cfg: &Config) -> Duration {
    (cfg.request_timeout / 3).max(Duration::from_millis(1))
}

impl Inbound {
    /// A connection accepted at `now` from `from`; `peer` when that is a
    /// peer's address.
    pub(super) fn new(now: Instant, cfg: &Config, from: IpAddr, peer: bool) -> Self {
        Self {
            buf: BytesMut::new(),
            dec: FrameDecoder::new(cfg.max_frame),
            slots: VecDeque::new(),
            first_seq: 0,
            frame_started: None,
            last_active: now,
            last_sent: now,
            pending: BytesMut::new(),
            unwritten: 0,
            progress: false,
            from,
            peer,
        }
    }

    /// Buffers bytes read from the connection.
    pub(super) fn push_data(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// True while the client has so many answer bytes unread that nothing
    /// more is read or answered for it.
    pub(super) fn is_paused(&self, cfg: &Config) -> bool {
        self.unwritten >= cfg.max_unwritten
    }

    /// True when no answer is owed.
    pub(super) fn owes_nothing(&self) -> bool {
        self.slots.is_empty()
    }

    /// True when no answer is owed and no request is buffered: a
    /// connection shutting down may close.
    pub(super) fn is_settled(&self) -> bool {
        self.slots.is_empty() && self.buf.is_empty()
    }

    /// The next whole request buffered, with the sequence number its
    /// answer goes to; `None` when no whole frame is buffered or the
    /// connection is paused. `decoded` says whether a frame was taken in
    /// this same batch: a client's time to finish a frame is bounded from
    /// when it started it, not from each read.
    pub(super) fn next_request(
        &mut self,
        now: Instant,
        cfg: &Config,
        decoded: bool,
    ) -> Result<Option<(u64, Request)>, CloseReason> {
        if self.is_paused(cfg) {
            // Paused: frames wait in `buf` until the client reads.
            return Ok(None);
        }
        let frame = match self.dec.decode(&mut self.buf) {
            Ok(Some(f)) => f,
            Ok(None) => {
                self.frame_started = match (self.dec.is_mid_frame(&self.buf), self.frame_started) {
                    (false, _) => None,
                    (true, Some(t)) if !decoded => Some(t),
                    (true, _) => Some(now),
                };
                return Ok(None);
            }
            Err(e) => return Err(CloseReason::Frame(e)),
        };
        let req =
            Request::decode_payload(&frame).map_err(|e| CloseReason::Protocol(e.to_string()))?;
        if self.slots.len() >= cfg.max_pipeline {
            return Err(CloseReason::Overloaded);
        }
        self.progress |= req.ext && req.progress;
        let seq = self.first_seq + self.slots.len() as u64;
        self.slots.push_back(None);
        Ok(Some((seq, req)))
    }

    /// A request that does real work arrived: the idle timeout counts from
    /// now. Requests naming no group are answered but are not activity, so
    /// a client that only sends those is still closed when idle.
    pub(super) fn touch(&mut self, now: Instant) {
        self.last_active = now;
    }

    /// Fills answer `seq` and encodes every answer now ready, in order,
    /// into the pending bytes. A large value is not copied: the bytes
    /// before it and the value itself are handed to `send` as they are.
    /// An answer to a slot no longer owed is dropped.
    pub(super) fn answer(
        &mut self,
        now: Instant,
        seq: u64,
        resp: Response,
        mut send: impl FnMut(Bytes),
    ) {
        let Some(slot) = (seq.checked_sub(self.first_seq))
            .and_then(|k| self.slots.get_mut(usize::try_from(k).ok()?))
        else {
            return;
        };
        if resp.code != CODE_NO_GROUP {
            self.last_active = now;
        }
        *slot = Some(resp);
        while let Some(Some(_)) = self.slots.front() {
            let resp = self.slots.pop_front().flatten().expect("checked");
            self.first_seq += 1;
            let before = self.pending.len();
            match encode_response(&resp, &mut self.pending) {
                None => self.unwritten += self.pending.len() - before,
                Some((value, tail)) => {
                    for piece in [self.pending.split().freeze(), value] {
                        self.unwritten += piece.len();
                        send(piece);
                    }
                    self.unwritten += tail.len();
                    self.pending = tail;
                }
            }
        }
    }

    /// The answers encoded and not yet handed out, if any.
    pub(super) fn take_pending(&mut self, now: Instant) -> Option<Bytes> {
        if self.pending.is_empty() {
            return None;
        }
        self.last_sent = now;
        Some(self.pending.split().freeze())
    }

    /// The driver wrote `n` more bytes; true when that resumes a paused
    /// connection.
    pub(super) fn written(&mut self, cfg: &Config, n: usize) -> bool {
        let was_paused = self.is_paused(cfg);
        self.unwritten = self.unwritten.saturating_sub(n);
        was_paused && !self.is_paused(cfg)
    }

    /// When this connection's next deadline falls: a frame begun and not
    /// finished, keepalives while answers are pending (if asked for), or
    /// the idle timeout while none is.
    pub(super) fn deadline(&self, cfg: &Config) -> Option<Instant> {
        let frame = self.frame_started.map(|t| t + cfg.request_timeout);
        let other = if self.slots.is_empty() {
            Some(self.last_active + cfg.idle_timeout)
        } else if self.progress {
            Some(self.last_sent + keepalive_interval(cfg))
        } else {
            None
        };
        match (frame, other) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// What the deadline calls for at `now`.
    pub(super) fn due(&self, now: Instant, cfg: &Config) -> Due {
        if self.deadline(cfg).is_none_or(|d| d > now) {
            return Due::Later;
        }
        let frame_late = (self.frame_started).is_some_and(|t| t + cfg.request_timeout <= now);
        if frame_late {
            Due::Close(CloseReason::Timeout)
        } else if !self.slots.is_empty() {
            Due::Keepalive
        } else if self.frame_started.is_some() {
            Due::Close(CloseReason::Timeout)
        } else {
            Due::Close(CloseReason::Idle)
        }
    }

    /// A keepalive frame to send now.
    pub(super) fn keepalive(&mut self, now: Instant) -> Bytes {
        let frame = Bytes::from_static(&KEEPALIVE_FRAME);
        self.last_sent = now;
        self.unwritten += frame.len();
        frame
    }
}
