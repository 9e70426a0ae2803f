//! Requests to peers: pools, pipelining, fallback and backoff.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;

use crate::frame::FrameDecoder;
use crate::wire::{encode_frame, Request, Response, CODE_ERROR, CODE_OK, OP_GET};

use super::write::op_fields;
use super::{
    Ask, CloseReason, Conn, ConnId, Error, GetId, Health, Node, Outbound, Output, Sent, Timer,
    WriteReport,
};

/// Why a request to a peer got no answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Failure {
    /// The connection was refused or dropped.
    Closed,
    /// No answer (or no connection) in time.
    Timeout,
    /// The peer is backed off after failing.
    Down,
    /// The peer did not announce that it understands writes.
    NoWrites,
    /// The peer answered with an error of its own (it is shutting down).
    Refused,
    /// This node is shutting down.
    Shutdown,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Failure::Closed => "closed or refused the connection",
            Failure::Timeout => "did not answer in time",
            Failure::Down => "is backed off after failing",
            Failure::NoWrites => "does not understand writes",
            Failure::Refused => "refused the request",
            Failure::Shutdown => "was not asked: this node is shutting down",
        })
    }
}

impl Failure {
    /// The error a caller of `get_via` or `write_via` sees.
    fn error(self, peer: &str) -> Error {
        let msg = format!("{peer} {self}").into();
        match self {
            Failure::NoWrites => Error::Write(msg),
            Failure::Shutdown => Error::Shutdown,
            _ => Error::Unreachable(msg),
        }
    }
}

/// Bytes a request frame needs beyond its group and key: the header, tags,
/// lengths and flags.
const REQUEST_OVERHEAD: usize = 32;

impl Node {
    /// Asks the owner `peer` for `key`, or loads it here at once when the
    /// peer is down or being probed.
    pub(super) fn ask_peer(
        &mut self,
        now: Instant,
        peer: Arc<str>,
        group: Arc<str>,
        key: Arc<str>,
    ) {
        // A request the owner would refuse as too large is never sent.
        let fits = group.len() + key.len() + REQUEST_OVERHEAD <= self.cfg.max_frame;
        let pool = self.pools.entry(peer.clone()).or_default();
        let usable = fits
            && match pool.health {
                Health::Up => true,
                Health::Down { until } if until > now => false,
                Health::Down { .. } => {
                    // Backed off long enough: probe it, but do not make a real
                    // get wait on a peer that may still be dead.
                    pool.health = Health::Probing;
                    self.send_probe(now, &peer);
                    false
                }
                Health::Probing => false,
            };
        if !usable {
            if let Some(g) = self.groups.get_mut(&group) {
                g.stats.peer_errors += 1;
            }
            self.load_locally(now, group, key);
            return;
        }
        let token = self.id();
        let Some(g) = self.groups.get_mut(&group) else {
            return;
        };
        let max_deadline = now + g.load_timeout + self.cfg.request_timeout;
        g.caches.with_flight(&key, |f| f.state.remote = Some(token));
        let s = self.sent(now, group, key, Ask::Flight { token }, max_deadline);
        self.enqueue(now, &peer, s);
    }

    /// A request record asked now, due in one request timeout; keepalives
    /// may push that back to `max_deadline`.
    pub(super) fn sent(
        &self,
        now: Instant,
        group: Arc<str>,
        key: Arc<str>,
        ask: Ask,
        max_deadline: Instant,
    ) -> Sent {
        let deadline = now + self.cfg.request_timeout;
        Sent {
            group,
            key,
            ask,
            asked_at: now,
            deadline,
            max_deadline: max_deadline.max(deadline),
        }
    }

    /// Queues a request for `peer` and sends it as soon as a connection
    /// can take it.
    pub(super) fn enqueue(&mut self, now: Instant, peer: &Arc<str>, s: Sent) {
        let deadline = s.deadline;
        let pool = self.pools.entry(peer.clone()).or_default();
        pool.queue(s.is_quick()).push_back(s);
        self.arm(deadline, Timer::Peer(peer.clone()));
        self.pump(now, peer);
    }

    /// Sends an empty request to `peer` ahead of everything queued: any
    /// answer says it is alive and whether it understands writes.
    pub(super) fn send_probe(&mut self, now: Instant, peer: &Arc<str>) {
        let s = self.sent(now, "".into(), "".into(), Ask::Probe, now);
        let deadline = s.deadline;
        let pool = self.pools.entry(peer.clone()).or_default();
        pool.hello = true;
        pool.quick.push_front(s);
        self.arm(deadline, Timer::Peer(peer.clone()));
        self.pump(now, peer);
    }

    /// Gets `key` of `group` from the node at `peer` on a caller's behalf,
    /// as a client that is not a member would: that node routes the get.
    /// The outcome comes as [`Output::Done`]; a node that cannot be
    /// reached is [`Error::Unreachable`]. Used by the non-member client.
    pub fn get_via(&mut self, now: Instant, peer: &str, group: &str, key: &str) -> GetId {
        let get = GetId(self.id());
        let peer: Arc<str> = peer.into();
        let s = self.sent(
            now,
            group.into(),
            key.into(),
            Ask::Get(get),
            now + self.cfg.max_wait,
        );
        if let Err(why) = self.reachable(now, &peer) {
            self.out.push_back(Output::Done {
                get,
                result: Err(why.error(&peer)),
            });
        } else {
            self.enqueue(now, &peer, s);
        }
        get
    }

    /// Whether a request for a caller may go to `peer` now: not while it is
    /// backed off. Once the back-off has passed, the request itself is the
    /// probe.
    pub(super) fn reachable(&mut self, now: Instant, peer: &Arc<str>) -> Result<(), Failure> {
        let pool = self.pools.entry(peer.clone()).or_default();
        match pool.health {
            Health::Down { until } if until > now => Err(Failure::Down),
            Health::Probing => Err(Failure::Down),
            Health::Down { .. } => {
                pool.health = Health::Up;
                Ok(())
            }
            Health::Up => Ok(()),
        }
    }

    /// Moves queued requests of `peer` onto connections that can take them,
    /// opening connections as needed.
    pub(super) fn pump(&mut self, now: Instant, peer: &Arc<str>) {
        let Some(pool) = self.pools.get_mut(peer) else {
            return;
        };
        let max_pipe = self.cfg.max_pipeline;
        let mut connecting = 0;
        let (mut quick_conn, mut others) = (false, 0);
        let mut sends: Vec<(ConnId, BytesMut)> = Vec::new();
        for &c in &pool.conns {
            let Some(Conn::Out(o)) = self.conns.get_mut(&c) else {
                continue;
            };
            quick_conn |= o.quick;
            others += usize::from(!o.quick);
            if o.connect_deadline.is_some() {
                connecting += usize::from(!o.quick);
                continue;
            }
            let room = if o.pipelining {
                max_pipe.saturating_sub(o.inflight.len())
            } else {
                usize::from(o.inflight.is_empty())
            };
            // The fields, not `Pool::queue`: `pool.conns` is borrowed.
            let queue = if o.quick {
                &mut pool.quick
            } else {
                &mut pool.backlog
            };
            let mut data = BytesMut::new();
            for _ in 0..room {
                let Some(s) = queue.pop_front() else {
                    break;
                };
                encode_frame(&request_of(&s), &mut data);
                o.inflight.push_back(s);
            }
            if !data.is_empty() {
                o.last_active = now;
                sends.push((c, data));
            }
        }
        let want = pool.backlog.len().saturating_sub(connecting);
        let open = want.min(self.cfg.max_conns_per_peer.saturating_sub(others));
        let mut new_conns = Vec::new();
        // The quick connection comes on top of the others' budget.
        let quick = (!quick_conn && !pool.quick.is_empty()).then_some(true);
        for quick in quick.into_iter().chain(std::iter::repeat_n(false, open)) {
            // Not `self.id()`: the pool is borrowed.
            let conn = ConnId(self.ids.fetch_add(1, Ordering::Relaxed) + 1);
            pool.conns.push(conn);
            new_conns.push((conn, quick));
        }
        for (conn, data) in sends {
            self.arm_conn(conn);
            self.out.push_back(Output::Send {
                conn,
                data: data.freeze(),
            });
        }
        for (conn, quick) in new_conns {
            let deadline = now + self.cfg.connect_timeout;
            self.conns.insert(
                conn,
                Conn::Out(Outbound {
                    peer: peer.clone(),
                    connect_deadline: Some(deadline),
                    buf: BytesMut::new(),
                    dec: FrameDecoder::new(self.cfg.max_frame),
                    inflight: VecDeque::new(),
                    pipelining: false,
                    last_active: now,
                    quick,
                }),
            );
            self.arm_conn(conn);
            self.out.push_back(Output::Connect {
                conn,
                addr: peer.clone(),
            });
        }
    }

    /// An [`Output::Connect`] succeeded.
    pub fn handle_connected(&mut self, now: Instant, conn: ConnId) {
        let Some(Conn::Out(o)) = self.conns.get_mut(&conn) else {
            return;
        };
        o.connect_deadline = None;
        o.last_active = now;
        let peer = o.peer.clone();
        self.arm_conn(conn);
        self.pump(now, &peer);
    }

    pub(super) fn on_response(
        &mut self,
        now: Instant,
        conn: ConnId,
        payload: &[u8],
    ) -> Result<(), CloseReason> {
        let resp =
            Response::decode_payload(payload).map_err(|e| CloseReason::Protocol(e.to_string()))?;
        let Some(Conn::Out(o)) = self.conns.get_mut(&conn) else {
            return Ok(());
        };
        if resp.keepalive {
            // The owner is alive and still loading: wait on, up to its load
            // timeout.
            for s in &mut o.inflight {
                s.deadline = s
                    .deadline
                    .max((now + self.cfg.request_timeout).min(s.max_deadline));
            }
            o.last_active = now;
            return Ok(());
        }
        let sent = o
            .inflight
            .pop_front()
            .ok_or_else(|| CloseReason::Protocol("response to no request".into()))?;
        o.pipelining = resp.pipelining;
        o.last_active = now;
        let peer = o.peer.clone();
        // Answers to probes and writes say whether the peer understands
        // writes; answers to gets do not carry it, to stay as small as the
        // original's.
        if matches!(sent.ask, Ask::Probe | Ask::Write { .. }) {
            self.learned(now, &peer, resp.writes);
        }
        let token = match &sent.ask {
            Ask::Flight { token } => *token,
            &Ask::Handoff { token } => {
                self.handoff_answered(now, sent, token, resp);
                return Ok(());
            }
            Ask::Probe => {
                // Any answer at all (a Go node says "no group") proves it
                // alive.
                if let Some(p) = self.pools.get_mut(&peer) {
                    p.health = Health::Up;
                    p.hello = false;
                }
                return Ok(());
            }
            &Ask::Get(get) => {
                let result = Error::from_response(&sent.group, resp);
                self.out.push_back(Output::Done { get, result });
                return Ok(());
            }
            &Ask::Write {
                id, relay: true, ..
            } => {
                let result = Error::from_answer(&sent.group, resp, true).map(|r| WriteReport {
                    not_reached: r.not_reached.into_iter().map(Arc::from).collect(),
                });
                self.out.push_back(Output::Written { write: id, result });
                return Ok(());
            }
            &Ask::Write { id, .. } => {
                let result = match resp.code {
                    CODE_OK => Ok(()),
                    _ => Err(String::from_utf8_lossy(&resp.value).into()),
                };
                self.write_answered(now, id, &peer, result);
                return Ok(());
            }
        };
        let Some(g) = self.groups.get_mut(&sent.group) else {
            return Ok(());
        };
        let current = (g.caches.flight(&sent.key)).is_some_and(|f| f.remote == Some(token));
        if resp.code == CODE_OK {
            g.stats.peer_loads += 1;
            // Count the remaining TTL from when we asked, so a copy never
            // outlives the owner's; and never keep it past the hot TTL, so a
            // write that could not reach this node is undone in bounded time.
            let remote =
                (resp.ttl_ms > 0).then(|| sent.asked_at + Duration::from_millis(resp.ttl_ms));
            let local = g.caches.ttl.map(|t| now + t);
            let hot = Some(now + g.hot_ttl);
            let expires = [remote, local, hot].into_iter().flatten().min();
            // An answer the flight no longer waits on may predate a write:
            // never cached.
            if current {
                g.caches.insert_hot(&sent.key, &resp.value, expires, now);
                self.land(now, &sent.group, &sent.key, Ok((resp.value, expires)));
            }
        } else if resp.code == CODE_ERROR && (resp.not_found || resp.load_failed) {
            // The owner's loader answered: that answer is final.
            if current {
                let e = Error::from_response(&sent.group, resp).expect_err("code 500");
                self.land(now, &sent.group, &sent.key, Err(e));
            }
        } else {
            self.peer_failed(now, &peer, sent, Failure::Refused);
        }
        Ok(())
    }

    /// The peer answered: remember whether it understands writes, and send
    /// or refuse the writes that waited to know.
    fn learned(&mut self, now: Instant, peer: &Arc<str>, writes: bool) {
        let Some(pool) = self.pools.get_mut(peer) else {
            return;
        };
        pool.writes = Some(writes);
        if pool.held.is_empty() {
            return;
        }
        let held = std::mem::take(&mut pool.held);
        if writes {
            for s in held {
                self.enqueue(now, peer, s);
            }
        } else {
            for s in held {
                self.peer_failed(now, peer, s, Failure::NoWrites);
            }
        }
    }

    /// A peer request failed. A flight's key is loaded here instead; a
    /// caller's request reports the failure; a failed probe backs the peer
    /// off again, and the writes that waited on it fail too.
    pub(super) fn peer_failed(&mut self, now: Instant, peer: &Arc<str>, sent: Sent, why: Failure) {
        let token = match sent.ask {
            Ask::Flight { token } => token,
            Ask::Handoff { token } => {
                self.handoff_failed(now, &sent.group, &sent.key, token);
                return;
            }
            Ask::Probe => {
                let Some(p) = self.pools.get_mut(peer) else {
                    return;
                };
                p.back_off(now + self.cfg.peer_backoff);
                p.hello = false;
                for s in std::mem::take(&mut p.held) {
                    self.peer_failed(now, peer, s, why);
                }
                return;
            }
            Ask::Get(get) => {
                let result = Err(why.error(peer));
                self.out.push_back(Output::Done { get, result });
                return;
            }
            Ask::Write {
                id, relay: true, ..
            } => {
                let result = Err(why.error(peer));
                self.out.push_back(Output::Written { write: id, result });
                return;
            }
            Ask::Write { id, .. } => {
                self.write_answered(now, id, peer, Err(why.to_string().into()));
                return;
            }
        };
        let Some(g) = self.groups.get_mut(&sent.group) else {
            return;
        };
        g.stats.peer_errors += 1;
        let ours = g.caches.with_flight(&sent.key, |f| {
            let ours = f.state.remote == Some(token);
            if ours {
                f.state.remote = None;
            }
            ours.then_some(f.state.local.is_none())
        });
        if ours == Some(Some(true)) {
            self.load_locally(now, sent.group, sent.key);
        }
    }
}

/// The request a record stands for.
fn request_of(s: &Sent) -> Request {
    let (group, key) = (s.group.to_string(), s.key.to_string());
    let get = |from_peer| Request {
        group: group.clone(),
        key: key.clone(),
        from_peer,
        ext: true,
        progress: true,
        op: OP_GET,
        ..Default::default()
    };
    match &s.ask {
        Ask::Flight { .. } => get(true),
        Ask::Handoff { .. } => super::handoff::peek_request(group, key),
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
                // A relayed write is carried out by that node across the
                // cluster, which can take a while: keepalives tell it lives.
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
