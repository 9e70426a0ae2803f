//! A peer's pool: its connections, the requests queued for them, and
//! what this node believes of the peer.

use std::collections::VecDeque;
use std::time::Instant;

use super::Sent;
use crate::node::ConnId;

/// One peer's connections and queues.
#[derive(Default)]
pub(super) struct Pool {
    /// Outbound connections to the peer: at most one quick one, and up to
    /// the configured count of others.
    pub(super) conns: Vec<ConnId>,
    /// Requests waiting for a connection that is not the quick one.
    pub(super) backlog: VecDeque<Sent>,
    /// Requests for the quick connection (peeks and probes), in order.
    pub(super) quick: VecDeque<Sent>,
    pub(super) health: Health,
    /// Whether the peer understands writes, as its last answer said; `None`
    /// until it answered anything.
    pub(super) writes: Option<bool>,
    /// Writes waiting to learn whether the peer understands them.
    pub(super) held: Vec<Sent>,
    /// A probe is under way whose answer will say so.
    pub(super) hello: bool,
}

impl Pool {
    /// No request goes to the peer until `until`, and then only a probe.
    pub(super) fn back_off(&mut self, until: Instant) {
        self.health = Health::Down { until };
    }

    /// The queue of a lane: the quick connection's, or the others'.
    pub(super) fn queue(&mut self, quick: bool) -> &mut VecDeque<Sent> {
        if quick {
            &mut self.quick
        } else {
            &mut self.backlog
        }
    }

    /// True when the pool holds nothing: no connection and no request.
    /// Such a pool of a peer that left can be forgotten.
    pub(super) fn is_unused(&self) -> bool {
        self.conns.is_empty()
            && self.backlog.is_empty()
            && self.quick.is_empty()
            && self.held.is_empty()
    }

    /// Every request the pool holds: queued in either lane, or held back.
    pub(super) fn requests(&self) -> impl Iterator<Item = &Sent> {
        self.quick.iter().chain(&self.backlog).chain(&self.held)
    }

    /// Empties both queues.
    pub(super) fn drain_queued(&mut self) -> impl Iterator<Item = Sent> + '_ {
        self.quick.drain(..).chain(self.backlog.drain(..))
    }

    /// The earliest of the queues' front deadlines and the end of a
    /// back-off (when the peer is probed): what the pool's timer waits
    /// for.
    pub(super) fn next_deadline(&self) -> Option<Instant> {
        let backed_off = match self.health {
            Health::Down { until } => Some(until),
            _ => None,
        };
        [self.quick.front(), self.backlog.front()]
            .into_iter()
            .flatten()
            .map(|s| s.deadline)
            .chain(backed_off)
            .min()
    }
}

/// What a node believes of a peer. Requests go to a peer only while it is
/// `Up`; otherwise the keys it owns are loaded locally without waiting.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) enum Health {
    #[default]
    Up,
    /// It refused a connection or let a request time out; left alone until
    /// then, and probed after.
    Down { until: Instant },
    /// A probe is under way; its answer brings the peer back.
    Probing,
    /// Its back-off ran out while it was not probed (it left the ring, or
    /// this node is shutting down): the next request that needs it
    /// probes it.
    Lapsed,
}
