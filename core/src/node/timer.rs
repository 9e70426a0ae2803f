//! Deadlines: connection, request and backlog timers, and cache sweeps.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::Arc;
use std::time::Instant;

use hashbrown::HashMap;

use super::peers::Failure;
use super::{Conn, ConnId, Node, Timer};

/// The node's timer records: a heap of deadlines, where a record that no
/// longer matches its deadline is skipped when it comes up, and the
/// earliest live record of each connection. A connection's deadline only
/// ever moves later on the hot path, so most changes push nothing; the
/// record re-arms itself when it fires early.
#[derive(Debug, Default)]
pub(super) struct TimerTable {
    heap: BinaryHeap<Reverse<(Instant, Timer)>>,
    armed: HashMap<ConnId, Instant>,
}

impl TimerTable {
    /// Records held, stale ones included.
    pub(super) fn len(&self) -> usize {
        self.heap.len()
    }

    /// Adds a record: `t` is due at `at`.
    pub(super) fn push(&mut self, at: Instant, t: Timer) {
        self.heap.push(Reverse((at, t)));
    }

    /// The earliest record's time.
    pub(super) fn next(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse((t, _))| *t)
    }

    /// The earliest record if it is due at `now`, taken out.
    pub(super) fn pop_due(&mut self, now: Instant) -> Option<(Instant, Timer)> {
        if self.next()? > now {
            return None;
        }
        self.heap.pop().map(|Reverse(r)| r)
    }

    /// Arms `conn` for `at` unless a record at or before `at` already is;
    /// true when a record was added.
    pub(super) fn arm_conn(&mut self, conn: ConnId, at: Instant) -> bool {
        if self.armed.get(&conn).is_some_and(|&armed| armed <= at) {
            return false;
        }
        self.armed.insert(conn, at);
        self.push(at, Timer::Conn(conn));
        true
    }

    /// True if the record of `conn` at `at` is its live one, which it then
    /// stops being.
    pub(super) fn fire_conn(&mut self, conn: ConnId, at: Instant) -> bool {
        if self.armed.get(&conn) != Some(&at) {
            return false;
        }
        self.armed.remove(&conn);
        true
    }

    /// `conn` is gone: its records go stale.
    pub(super) fn forget_conn(&mut self, conn: ConnId) {
        self.armed.remove(&conn);
    }

    /// When `conn`'s live record is due.
    pub(super) fn armed_at(&self, conn: ConnId) -> Option<Instant> {
        self.armed.get(&conn).copied()
    }

    /// True if a record of `t` is due at or before `by`.
    pub(super) fn holds(&self, t: &Timer, by: Instant) -> bool {
        self.heap.iter().any(|Reverse((at, r))| r == t && *at <= by)
    }

    /// Replaces every record with `records`, each connection's being its
    /// live one.
    pub(super) fn rebuild(&mut self, records: impl IntoIterator<Item = (Instant, Timer)>) {
        self.armed.clear();
        let mut fresh = BinaryHeap::new();
        for (at, t) in records {
            if let Timer::Conn(id) = t {
                self.armed.insert(id, at);
            }
            fresh.push(Reverse((at, t)));
        }
        self.heap = fresh;
    }
}

impl Node {
    pub(super) fn arm(&mut self, at: Instant, t: Timer) {
        self.timers.push(at, t);
        self.trim_timers();
    }

    pub(super) fn trim_timers(&mut self) {
        if self.timers.len() > self.timer_bound() {
            self.rebuild_timers();
        }
    }

    /// Most timer records kept before stale ones are dropped, so the heap
    /// stays proportional to the connections and peers.
    pub(super) fn timer_bound(&self) -> usize {
        4 * (self.conns.len() + self.peers.len() + self.loads.len() + self.handoffs.len()) + 64
    }

    pub(super) fn arm_conn(&mut self, conn: ConnId) {
        let at = match self.conns.get(&conn) {
            Some(c) => self.conn_deadline(c),
            None => self.peers.deadline(conn, &self.cfg),
        };
        let Some(at) = at else {
            return;
        };
        if self.timers.arm_conn(conn, at) {
            self.trim_timers();
        }
    }

    /// When an inbound connection is due, if ever.
    pub(super) fn conn_deadline(&self, c: &Conn) -> Option<Instant> {
        match c {
            Conn::In(i) => i.poll_timeout(),
            Conn::Detached { .. } => None,
        }
    }

    /// Drops timer records that no longer match a deadline.
    pub(super) fn rebuild_timers(&mut self) {
        let conns = (self.conns.iter())
            .filter_map(|(&id, c)| Some((self.conn_deadline(c)?, Timer::Conn(id))));
        let loads = self.loads.deadlines();
        let records: Vec<_> = conns
            .chain(self.peers.deadlines(&self.cfg))
            .chain(loads)
            .chain(self.handoffs.deadlines())
            .collect();
        self.timers.rebuild(records);
    }

    /// When the driver should call [`Node::handle_timeout`] next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let timer = self.timers.next();
        self.groups
            .values()
            .map(|g| g.caches.sweep_at())
            .chain([timer])
            .flatten()
            .min()
    }

    /// Time passed: enforces timeouts and sweeps expired cache entries.
    pub fn handle_timeout(&mut self, now: Instant) {
        for g in self.groups.values() {
            g.caches.sweep_due(now, 256);
        }
        while let Some((at, t)) = self.timers.pop_due(now) {
            match t {
                Timer::Conn(id) => {
                    if !self.timers.fire_conn(id, at) {
                        continue; // superseded by an earlier record
                    }
                    match self.conns.get_mut(&id) {
                        Some(Conn::In(i)) => {
                            i.handle_timeout(now);
                            self.pump_inbound(now, id);
                        }
                        Some(Conn::Detached { .. }) => {}
                        None => {
                            if let Some(reason) = self.with_peers(|p, io| p.due(now, id, io)) {
                                self.close(now, id, Some(reason));
                            }
                        }
                    }
                }
                Timer::Peer(peer) => self.expire_backlog(now, &peer),
                Timer::Load(id) => self.expire_load(now, id),
                Timer::Handoff(token) => self.expire_handoff(now, token),
            }
        }
    }

    /// Queued requests to `peer` that waited past their deadline fall back.
    pub(super) fn expire_backlog(&mut self, now: Instant, peer: &Arc<str>) {
        for s in self.with_peers(|p, io| p.expire(now, peer, io)) {
            self.peer_failed(now, peer, s, Failure::Timeout);
        }
        // A member whose back-off ran out is probed now. One that left the
        // ring, or any peer while shutting down, is not: the next request
        // that needs it probes it.
        if self.ring.peers().contains(peer) && !self.shutting_down {
            self.with_peers(|p, io| p.probe_if_due(now, peer, io));
        } else {
            self.peers.lapse_if_due(now, peer);
        }
    }

    /// Arms `peer`'s timer for the end of its back-off, if it was just
    /// backed off.
    pub(super) fn arm_backoff(&mut self, peer: &Arc<str>) {
        if let Some(until) = self.peers.backed_off_until(peer) {
            self.arm(until, Timer::Peer(peer.clone()));
        }
    }
}
