//! Serving requests from peers and clients, and encoding the answers.

use std::net::IpAddr;
use std::time::Instant;

use bytes::Bytes;

use crate::wire::{
    Request, Response, CODE_ERROR, CODE_NO_GROUP, CODE_OK, NO_GROUP_MESSAGE, OP_GET, OP_PEEK,
};

use super::admission::canonical;
use super::write::{op_of, write_response};
use super::writes::WriteWaiter;
use super::{
    CloseReason, Conn, ConnId, Error, Inbound, Node, Output, Refused, Waiter, WriteId, WriteOp,
    WriteReport,
};

impl Node {
    /// A peer or client connected to this node's port from `addr`.
    ///
    /// Addresses of the peer list have their own budget of connections;
    /// every other address shares the clients' budget, of which one address
    /// may take only its own share.
    pub fn accept(&mut self, now: Instant, addr: IpAddr) -> Result<ConnId, Refused> {
        if self.shutting_down {
            return Err(Refused::ShuttingDown);
        }
        let from = canonical(addr);
        let peer = self.admission.admit(&self.cfg, from)?;
        let conn = ConnId(self.id());
        let inbound = Inbound::new(now, &self.cfg, from, peer);
        self.conns.insert(conn, Conn::In(inbound));
        self.arm_conn(conn);
        Ok(conn)
    }

    /// Returns an inbound connection's place in the budgets.
    pub(super) fn forget_inbound(&mut self, i: &Inbound) {
        self.admission.release(i.from, i.peer);
    }

    /// Serves request `req`, whose answer goes to slot `seq` of `conn`.
    pub(super) fn on_request(&mut self, now: Instant, conn: ConnId, seq: u64, req: Request) {
        let Some(g) = self.groups.get_mut(req.group.as_str()) else {
            // Answered, but not activity: a client that only sends empty or
            // unknown requests is still closed by the idle timeout.
            let resp = Response {
                value: Bytes::from_static(NO_GROUP_MESSAGE.as_bytes()),
                code: CODE_NO_GROUP,
                pipelining: req.ext,
                writes: req.ext,
                ..Default::default()
            };
            self.answer(now, conn, seq, resp, false);
            return;
        };
        if let Some(Conn::In(i)) = self.conns.get_mut(&conn) {
            i.touch(now);
        }
        // Checked here, not in `op_of`: a get pays one comparison.
        if req.op != OP_GET {
            if req.op == OP_PEEK {
                self.serve_peek(now, conn, seq, &req);
            } else {
                self.serve_write(now, conn, seq, &req, op_of(&req));
            }
            return;
        }
        g.stats.server_requests += 1;
        if let Some(hit) = g.caches.hit(&req.key, now) {
            self.answer(
                now,
                conn,
                seq,
                ok_response(hit.value, hit.expires, now, req.ext),
                false,
            );
            return;
        }
        let w = Waiter::Serve {
            conn,
            seq,
            ext: req.ext,
        };
        self.join(now, &req.group, &req.key, w, req.from_peer);
    }

    /// A write request: from a peer it applies here alone; from a client
    /// this node carries it out across the cluster and answers when done.
    fn serve_write(
        &mut self,
        now: Instant,
        conn: ConnId,
        seq: u64,
        req: &Request,
        op: Result<WriteOp, Error>,
    ) {
        let (group, ext) = (req.group.as_str(), req.ext);
        let op = match op {
            Ok(op) if req.from_peer => op,
            Ok(op) => {
                let id = WriteId(self.id());
                let waiter = WriteWaiter::Serve { conn, seq, ext };
                if let Err(e) = self.start_write(now, id, group, op, waiter) {
                    self.answer(now, conn, seq, write_response(&Err(e), ext), false);
                }
                return;
            }
            Err(e) => {
                self.answer(now, conn, seq, write_response(&Err(e), ext), false);
                return;
            }
        };
        if let Some(g) = self.groups.get_mut(group) {
            g.stats.writes_applied += 1;
        }
        let result = self.check_size(group, &op).map(|()| {
            self.apply_write(now, group, &op);
            WriteReport::default()
        });
        self.answer(now, conn, seq, write_response(&result, ext), false);
    }

    /// Fills answer `seq` of an inbound connection and queues every answer
    /// that is now ready, in order; `flush` sends them at once (requests
    /// read in one batch are answered with one send instead). Large values
    /// are sent as the cache's own buffer, never copied.
    pub(super) fn answer(
        &mut self,
        now: Instant,
        conn: ConnId,
        seq: u64,
        resp: Response,
        flush: bool,
    ) {
        let Some(Conn::In(i)) = self.conns.get_mut(&conn) else {
            return;
        };
        let out = &mut self.out;
        i.answer(now, seq, resp, |data| {
            out.push_back(Output::Send { conn, data })
        });
        if flush {
            self.flush_answers(now, conn);
        }
    }

    /// Sends the answers queued on an inbound connection; closes it when
    /// shutting down and nothing more is owed.
    pub(super) fn flush_answers(&mut self, now: Instant, conn: ConnId) {
        let Some(Conn::In(i)) = self.conns.get_mut(&conn) else {
            return;
        };
        let Some(data) = i.take_pending(now) else {
            return;
        };
        let done = self.shutting_down && i.is_settled();
        self.out.push_back(Output::Send { conn, data });
        if done {
            self.close(now, conn, Some(CloseReason::Shutdown));
        } else {
            self.arm_conn(conn);
        }
    }

    /// Tells a client whose answers are pending that this node is alive.
    pub(super) fn send_keepalive(&mut self, now: Instant, conn: ConnId) {
        let Some(Conn::In(i)) = self.conns.get_mut(&conn) else {
            return;
        };
        let frame = i.keepalive(now);
        self.out.push_back(Output::Send { conn, data: frame });
        self.arm_conn(conn);
    }
}

#[inline]
pub(super) fn ok_response(
    value: Bytes,
    expires: Option<Instant>,
    now: Instant,
    ext: bool,
) -> Response {
    let ttl_ms = match (ext, expires) {
        (true, Some(t)) => {
            let left = t.saturating_duration_since(now);
            // Round up so a fresh value never reads as "no expiry" (0).
            (left.as_nanos().div_ceil(1_000_000) as u64).max(1)
        }
        _ => 0,
    };
    Response {
        value,
        code: CODE_OK,
        ttl_ms,
        not_found: false,
        pipelining: ext,
        load_failed: false,
        keepalive: false,
        writes: false,
        not_reached: Vec::new(),
    }
}

pub(super) fn error_response(e: &Error, ext: bool) -> Response {
    let msg = match e {
        Error::NotFound(m)
        | Error::Load(m)
        | Error::NoGroup(m)
        | Error::Unreachable(m)
        | Error::Write(m)
        | Error::TooLarge(m) => m.to_string(),
        Error::Shutdown => e.to_string(),
    };
    Response {
        value: Bytes::from(msg),
        code: CODE_ERROR,
        ttl_ms: 0,
        not_found: ext && matches!(e, Error::NotFound(_)),
        pipelining: ext,
        load_failed: ext && matches!(e, Error::Load(_)),
        keepalive: false,
        writes: false,
        not_reached: Vec::new(),
    }
}
