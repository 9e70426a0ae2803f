//! What comes back from peers: connections up, answers read, connections
//! closed or due.

use std::sync::Arc;
use std::time::Instant;

use crate::wire::Response;

use super::{Failure, Io, Peers, Sent};
use crate::node::{CloseReason, Config, ConnId};

/// A peer's answer to a request.
pub(in crate::node) struct Answer {
    pub(in crate::node) peer: Arc<str>,
    pub(in crate::node) sent: Sent,
    pub(in crate::node) response: Response,
}

/// An outbound connection that closed, and what it leaves undone.
pub(in crate::node) struct Closed {
    pub(in crate::node) peer: Arc<str>,
    /// Requests that will get no answer, in the order they were sent and
    /// then queued.
    pub(in crate::node) failed: Vec<Sent>,
    pub(in crate::node) why: Failure,
}

impl Peers {
    /// An [`Output::Connect`](crate::node::Output::Connect) succeeded.
    pub(in crate::node) fn connected(&mut self, now: Instant, conn: ConnId, io: &mut Io) {
        let Some(o) = self.conns.get_mut(&conn) else {
            return;
        };
        o.connect_deadline = None;
        o.last_active = now;
        let peer = o.peer.clone();
        self.arm(conn, io);
        self.pump(now, &peer, io);
    }

    /// Bytes arrived on `conn`; false if it is not an outbound connection.
    pub(in crate::node) fn received(&mut self, conn: ConnId, data: &[u8]) -> bool {
        let Some(o) = self.conns.get_mut(&conn) else {
            return false;
        };
        o.buf.extend_from_slice(data);
        true
    }

    /// The next answer complete in `conn`'s bytes, if any. A keepalive
    /// (the owner is alive and still loading) pushes the deadlines of the
    /// requests in flight back, up to each one's latest, and is no answer.
    pub(in crate::node) fn next_answer(
        &mut self,
        now: Instant,
        conn: ConnId,
        cfg: &Config,
    ) -> Result<Option<Answer>, CloseReason> {
        loop {
            let Some(o) = self.conns.get_mut(&conn) else {
                return Ok(None);
            };
            let frame = match o.dec.decode(&mut o.buf) {
                Ok(Some(f)) => f,
                Ok(None) => return Ok(None),
                Err(e) => return Err(CloseReason::Frame(e)),
            };
            let response = Response::decode_payload(&frame)
                .map_err(|e| CloseReason::Protocol(e.to_string()))?;
            o.last_active = now;
            if response.keepalive {
                for s in &mut o.inflight {
                    s.deadline = s
                        .deadline
                        .max((now + cfg.request_timeout).min(s.max_deadline));
                }
                continue;
            }
            let sent = o
                .inflight
                .pop_front()
                .ok_or_else(|| CloseReason::Protocol("response to no request".into()))?;
            o.pipelining = response.pipelining;
            let peer = o.peer.clone();
            return Ok(Some(Answer {
                peer,
                sent,
                response,
            }));
        }
    }

    /// `conn` read what it had: re-arms its timer and sends what its pool
    /// has queued.
    pub(in crate::node) fn read_all(&mut self, now: Instant, conn: ConnId, io: &mut Io) {
        let Some(o) = self.conns.get(&conn) else {
            return;
        };
        let peer = o.peer.clone();
        self.arm(conn, io);
        self.pump(now, &peer, io);
    }

    /// Forgets `conn`. A refused connection, or one that timed out, backs
    /// its peer off, and what was queued for the peer fails with what was
    /// in flight, so that no get waits on it until a probe brings it back.
    pub(in crate::node) fn close(
        &mut self,
        now: Instant,
        conn: ConnId,
        timed_out: bool,
        cfg: &Config,
    ) -> Option<Closed> {
        let o = self.conns.remove(&conn)?;
        let pool = self.pools.get_mut(&o.peer).expect("pool of conn");
        pool.conns.retain(|&c| c != conn);
        let mut failed: Vec<Sent> = o.inflight.into();
        let refused = o.connect_deadline.is_some() && pool.conns.is_empty();
        if refused || timed_out {
            pool.back_off(now + cfg.peer_backoff);
            failed.extend(pool.drain_queued());
        }
        let why = if timed_out {
            Failure::Timeout
        } else {
            Failure::Closed
        };
        Some(Closed {
            peer: o.peer,
            failed,
            why,
        })
    }

    /// `conn`'s timer fired: how it must close, if it is due; otherwise it
    /// is armed again.
    pub(in crate::node) fn due(
        &self,
        now: Instant,
        conn: ConnId,
        io: &mut Io,
    ) -> Option<CloseReason> {
        let o = self.conns.get(&conn)?;
        if o.deadline(io.cfg).is_none_or(|d| d > now) {
            self.arm(conn, io);
            return None;
        }
        Some(if !o.inflight.is_empty() || o.connect_deadline.is_some() {
            CloseReason::Timeout
        } else {
            CloseReason::Idle
        })
    }
}
