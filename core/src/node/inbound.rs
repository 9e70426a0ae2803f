//! One inbound connection's own state machine: it reassembles the
//! connection's requests, answers those that hit a cache, hands the rest
//! to the node, keeps the answers in request order, bounds what the client
//! leaves unread, and keeps the connection's deadlines. It needs nothing of
//! the node but the groups' caches, so a driver can run it in the task that
//! reads the connection, without the node's lock ([`Node::accept_inbound`]).
//! A node that accepted a connection itself ([`Node::accept`]) runs the
//! same state machine for it.
//!
//! Like the node, it takes `now` with every input and hands out what to do
//! through [`Inbound::poll_output`], drained after every input:
//!
//! - [`InboundOutput::Request`]: a request the caches could not answer;
//!   pass it to [`Node::serve`], whose answer comes back as
//!   [`Output::Answer`] for [`Inbound::handle_answer`].
//! - [`InboundOutput::Send`]: bytes to write, in order; report them with
//!   [`Inbound::handle_written`] once written.
//! - [`InboundOutput::Close`]: close the connection after writing what was
//!   sent, and tell the node ([`Node::handle_closed`]). Nothing follows it.
//!
//! [`Output::Answer`]: super::Output::Answer

use std::collections::VecDeque;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use hashbrown::HashMap;

use crate::frame::FrameDecoder;
use crate::wire::{encode_response, Request, Response, CODE_NO_GROUP, KEEPALIVE_FRAME, OP_GET};

use super::serve::ok_response;
#[cfg(doc)]
use super::Node;
use super::{CloseReason, Config, ConnId, GroupCaches};

/// The groups' caches by name, as the node had them when the connection
/// was accepted: a group added later is served through the node.
pub(super) type Served = Arc<HashMap<Arc<str>, Arc<GroupCaches>>>;

/// What an [`Inbound`] asks its driver to do.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum InboundOutput {
    /// Pass this request to [`Node::serve`] with its `seq`.
    Request {
        /// Where its answer goes: give it back to
        /// [`Inbound::handle_answer`] with the answer.
        seq: u64,
        /// The request, decoded.
        request: Request,
    },
    /// Write these bytes to the connection, after everything sent before.
    Send(Bytes),
    /// Close the connection once what was sent is written, and call
    /// [`Node::handle_closed`].
    Close(CloseReason),
}

/// The settings an inbound connection keeps, copied from the node's
/// [`Config`] when it is accepted.
#[derive(Debug, Clone, Copy)]
struct Limits {
    max_pipeline: usize,
    max_unwritten: usize,
    request_timeout: Duration,
    idle_timeout: Duration,
}

/// An inbound connection, from a client or a peer. See the module's docs.
pub struct Inbound {
    conn: ConnId,
    limits: Limits,
    groups: Served,
    buf: BytesMut,
    dec: FrameDecoder,
    /// A frame was decoded since `frame_started` was last set.
    decoded: bool,
    /// The time of the latest input: what decoding, done when outputs are
    /// polled, counts as now.
    now: Instant,
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
    /// Answers encoded but not yet handed out: requests read in one batch
    /// are answered with one send.
    pending: BytesMut,
    /// Bytes of answers (queued or sent) not reported written yet.
    unwritten: usize,
    /// The client asked for keepalives while its answers are pending.
    progress: bool,
    /// What waits in [`Inbound::poll_output`] before the next frame is
    /// decoded.
    out: VecDeque<InboundOutput>,
    /// Shutting down: close once nothing is owed.
    draining: bool,
    /// Closed: the close was handed out, and every input is ignored.
    closed: bool,
    /// The client's address, canonical, and whether it is a peer's.
    pub(super) from: IpAddr,
    pub(super) peer: bool,
}

impl std::fmt::Debug for Inbound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inbound")
            .field("conn", &self.conn)
            .field("from", &self.from)
            .field("owed", &self.slots.len())
            .field("unwritten", &self.unwritten)
            .field("closed", &self.closed)
            .finish_non_exhaustive()
    }
}

/// What an inbound connection's deadline calls for when it comes.
#[derive(Debug, PartialEq, Eq)]
enum Due {
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
fn keepalive_interval(request_timeout: Duration) -> Duration {
    (request_timeout / 3).max(Duration::from_millis(1))
}

impl Inbound {
    /// Connection `conn`, accepted at `now` from `from`; `peer` when that
    /// is a peer's address.
    pub(super) fn new(
        now: Instant,
        conn: ConnId,
        cfg: &Config,
        groups: Served,
        from: IpAddr,
        peer: bool,
    ) -> Self {
        Self {
            conn,
            limits: Limits {
                max_pipeline: cfg.max_pipeline,
                max_unwritten: cfg.max_unwritten,
                request_timeout: cfg.request_timeout,
                idle_timeout: cfg.idle_timeout,
            },
            groups,
            buf: BytesMut::new(),
            dec: FrameDecoder::new(cfg.max_frame),
            decoded: false,
            now,
            slots: VecDeque::new(),
            first_seq: 0,
            frame_started: None,
            last_active: now,
            last_sent: now,
            pending: BytesMut::new(),
            unwritten: 0,
            progress: false,
            out: VecDeque::new(),
            draining: false,
            closed: false,
            from,
            peer,
        }
    }

    /// The connection's name, as the node knows it.
    pub fn id(&self) -> ConnId {
        self.conn
    }

    /// Bytes arrived. Whole requests in them come out of
    /// [`Inbound::poll_output`], answered or to be served.
    pub fn handle_data(&mut self, now: Instant, data: &[u8]) {
        self.now = self.now.max(now);
        if self.closed {
            return;
        }
        self.buf.extend_from_slice(data);
    }

    /// The answer to request `seq` (from [`Node::serve`]). Answers are sent
    /// in request order; one to a request no longer owed is dropped.
    pub fn handle_answer(&mut self, now: Instant, seq: u64, resp: Response) {
        self.now = self.now.max(now);
        if self.closed {
            return;
        }
        let Some(slot) = (seq.checked_sub(self.first_seq))
            .and_then(|k| self.slots.get_mut(usize::try_from(k).ok()?))
        else {
            return;
        };
        // An answer naming no group is not activity: a client that only
        // sends those is still closed when idle.
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
                    // A large value goes out as the cache's own buffer.
                    for piece in [self.pending.split().freeze(), value] {
                        self.unwritten += piece.len();
                        self.out.push_back(InboundOutput::Send(piece));
                    }
                    self.unwritten += tail.len();
                    self.pending = tail;
                }
            }
        }
    }

    /// `n` more bytes of what was sent were written. A connection paused
    /// because its client did not read resumes once enough is.
    pub fn handle_written(&mut self, now: Instant, n: usize) {
        self.now = self.now.max(now);
        self.unwritten = self.unwritten.saturating_sub(n);
    }

    /// Time passed: a frame begun too long ago or an idle connection
    /// closes; a client waiting on answers may be due a keepalive.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.now = self.now.max(now);
        if self.closed {
            return;
        }
        match self.due(now) {
            Due::Later => {}
            Due::Keepalive => {
                let frame = Bytes::from_static(&KEEPALIVE_FRAME);
                self.flush();
                self.last_sent = now;
                self.unwritten += frame.len();
                self.out.push_back(InboundOutput::Send(frame));
            }
            Due::Close(reason) => self.close(reason),
        }
    }

    /// The node is shutting down: close now if nothing is owed, else once
    /// the answers owed are sent.
    pub fn handle_shutdown(&mut self, now: Instant) {
        self.now = self.now.max(now);
        if self.closed || self.draining {
            return;
        }
        self.draining = true;
        if self.slots.is_empty() {
            self.close(CloseReason::Shutdown);
        }
    }

    /// When [`Inbound::handle_timeout`] is due next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.closed {
            return None;
        }
        let frame = self.frame_started.map(|t| t + self.limits.request_timeout);
        let other = if self.slots.is_empty() {
            Some(self.last_active + self.limits.idle_timeout)
        } else if self.progress {
            Some(self.last_sent + keepalive_interval(self.limits.request_timeout))
        } else {
            None
        };
        match (frame, other) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Whether the driver should read more now: false while the client
    /// leaves too many answer bytes unread (backpressure), and once closed.
    pub fn wants_read(&self) -> bool {
        !self.closed && !self.is_paused()
    }

    /// True when no answer is owed.
    pub fn owes_nothing(&self) -> bool {
        self.slots.is_empty()
    }

    /// The next thing to do. Decodes the next buffered request when nothing
    /// else waits, answering it at once if a cache holds its value.
    pub fn poll_output(&mut self) -> Option<InboundOutput> {
        loop {
            if let Some(o) = self.next_queued() {
                return Some(o);
            }
            if self.closed {
                return None;
            }
            match self.next_request() {
                Ok(Some((seq, request))) => {
                    let Some(resp) = self.hit(&request) else {
                        return Some(InboundOutput::Request { seq, request });
                    };
                    self.handle_answer(self.now, seq, resp);
                }
                Ok(None) => {
                    // Nothing more to decode: what was answered goes out.
                    self.flush();
                    if self.out.is_empty() {
                        return None;
                    }
                }
                Err(reason) => self.close(reason),
            }
        }
    }

    /// The queued output, with the answers encoded before a close sent
    /// first, and a close once draining leaves nothing owed.
    fn next_queued(&mut self) -> Option<InboundOutput> {
        let o = self.out.pop_front()?;
        if let InboundOutput::Close(_) = o {
            self.closed = true;
            self.out.clear();
        }
        Some(o)
    }

    /// Hands out the answers encoded so far; then, if draining and nothing
    /// is owed, the close.
    fn flush(&mut self) {
        if !self.pending.is_empty() {
            self.last_sent = self.now;
            let data = self.pending.split().freeze();
            self.out.push_back(InboundOutput::Send(data));
        }
        if self.draining && self.slots.is_empty() && self.buf.is_empty() {
            self.draining = false;
            self.out
                .push_back(InboundOutput::Close(CloseReason::Shutdown));
        }
    }

    /// Queues the close, after whatever was answered.
    fn close(&mut self, reason: CloseReason) {
        self.draining = false;
        self.flush();
        self.out.push_back(InboundOutput::Close(reason));
    }

    fn is_paused(&self) -> bool {
        self.unwritten >= self.limits.max_unwritten
    }

    /// The answer to a get whose value a cache holds, counted as a served
    /// request and a hit; `None` for anything the node must see.
    fn hit(&self, req: &Request) -> Option<Response> {
        if req.op != OP_GET {
            return None;
        }
        let caches = self.groups.get(req.group.as_str())?;
        let now = self.now;
        let hit = caches.serve(&req.key, now)?;
        Some(ok_response(hit.value, hit.expires, now, req.ext))
    }

    /// The next whole request buffered, with the sequence number its
    /// answer goes to; `None` when no whole frame is buffered or the
    /// connection is paused.
    fn next_request(&mut self) -> Result<Option<(u64, Request)>, CloseReason> {
        if self.is_paused() {
            // Paused: frames wait in `buf` until the client reads.
            return Ok(None);
        }
        let frame = match self.dec.decode(&mut self.buf) {
            Ok(Some(f)) => f,
            Ok(None) => {
                // Time a client takes to finish a frame is bounded from
                // when it started it: at the latest, when the last whole
                // frame before it was decoded.
                self.frame_started = match (self.dec.is_mid_frame(&self.buf), self.frame_started) {
                    (false, _) => None,
                    (true, Some(t)) if !self.decoded => Some(t),
                    (true, _) => Some(self.now),
                };
                self.decoded = false;
                return Ok(None);
            }
            Err(e) => return Err(CloseReason::Frame(e)),
        };
        self.decoded = true;
        let req =
            Request::decode_payload(&frame).map_err(|e| CloseReason::Protocol(e.to_string()))?;
        if self.slots.len() >= self.limits.max_pipeline {
            return Err(CloseReason::Overloaded);
        }
        self.progress |= req.ext && req.progress;
        let seq = self.first_seq + self.slots.len() as u64;
        self.slots.push_back(None);
        Ok(Some((seq, req)))
    }

    /// What the deadline calls for at `now`.
    fn due(&self, now: Instant) -> Due {
        if self.poll_timeout().is_none_or(|d| d > now) {
            return Due::Later;
        }
        let late = |t: Instant| t + self.limits.request_timeout <= now;
        if self.frame_started.is_some_and(late) {
            Due::Close(CloseReason::Timeout)
        } else if !self.slots.is_empty() {
            Due::Keepalive
        } else if self.frame_started.is_some() {
            Due::Close(CloseReason::Timeout)
        } else {
            Due::Close(CloseReason::Idle)
        }
    }
}
