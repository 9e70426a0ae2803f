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
    Conn, ConnId, Error, Inbound, InboundOutput, Node, Output, Refused, Waiter, WriteId, WriteOp,
    WriteReport,
};

impl Node {
    /// A peer or client connected to this node's port from `addr`: the
    /// node keeps the connection's state, and the driver passes it the
    /// connection's bytes ([`Node::handle_data`], [`Node::handle_written`]).
    ///
    /// Addresses of the peer list have their own budget of connections;
    /// every other address shares the clients' budget, of which one address
    /// may take only its own share.
    pub fn accept(&mut self, now: Instant, addr: IpAddr) -> Result<ConnId, Refused> {
        let inbound = self.admit(now, addr)?;
        let conn = inbound.id();
        self.conns.insert(conn, Conn::In(Box::new(inbound)));
        self.arm_conn(conn);
        Ok(conn)
    }

    /// As [`Node::accept`], but the driver keeps the connection's state:
    /// the [`Inbound`] returned, which answers hits from the caches by
    /// itself and hands every other request to [`Node::serve`]. The node
    /// holds only the connection's place in the budgets, until
    /// [`Node::handle_closed`]. Its deadlines and its draining at shutdown
    /// ([`Inbound::handle_shutdown`]) are the driver's to run.
    ///
    /// ```
    /// use std::time::Instant;
    /// use groupcache_core::node::{Config, GroupConfig, InboundOutput, Node, Output};
    /// use groupcache_core::wire::{encode_frame, Request};
    ///
    /// # #[allow(clippy::disallowed_methods)]
    /// let now = Instant::now();
    /// let mut node = Node::new(Config::new("127.0.0.1:8001"));
    /// node.add_group(GroupConfig::new("score", 1 << 20)).unwrap();
    /// let mut conn = node.accept_inbound(now, "192.0.2.7".parse().unwrap()).unwrap();
    /// let mut frame = bytes::BytesMut::new();
    /// let req = Request { group: "score".into(), key: "Tom".into(), ..Default::default() };
    /// encode_frame(&req, &mut frame);
    /// conn.handle_data(now, &frame);
    /// // Not cached: the connection hands the request to the node.
    /// let Some(InboundOutput::Request { seq, request }) = conn.poll_output() else {
    ///     unreachable!()
    /// };
    /// node.serve(now, conn.id(), seq, request);
    /// // The node loads it; its answer comes back for the connection.
    /// let Some(Output::Load { id, .. }) = node.poll_output() else { unreachable!() };
    /// node.handle_load(now, id, Ok(bytes::Bytes::from_static(b"630").into()));
    /// let Some(Output::Answer { seq, response, .. }) = node.poll_output() else {
    ///     unreachable!()
    /// };
    /// conn.handle_answer(now, seq, response);
    /// assert!(matches!(conn.poll_output(), Some(InboundOutput::Send(_))));
    /// // Now cached: the same request is answered without the node.
    /// conn.handle_data(now, &frame);
    /// assert!(matches!(conn.poll_output(), Some(InboundOutput::Send(_))));
    /// assert_eq!(node.poll_output(), None);
    /// ```
    pub fn accept_inbound(&mut self, now: Instant, addr: IpAddr) -> Result<Inbound, Refused> {
        let inbound = self.admit(now, addr)?;
        let (from, peer) = (inbound.from, inbound.peer);
        self.conns
            .insert(inbound.id(), Conn::Detached { from, peer });
        Ok(inbound)
    }

    /// Takes a place in the budgets for a connection from `addr`.
    fn admit(&mut self, now: Instant, addr: IpAddr) -> Result<Inbound, Refused> {
        if self.shutting_down {
            return Err(Refused::ShuttingDown);
        }
        let from = canonical(addr);
        let peer = self.admission.admit(&self.cfg, from)?;
        let conn = ConnId(self.id());
        let served = self.served.clone();
        Ok(Inbound::new(now, conn, &self.cfg, served, from, peer))
    }

    /// Serves request `req` of inbound connection `conn`, which its
    /// [`Inbound`] handed out as `seq`. The answer comes as
    /// [`Output::Answer`] (for a connection the node keeps, as bytes to
    /// send). A request for a connection already closed is dropped.
    pub fn serve(&mut self, now: Instant, conn: ConnId, seq: u64, req: Request) {
        if !self.conns.contains_key(&conn) {
            return;
        }
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
            self.answer(now, conn, seq, resp);
            return;
        };
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
            let resp = ok_response(hit.value, hit.expires, now, req.ext);
            self.answer(now, conn, seq, resp);
            return;
        }
        let w = Waiter::Serve {
            conn,
            seq,
            ext: req.ext,
        };
        if let Some(hit) = self.join(now, &req.group, &req.key, w, req.from_peer) {
            let resp = ok_response(hit.value, hit.expires, now, req.ext);
            self.answer(now, conn, seq, resp);
        }
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
                    self.answer(now, conn, seq, write_response(&Err(e), ext));
                }
                return;
            }
            Err(e) => {
                self.answer(now, conn, seq, write_response(&Err(e), ext));
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
        self.answer(now, conn, seq, write_response(&result, ext));
    }

    /// Answers request `seq` of inbound connection `conn`: to the driver
    /// if it keeps the connection, else to the connection's own state
    /// machine, whose outputs are then carried out (unless that is already
    /// under way, further up the stack).
    pub(super) fn answer(&mut self, now: Instant, conn: ConnId, seq: u64, response: Response) {
        match self.conns.get_mut(&conn) {
            Some(Conn::In(i)) => {
                i.handle_answer(now, seq, response);
                if self.pumping != Some(conn) {
                    self.pump_inbound(now, conn);
                }
            }
            Some(Conn::Detached { .. }) => {
                let a = Output::Answer {
                    conn,
                    seq,
                    response,
                };
                self.out.push_back(a);
            }
            _ => {}
        }
    }

    /// Carries out what an inbound connection this node keeps asks for:
    /// serves its requests, sends its bytes, closes it.
    pub(super) fn pump_inbound(&mut self, now: Instant, conn: ConnId) {
        let outer = self.pumping.replace(conn);
        while let Some(Conn::In(i)) = self.conns.get_mut(&conn) {
            let Some(o) = i.poll_output() else {
                self.arm_conn(conn);
                break;
            };
            match o {
                InboundOutput::Request { seq, request } => self.serve(now, conn, seq, request),
                InboundOutput::Send(data) => self.out.push_back(Output::Send { conn, data }),
                InboundOutput::Close(reason) => {
                    self.close(now, conn, Some(reason));
                    break;
                }
            }
        }
        self.pumping = outer;
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
