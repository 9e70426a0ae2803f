//! Connection input: bytes in, connections closed.

use std::time::Instant;

use super::{CloseReason, Conn, ConnId, Node, Output};

impl Node {
    /// Bytes arrived on a connection. Afterwards, [`Node::wants_read`] says
    /// whether the driver may read more from it now.
    pub fn handle_data(&mut self, now: Instant, conn: ConnId, data: &[u8]) {
        match self.conns.get_mut(&conn) {
            Some(Conn::In(i)) => {
                i.handle_data(now, data);
                self.pump_inbound(now, conn);
            }
            // A driver's inbound connection reads through its `Inbound`.
            Some(Conn::Detached { .. }) => {}
            None if self.peers.received(conn, data) => match self.read_answers(now, conn) {
                Err(reason) => self.close(now, conn, Some(reason)),
                Ok(()) => self.with_peers(|p, io| p.read_all(now, conn, io)),
            },
            None => {}
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
            Some(Conn::Detached { .. }) => false,
            None => self.peers.has(conn),
        }
    }

    /// Hands every answer complete in an outbound connection's bytes to
    /// whoever asked.
    fn read_answers(&mut self, now: Instant, conn: ConnId) -> Result<(), CloseReason> {
        while let Some(a) = self.peers.next_answer(now, conn, &self.cfg)? {
            self.on_answer(now, a);
        }
        Ok(())
    }

    /// The driver saw the connection close or fail (including a failed
    /// connect). Outstanding peer requests on it fall back to local loads.
    pub fn handle_closed(&mut self, now: Instant, conn: ConnId) {
        self.close(now, conn, None);
    }

    /// Forgets a connection; `reason` is set when the node itself closes it.
    pub(super) fn close(&mut self, now: Instant, conn: ConnId, reason: Option<CloseReason>) {
        let timed_out = reason == Some(CloseReason::Timeout);
        let closed = match self.conns.remove(&conn) {
            Some(c) => {
                let (from, peer) = c.from();
                self.admission.release(from, peer);
                None
            }
            None => match self.peers.close(now, conn, timed_out, &self.cfg) {
                Some(closed) => Some(closed),
                None => return,
            },
        };
        self.timers.forget_conn(conn);
        self.trim_timers();
        if let Some(reason) = reason {
            self.out.push_back(Output::Close { conn, reason });
        }
        if let Some(c) = closed {
            self.arm_backoff(&c.peer);
            for s in c.failed {
                self.peer_failed(now, &c.peer, s, c.why);
            }
            self.with_peers(|p, io| p.pump(now, &c.peer, io));
        }
    }
}
