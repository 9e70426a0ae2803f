//! Connection input: bytes in, connections closed.

use std::time::Instant;

use super::peer::Failure;
use super::{CloseReason, Conn, ConnId, Inbound, Node, Output, Sent};

impl Node {
    /// Bytes arrived on a connection. Afterwards, [`Node::wants_read`] says
    /// whether the driver may read more from it now.
    pub fn handle_data(&mut self, now: Instant, conn: ConnId, data: &[u8]) {
        match self.conns.get_mut(&conn) {
            Some(Conn::In(i)) => {
                i.handle_data(now, data);
                self.pump_inbound(now, conn);
            }
            Some(Conn::Out(o)) => {
                o.buf.extend_from_slice(data);
                match self.read_responses(now, conn) {
                    Err(reason) => self.close(now, conn, Some(reason)),
                    Ok(()) => {
                        self.arm_conn(conn);
                        if let Some(Conn::Out(o)) = self.conns.get(&conn) {
                            let peer = o.peer.clone();
                            self.pump(now, &peer);
                        }
                    }
                }
            }
            // A driver's inbound connection reads through its `Inbound`.
            Some(Conn::Detached { .. }) | None => {}
        }
    }

    /// The driver wrote `n` more bytes of what the node sent on `conn`. A
    /// connection paused for backpressure resumes once enough is written.
    pub fn handle_written(&mut self, now: Instant, conn: ConnId, n: usize) {
        let Some(Conn::In(i)) = self.conns.get_mut(&conn) else {
            return;
        };
        i.handle_written(now, n);
        self.pump_inbound(now, conn);
    }

    /// Whether the driver should read from `conn` now. False while an
    /// inbound connection is paused because its client does not read its
    /// answers: the driver reads again after [`Node::handle_written`] makes
    /// this true. Unknown connections read nothing.
    pub fn wants_read(&self, conn: ConnId) -> bool {
        match self.conns.get(&conn) {
            Some(Conn::In(i)) => i.wants_read(),
            Some(Conn::Out(_)) => true,
            Some(Conn::Detached { .. }) | None => false,
        }
    }

    fn read_responses(&mut self, now: Instant, conn: ConnId) -> Result<(), CloseReason> {
        loop {
            let Some(Conn::Out(o)) = self.conns.get_mut(&conn) else {
                return Ok(());
            };
            let frame = match o.dec.decode(&mut o.buf) {
                Ok(Some(f)) => f,
                Ok(None) => return Ok(()),
                Err(e) => return Err(CloseReason::Frame(e)),
            };
            self.on_response(now, conn, &frame)?;
        }
    }

    /// The driver saw the connection close or fail (including a failed
    /// connect). Outstanding peer requests on it fall back to local loads.
    pub fn handle_closed(&mut self, now: Instant, conn: ConnId) {
        self.close(now, conn, None);
    }

    /// Forgets a connection; `reason` is set when the node itself closes it.
    pub(super) fn close(&mut self, now: Instant, conn: ConnId, reason: Option<CloseReason>) {
        let Some(c) = self.conns.remove(&conn) else {
            return;
        };
        self.timers.forget_conn(conn);
        self.trim_timers();
        let timed_out = reason == Some(CloseReason::Timeout);
        if let Some(reason) = reason {
            self.out.push_back(Output::Close { conn, reason });
        }
        match c {
            Conn::In(Inbound { from, peer, .. }) | Conn::Detached { from, peer } => {
                self.admission.release(from, peer);
            }
            Conn::Out(o) => {
                let pool = self.pools.get_mut(&o.peer).expect("pool of conn");
                pool.conns.retain(|&c| c != conn);
                let mut failed: Vec<Sent> = o.inflight.into();
                let refused = o.connect_deadline.is_some() && pool.conns.is_empty();
                if refused || timed_out {
                    // Unreachable, or it let a request or a connect time out:
                    // back it off and fail what waits for it too, so that no
                    // get waits on it again until a probe brings it back.
                    pool.back_off(now + self.cfg.peer_backoff);
                    failed.extend(pool.drain_queued());
                }
                let why = if timed_out {
                    Failure::Timeout
                } else {
                    Failure::Closed
                };
                for s in failed {
                    self.peer_failed(now, &o.peer, s, why);
                }
                self.pump(now, &o.peer);
            }
        }
    }
}
