//! Requests to peers: pools, pipelining, fallback and backoff.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;

use crate::frame::FrameDecoder;
use crate::wire::{encode_frame, Request, Response, CODE_ERROR, CODE_OK};

use super::{CloseReason, Conn, ConnId, Error, Health, Node, Outbound, Output, Sent, Timer};

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
                    let deadline = now + self.cfg.request_timeout;
                    pool.backlog.push_front(Sent {
                        group: "".into(),
                        key: "".into(),
                        token: 0,
                        asked_at: now,
                        deadline,
                        max_deadline: deadline,
                        probe: true,
                    });
                    self.arm(deadline, Timer::Peer(peer.clone()));
                    self.pump(now, &peer);
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
        if let Some(f) = g.flights.get_mut(&key) {
            f.state.remote = Some(token);
        }
        let deadline = now + self.cfg.request_timeout;
        let pool = self.pools.get_mut(&peer).expect("pool");
        pool.backlog.push_back(Sent {
            group,
            key,
            token,
            asked_at: now,
            deadline,
            max_deadline,
            probe: false,
        });
        self.arm(deadline, Timer::Peer(peer.clone()));
        self.pump(now, &peer);
    }

    /// Moves queued requests of `peer` onto connections that can take them,
    /// opening connections as needed.
    pub(super) fn pump(&mut self, now: Instant, peer: &Arc<str>) {
        let Some(pool) = self.pools.get_mut(peer) else {
            return;
        };
        let max_pipe = self.cfg.max_pipeline;
        let mut connecting = 0;
        let mut sends: Vec<(ConnId, BytesMut)> = Vec::new();
        for &c in &pool.conns {
            let Some(Conn::Out(o)) = self.conns.get_mut(&c) else {
                continue;
            };
            if o.connect_deadline.is_some() {
                connecting += 1;
                continue;
            }
            let room = if o.pipelining {
                max_pipe.saturating_sub(o.inflight.len())
            } else {
                usize::from(o.inflight.is_empty())
            };
            let mut data = BytesMut::new();
            for _ in 0..room {
                let Some(s) = pool.backlog.pop_front() else {
                    break;
                };
                let req = Request {
                    group: s.group.to_string(),
                    key: s.key.to_string(),
                    from_peer: true,
                    ext: true,
                    progress: !s.probe,
                };
                encode_frame(&req, &mut data);
                o.inflight.push_back(s);
            }
            if !data.is_empty() {
                o.last_active = now;
                sends.push((c, data));
            }
        }
        let want = pool.backlog.len().saturating_sub(connecting);
        let open = want.min(self.cfg.max_conns_per_peer.saturating_sub(pool.conns.len()));
        let mut new_conns = Vec::new();
        for _ in 0..open {
            self.next_id += 1;
            let conn = ConnId(self.next_id);
            pool.conns.push(conn);
            new_conns.push(conn);
        }
        for (conn, data) in sends {
            self.arm_conn(conn);
            self.out.push_back(Output::Send {
                conn,
                data: data.freeze(),
            });
        }
        for conn in new_conns {
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
        if sent.probe {
            // Any answer at all (a Go node says "no group") proves it alive.
            if let Some(p) = self.pools.get_mut(&peer) {
                p.health = Health::Up;
            }
            return Ok(());
        }
        let Some(g) = self.groups.get_mut(&sent.group) else {
            return Ok(());
        };
        let current = g
            .flights
            .get(&sent.key)
            .is_some_and(|f| f.state.remote == Some(sent.token));
        if resp.code == CODE_OK {
            g.stats.peer_loads += 1;
            // Count the remaining TTL from when we asked, so a copy never
            // outlives the owner's.
            let remote =
                (resp.ttl_ms > 0).then(|| sent.asked_at + Duration::from_millis(resp.ttl_ms));
            let local = g.ttl.map(|t| now + t);
            let expires = match (remote, local) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            g.hot.insert(&sent.key, resp.value.clone(), expires, now);
            if current {
                self.land(now, &sent.group, &sent.key, Ok((resp.value, expires)));
            }
        } else if resp.code == CODE_ERROR && (resp.not_found || resp.load_failed) {
            // The owner's loader answered: that answer is final.
            if current {
                let e = Error::from_response(&sent.group, resp).expect_err("code 500");
                self.land(now, &sent.group, &sent.key, Err(e));
            }
        } else {
            self.peer_failed(now, &peer, sent);
        }
        Ok(())
    }

    /// A peer request failed: count it and load the key here instead. A
    /// failed probe backs the peer off again.
    pub(super) fn peer_failed(&mut self, now: Instant, peer: &str, sent: Sent) {
        if sent.probe {
            if let Some(p) = self.pools.get_mut(peer) {
                p.back_off(now + self.cfg.peer_backoff);
            }
            return;
        }
        let Some(g) = self.groups.get_mut(&sent.group) else {
            return;
        };
        g.stats.peer_errors += 1;
        let Some(f) = g.flights.get_mut(&sent.key) else {
            return;
        };
        if f.state.remote != Some(sent.token) {
            return;
        }
        f.state.remote = None;
        if f.state.local.is_none() {
            self.load_locally(now, sent.group, sent.key);
        }
    }
}
