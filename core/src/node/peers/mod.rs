//! This node's side of its peers: a pool of connections for each peer, the
//! requests queued and in flight on them, and what this node believes of
//! each peer (alive, backed off, whether it understands writes).
//!
//! [`Peers`] knows how to carry a request to a peer and bring its answer
//! back, not what the answer means: that is the node's, which hands every
//! answer ([`Answer`]) and every request that failed ([`Failure`]) on to
//! the flight, write or caller that asked (`node/peer.rs`).

mod failure;
mod input;
mod outbound;
mod pool;
mod sent;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use bytes::BytesMut;
use hashbrown::HashMap;

use crate::wire::encode_frame;

use super::timer::TimerTable;
use super::{Config, ConnId, Output, Timer};
pub(super) use failure::Failure;
pub(super) use input::Answer;
use outbound::Outbound;
use pool::{Health, Pool};
pub(super) use sent::{Ask, Sent};

/// What a method of [`Peers`] may touch beyond its own state: the node's
/// settings, its outputs and its timers. The node trims its timers after
/// each call, as it knows what else holds records.
pub(super) struct Io<'a> {
    pub(super) cfg: &'a Config,
    pub(super) out: &'a mut VecDeque<Output>,
    pub(super) timers: &'a mut TimerTable,
}

/// Every peer's pool and every outbound connection.
pub(super) struct Peers {
    pools: HashMap<Arc<str>, Pool>,
    conns: HashMap<ConnId, Outbound>,
    /// The node's ids, for new connections.
    ids: Arc<AtomicU64>,
}

impl Peers {
    pub(super) fn new(ids: Arc<AtomicU64>) -> Self {
        Self {
            pools: HashMap::new(),
            conns: HashMap::new(),
            ids,
        }
    }

    /// Pools and connections: what the timer records are proportional to.
    pub(super) fn len(&self) -> usize {
        self.pools.len() + self.conns.len()
    }

    /// Open outbound connections.
    pub(super) fn connections(&self) -> usize {
        self.conns.len()
    }

    /// Whether `conn` is an outbound connection.
    pub(super) fn has(&self, conn: ConnId) -> bool {
        self.conns.contains_key(&conn)
    }

    /// Nothing waits on a peer: no write held back, no request in flight
    /// but probes (which nobody waits on).
    pub(super) fn is_idle(&self) -> bool {
        self.pools.values().all(|p| p.held.is_empty())
            && (self.conns.values()).all(|o| o.inflight.iter().all(|s| matches!(s.ask, Ask::Probe)))
    }

    /// Outbound connections, in the order they were opened.
    pub(super) fn conn_ids(&self) -> Vec<ConnId> {
        let mut ids: Vec<ConnId> = self.conns.keys().copied().collect();
        ids.sort();
        ids
    }

    /// Whether `conn` is an outbound connection with nothing in flight.
    pub(super) fn is_quiet(&self, conn: ConnId) -> bool {
        self.conns.get(&conn).is_some_and(|o| o.inflight.is_empty())
    }

    /// When `conn` is due: its connect, its oldest request, or idleness.
    pub(super) fn deadline(&self, conn: ConnId, cfg: &Config) -> Option<Instant> {
        self.conns.get(&conn).and_then(|o| o.deadline(cfg))
    }

    /// Every connection's and every queue's deadline, for the timer table.
    pub(super) fn deadlines<'a>(
        &'a self,
        cfg: &'a Config,
    ) -> impl Iterator<Item = (Instant, Timer)> + 'a {
        let conns =
            (self.conns.iter()).filter_map(|(&id, o)| Some((o.deadline(cfg)?, Timer::Conn(id))));
        let pools = (self.pools.iter())
            .filter_map(|(peer, p)| Some((p.next_deadline()?, Timer::Peer(peer.clone()))));
        conns.chain(pools)
    }

    /// Forgets idle pools of peers not in `ring`, so churn cannot grow them.
    pub(super) fn forget_left(&mut self, ring: &[Arc<str>]) {
        (self.pools).retain(|p, pool| !pool.is_unused() || ring.iter().any(|r| r == p));
    }

    /// Whether a peek may go to `peer`: it is not known to be down, nor
    /// known not to understand peeks.
    pub(super) fn may_peek(&self, peer: &Arc<str>) -> bool {
        match self.pools.get(peer) {
            None => true,
            Some(p) => p.writes != Some(false) && p.health == Health::Up,
        }
    }

    /// Whether a flight may wait on `peer` now. A peer whose back-off has
    /// passed is probed instead, and the flight does not wait on a peer
    /// that may still be dead.
    pub(super) fn try_use(&mut self, now: Instant, peer: &Arc<str>, io: &mut Io) -> bool {
        let pool = self.pools.entry(peer.clone()).or_default();
        match pool.health {
            Health::Up => true,
            Health::Down { until } if until > now => false,
            Health::Down { .. } | Health::Lapsed => {
                pool.health = Health::Probing;
                self.probe(now, peer, io);
                false
            }
            Health::Probing => false,
        }
    }

    /// Probes `peer` if its back-off has run out, without waiting for a
    /// request to need it: a peer that came back is then known up before
    /// the next miss of a key it owns, which would otherwise be loaded
    /// here while the probe runs.
    pub(super) fn probe_if_due(&mut self, now: Instant, peer: &Arc<str>, io: &mut Io) {
        let due = (self.pools.get(peer)).is_some_and(|p| match p.health {
            Health::Down { until } => until <= now,
            Health::Lapsed => true,
            Health::Up | Health::Probing => false,
        });
        if due {
            self.pools.get_mut(peer).expect("due").health = Health::Probing;
            self.probe(now, peer, io);
        }
    }

    /// Marks `peer`'s back-off as run out, without a probe: the next
    /// request that needs it probes it.
    pub(super) fn lapse_if_due(&mut self, now: Instant, peer: &Arc<str>) {
        if let Some(p) = self.pools.get_mut(peer) {
            if matches!(p.health, Health::Down { until } if until <= now) {
                p.health = Health::Lapsed;
            }
        }
    }

    /// When `peer`'s back-off ends, if it is backed off.
    pub(super) fn backed_off_until(&self, peer: &Arc<str>) -> Option<Instant> {
        match self.pools.get(peer)?.health {
            Health::Down { until } => Some(until),
            _ => None,
        }
    }

    /// Whether a request for a caller may go to `peer` now: not while it is
    /// backed off. Once the back-off has passed, the request itself is the
    /// probe.
    pub(super) fn reachable(&mut self, now: Instant, peer: &Arc<str>) -> Result<(), Failure> {
        let pool = self.pools.entry(peer.clone()).or_default();
        match pool.health {
            Health::Down { until } if until > now => Err(Failure::Down),
            Health::Probing => Err(Failure::Down),
            Health::Down { .. } | Health::Lapsed => {
                pool.health = Health::Up;
                Ok(())
            }
            Health::Up => Ok(()),
        }
    }

    /// Sends a request only a node that understands the extensions can take
    /// (a write, a peek) to `peer` once it is known to. Gives it back at
    /// once, with why, when the peer is backed off or known not to.
    pub(super) fn send_extended(
        &mut self,
        now: Instant,
        peer: &Arc<str>,
        s: Sent,
        io: &mut Io,
    ) -> Option<(Sent, Failure)> {
        if let Err(why) = self.reachable(now, peer) {
            return Some((s, why));
        }
        let pool = self.pools.get_mut(peer).expect("reachable made it");
        match pool.writes {
            Some(true) => self.enqueue(now, peer, s, io),
            Some(false) => return Some((s, Failure::NoWrites)),
            None => {
                pool.held.push(s);
                if !pool.hello {
                    self.probe(now, peer, io);
                }
            }
        }
        None
    }

    /// Queues a request for `peer` and sends it as soon as a connection
    /// can take it.
    pub(super) fn enqueue(&mut self, now: Instant, peer: &Arc<str>, s: Sent, io: &mut Io) {
        let deadline = s.deadline;
        let pool = self.pools.entry(peer.clone()).or_default();
        pool.queue(s.is_quick()).push_back(s);
        io.timers.push(deadline, Timer::Peer(peer.clone()));
        self.pump(now, peer, io);
    }

    /// Sends an empty request to `peer` ahead of everything queued: any
    /// answer says it is alive and whether it understands writes.
    pub(super) fn probe(&mut self, now: Instant, peer: &Arc<str>, io: &mut Io) {
        let s = Sent::new(
            now,
            io.cfg.request_timeout,
            "".into(),
            "".into(),
            Ask::Probe,
            now,
        );
        let deadline = s.deadline;
        let pool = self.pools.entry(peer.clone()).or_default();
        pool.hello = true;
        pool.quick.push_front(s);
        io.timers.push(deadline, Timer::Peer(peer.clone()));
        self.pump(now, peer, io);
    }

    /// Moves queued requests of `peer` onto connections that can take them,
    /// opening connections as needed.
    pub(super) fn pump(&mut self, now: Instant, peer: &Arc<str>, io: &mut Io) {
        let Some(pool) = self.pools.get_mut(peer) else {
            return;
        };
        let max_pipe = io.cfg.max_pipeline;
        let mut connecting = 0;
        let (mut quick_conn, mut others) = (false, 0);
        let mut sends: Vec<(ConnId, BytesMut)> = Vec::new();
        for &c in &pool.conns {
            let Some(o) = self.conns.get_mut(&c) else {
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
                encode_frame(&s.request(), &mut data);
                o.inflight.push_back(s);
            }
            if !data.is_empty() {
                o.last_active = now;
                sends.push((c, data));
            }
        }
        let want = pool.backlog.len().saturating_sub(connecting);
        let open = want.min(io.cfg.max_conns_per_peer.saturating_sub(others));
        let mut new_conns = Vec::new();
        // The quick connection comes on top of the others' budget.
        let quick = (!quick_conn && !pool.quick.is_empty()).then_some(true);
        for quick in quick.into_iter().chain(std::iter::repeat_n(false, open)) {
            let conn = ConnId(self.ids.fetch_add(1, Ordering::Relaxed) + 1);
            pool.conns.push(conn);
            new_conns.push((conn, quick));
        }
        for (conn, data) in sends {
            self.arm(conn, io);
            io.out.push_back(Output::Send {
                conn,
                data: data.freeze(),
            });
        }
        for (conn, quick) in new_conns {
            let o = Outbound::new(now, peer.clone(), quick, io.cfg);
            self.conns.insert(conn, o);
            self.arm(conn, io);
            io.out.push_back(Output::Connect {
                conn,
                addr: peer.clone(),
            });
        }
    }

    /// Arms `conn`'s timer for its deadline.
    pub(super) fn arm(&self, conn: ConnId, io: &mut Io) {
        if let Some(at) = self.deadline(conn, io.cfg) {
            io.timers.arm_conn(conn, at);
        }
    }

    /// The peer answered: remember whether it understands writes, and send
    /// the writes that waited to know. Those it does not understand are
    /// given back.
    pub(super) fn learned(
        &mut self,
        now: Instant,
        peer: &Arc<str>,
        writes: bool,
        io: &mut Io,
    ) -> Vec<Sent> {
        let Some(pool) = self.pools.get_mut(peer) else {
            return Vec::new();
        };
        pool.writes = Some(writes);
        let held = std::mem::take(&mut pool.held);
        if !writes {
            return held;
        }
        for s in held {
            self.enqueue(now, peer, s, io);
        }
        Vec::new()
    }

    /// A probe was answered: the peer is alive.
    pub(super) fn probe_answered(&mut self, peer: &Arc<str>) {
        if let Some(p) = self.pools.get_mut(peer) {
            p.health = Health::Up;
            p.hello = false;
        }
    }

    /// A probe failed: the peer is backed off again, and the writes that
    /// waited on the probe are given back.
    pub(super) fn probe_failed(
        &mut self,
        now: Instant,
        peer: &Arc<str>,
        cfg: &Config,
    ) -> Vec<Sent> {
        let Some(p) = self.pools.get_mut(peer) else {
            return Vec::new();
        };
        p.back_off(now + cfg.peer_backoff);
        p.hello = false;
        std::mem::take(&mut p.held)
    }

    /// Queued requests to `peer` that waited past their deadline, taken
    /// out; the pool's timer is armed for the new fronts.
    pub(super) fn expire(&mut self, now: Instant, peer: &Arc<str>, io: &mut Io) -> Vec<Sent> {
        let Some(pool) = self.pools.get_mut(peer) else {
            return Vec::new();
        };
        let mut expired = Vec::new();
        for queue in [&mut pool.quick, &mut pool.backlog] {
            while queue.front().is_some_and(|s| s.deadline <= now) {
                expired.extend(queue.pop_front());
            }
        }
        // Timer records may have been compacted to one per pool: re-arm for
        // the new fronts, or their requests would wait forever.
        if let Some(next) = pool.next_deadline() {
            io.timers.push(next, Timer::Peer(peer.clone()));
        }
        expired
    }

    /// Shutdown: every request queued or held back, taken out, by peer in
    /// name order.
    pub(super) fn drain_queued(&mut self) -> Vec<(Arc<str>, Sent)> {
        let mut peers: Vec<Arc<str>> = self.pools.keys().cloned().collect();
        peers.sort();
        let mut all = Vec::new();
        for peer in peers {
            let Some(p) = self.pools.get_mut(&peer) else {
                continue;
            };
            let mut queued: Vec<Sent> = p.drain_queued().collect();
            queued.append(&mut p.held);
            all.extend(queued.into_iter().map(|s| (peer.clone(), s)));
        }
        all
    }

    /// Every request not yet answered: in flight, queued or held back.
    pub(super) fn unanswered(&self) -> impl Iterator<Item = &Sent> {
        let inflight = self.conns.values().flat_map(|o| o.inflight.iter());
        let queued = (self.pools.values()).flat_map(|p| p.requests());
        inflight.chain(queued)
    }

    /// Checks that every pool lists its own connections, at most one quick
    /// one and no more others than allowed, each lane carrying only its own
    /// requests, and that every connection's timer is armed in time.
    pub(super) fn validate(&self, cfg: &Config, timers: &TimerTable) -> Result<(), String> {
        for (id, o) in &self.conns {
            if let Some(d) = o.deadline(cfg) {
                match timers.armed_at(*id) {
                    Some(at) if at <= d => {}
                    other => return Err(format!("{id} due at {d:?} but armed at {other:?}")),
                }
            }
        }
        for (peer, p) in &self.pools {
            let mut quick = 0;
            for c in &p.conns {
                match self.conns.get(c) {
                    Some(o) if &o.peer == peer => {
                        quick += usize::from(o.quick);
                        if o.inflight.iter().any(|s| s.is_quick() != o.quick) {
                            return Err(format!("{c} to {peer} carries another lane's request"));
                        }
                    }
                    _ => return Err(format!("pool {peer} lists a stray {c}")),
                }
            }
            if quick > 1 || p.conns.len() - quick > cfg.max_conns_per_peer {
                return Err(format!(
                    "pool {peer} has {} connections, {quick} quick",
                    p.conns.len()
                ));
            }
            if p.quick.iter().any(|s| !s.is_quick()) || p.backlog.iter().any(Sent::is_quick) {
                return Err(format!("pool {peer} queues a request in the wrong lane"));
            }
        }
        Ok(())
    }
}
