//! Claims: a miss of a key this node owns, loaded without the node.
//!
//! The node's lock serialises everything it does, so a miss that takes it
//! twice (to start the load, and to land it) cannot go faster on a second
//! thread. Most misses need nothing of it: the key is this node's, no
//! other get is loading it, a load slot is free and no handoff is open. A
//! claim checks all that under the key's shard lock alone, starts the
//! key's flight there, and, when the driver's loader answers at once,
//! lands it there too: one shard lock to start, one to land, and the node
//! never hears of it.
//!
//! Anything else goes to the node, which stays the one implementation of
//! every other case:
//!
//! - a hit, a flight already under way, a key another node owns, no free
//!   slot, a closed gate (handoff window, shutdown): [`Claim::Node`], and
//!   the caller goes on with [`Node::get_missed`](crate::node::Node::get_missed);
//! - a loader that does not answer at once: [`Node::adopt`](crate::node::Node::adopt)
//!   makes the claim a load of the node's, with its timeout;
//! - a flight that others joined, or that moved on (a write, a shutdown)
//!   while the claim loaded, or a key the ring moved meanwhile:
//!   [`Landed::Node`], and the caller lands it with
//!   [`Node::land_claimed`](crate::node::Node::land_claimed).

use std::sync::Arc;
use std::time::Instant;

use crate::cache::Hit;
use crate::node::{Error, FlightState, LoadError, LoadId, Loaded};
use crate::ring::Ring;

use super::GroupCaches;

/// Whether misses may claim their loads, and for which keys: those the
/// ring gives this node. The node sets it on every shard whenever the
/// ring, its own name or its shutdown changes, or a handoff window opens
/// or closes.
#[derive(Debug)]
pub(in crate::node) struct Gate {
    pub(in crate::node) ring: Ring,
    pub(in crate::node) me: String,
}

impl Gate {
    /// True if this node owns `key`.
    fn owns(&self, key: &str) -> bool {
        self.ring.owner(key).is_none_or(|o| o == self.me)
    }
}

/// What a miss may do without the node ([`GroupCaches::claim`]).
#[derive(Debug)]
pub enum Claim {
    /// A cache held the value after all.
    Hit(Hit),
    /// The caller leads the key's load: it runs the group's loader and
    /// then must either land it ([`GroupCaches::land_claimed`]) or hand it
    /// to the node ([`Node::adopt`](crate::node::Node::adopt)).
    Load(Claimed),
    /// The node must decide: go on with
    /// [`Node::get_missed`](crate::node::Node::get_missed).
    Node,
}

/// A load a get claimed without the node. It holds one of the group's
/// load slots and the key's flight: the driver must hand it back exactly
/// once, through [`GroupCaches::land_claimed`], [`Node::adopt`] or
/// [`Node::land_claimed`], or the key waits forever.
///
/// [`Node::adopt`]: crate::node::Node::adopt
/// [`Node::land_claimed`]: crate::node::Node::land_claimed
#[derive(Debug, PartialEq, Eq)]
#[must_use = "a claim holds a load slot and the key's flight until it is handed back"]
pub struct Claimed {
    /// The load's id, one of the node's: the driver keys its cancel
    /// handle by it once the node adopts the load.
    pub id: LoadId,
}

/// How a claimed load landed ([`GroupCaches::land_claimed`]).
#[derive(Debug)]
pub enum Landed {
    /// The flight was the claim's alone: the value is cached (an error
    /// is not) and this is the get's answer.
    Done {
        /// The answer.
        result: Result<bytes::Bytes, Error>,
        /// The node must look at itself again (any input will do): a load
        /// waits for the slot this claim gave back, or the next sweep moved
        /// earlier.
        wake: bool,
    },
    /// Others joined the flight, it moved on, or the key is no longer
    /// this node's (or the gate closed): hand the claim and its result to
    /// [`Node::land_claimed`](crate::node::Node::land_claimed).
    Node(Claimed, Result<Loaded, LoadError>),
}

impl GroupCaches {
    /// A get of `key` that the node need not see, if it can be one: a hit,
    /// or the lead of the key's load. Counted as a get (and a hit), as
    /// [`GroupCaches::get`] counts one, also when it is [`Claim::Node`]
    /// (see the module's documentation for when): the caller then goes on
    /// with [`Node::get_missed`](crate::node::Node::get_missed), which does
    /// not count the get again.
    ///
    /// ```
    /// use std::time::Instant;
    /// use bytes::Bytes;
    /// use groupcache_core::node::{Claim, Config, GroupConfig, Landed, Node};
    ///
    /// # #[allow(clippy::disallowed_methods)]
    /// let now = Instant::now();
    /// let mut node = Node::new(Config::new("127.0.0.1:8001"));
    /// node.add_group(GroupConfig::new("score", 1 << 20)).unwrap();
    /// let caches = node.caches("score").unwrap();
    /// // Alone, the node owns every key: the miss claims its load.
    /// let Claim::Load(claimed) = caches.claim("Tom", now) else { unreachable!() };
    /// // The loader answered at once: the value lands in the shard.
    /// let value = Ok(Bytes::from_static(b"630").into());
    /// let Landed::Done { result, .. } = caches.land_claimed("Tom", claimed, now, value) else {
    ///     unreachable!()
    /// };
    /// assert_eq!(result, Ok(Bytes::from_static(b"630")));
    /// // The node heard nothing, and the next get is a hit.
    /// assert_eq!(node.poll_output(), None);
    /// assert!(matches!(caches.claim("Tom", now), Claim::Hit(_)));
    /// ```
    pub fn claim(&self, key: &str, now: Instant) -> Claim {
        let mut s = self.shard(key);
        s.gets += 1;
        if let Some(hit) = s.look(key, now) {
            s.hits += 1;
            return Claim::Hit(hit);
        }
        let open = s.gate.as_ref().is_some_and(|g| g.owns(key));
        if !open || s.flights.get(key).is_some() || !self.slots.claim() {
            return Claim::Node;
        }
        s.loads.loads += 1;
        let id = s.next_id(&self.ids);
        let state = FlightState {
            local: Some(id),
            claimed: true,
            ..FlightState::default()
        };
        s.flights.lead(key, state);
        Claim::Load(Claimed { id })
    }

    /// Lands a claimed load of `key` with its loader's `result`, if the
    /// flight is still the claim's alone; else leaves all to the node
    /// ([`Landed::Node`]).
    pub fn land_claimed(
        &self,
        key: &str,
        claimed: Claimed,
        now: Instant,
        result: Result<Loaded, LoadError>,
    ) -> Landed {
        let settled = {
            let mut s = self.shard(key);
            let alone = (s.flights.get(key))
                .is_some_and(|f| f.state.local == Some(claimed.id) && f.waiters.is_empty());
            // Still this node's: else the node caps the value's life at the
            // hot TTL, as for any key loaded here that another node owns.
            let owned = s.gate.as_ref().is_some_and(|g| g.owns(key));
            if !alone || !owned {
                return Landed::Node(claimed, result);
            }
            s.settle(self, key, claimed.id, None, now, result)
        };
        let later = match &settled.outcome {
            Ok((_, exp)) => self.expires_at(*exp),
            Err(_) => false,
        };
        let waiting = self.slots.end_claim_and_give();
        Landed::Done {
            result: settled.outcome.map(|(v, _)| v),
            wake: waiting || later,
        }
    }

    /// The group's name.
    pub fn group(&self) -> &Arc<str> {
        &self.name
    }

    /// Opens every shard's gate on `gate`, or closes it (`None`).
    pub(in crate::node) fn set_gate(&self, gate: Option<Arc<Gate>>) {
        for s in self.shards.iter() {
            s.lock().gate = gate.clone();
        }
    }
}
