//! A group's flights, each in its key's shard beside the caches, and what
//! a local load's result does to its flight.
//!
//! Every method takes the key's shard lock for one step and hands nothing
//! out that holds it, so a caller cannot call back into a shard it holds.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::cache::Hit;
use crate::flight::{Flight, Joined};
use crate::node::{Error, FlightState, LoadError, LoadId, Loaded, Waiter};

use super::{GroupCaches, Shard};

/// A key's flight.
pub(in crate::node) type KeyFlight = Flight<FlightState, Waiter>;

/// What a flight's local load came to.
pub(in crate::node) type Outcome = Result<(Bytes, Option<Instant>), Error>;

/// A local load's result, as its flight took it.
pub(in crate::node) struct Settled {
    /// The value and its expiry, or the error.
    pub(in crate::node) outcome: Outcome,
    /// The flight's waiters, if the flight waited on this load; `None`
    /// if it had moved on (a write, a shutdown): nothing was cached.
    pub(in crate::node) waiters: Option<Vec<Waiter>>,
}

impl Shard {
    /// Takes load `id`'s result for `key`: counts it, caches a value if
    /// the flight waits on `id`, and then lands the flight. `hot_ttl` caps
    /// the life of a key another node owns; the group `g` this shard is
    /// one of gives its name, TTL and largest value. The insert's expiry is
    /// the caller's to report to [`GroupCaches::expires_at`] once this
    /// shard is unlocked.
    pub(super) fn settle(
        &mut self,
        g: &GroupCaches,
        key: &str,
        id: LoadId,
        hot_ttl: Option<Duration>,
        now: Instant,
        result: Result<Loaded, LoadError>,
    ) -> Settled {
        let (group, ttl, max_value) = (&g.name, g.ttl, g.max_value);
        let ours = (self.flights.get(key)).is_some_and(|f| f.state.local == Some(id));
        let outcome = match result {
            Ok(Loaded { value, .. }) if value.len() > max_value => {
                // Never cached, never sent: a frame that large would be
                // refused by every receiver.
                self.loads.local_errs += 1;
                self.loads.too_large += 1;
                Err(Error::Load(
                    format!(
                        "{group}/{key}: value of {} bytes exceeds the limit of {max_value}",
                        value.len(),
                    )
                    .into(),
                ))
            }
            Ok(Loaded { value, ttl: own }) => {
                self.loads.local += 1;
                let expires = [own, ttl, hot_ttl]
                    .into_iter()
                    .flatten()
                    .min()
                    .map(|t| now + t);
                // A load the flight no longer waits on may predate a write.
                if ours {
                    self.main.insert(key, &value, expires, now);
                }
                Ok((value, expires))
            }
            Err(e) => {
                self.loads.local_errs += 1;
                Err(match e {
                    LoadError::NotFound(m) => Error::NotFound(m.into()),
                    LoadError::Failed(m) => Error::Load(m.into()),
                })
            }
        };
        let waiters = ours.then(|| self.flights.land(key).expect("ours").waiters);
        Settled { outcome, waiters }
    }
}

impl GroupCaches {
    /// Adds `w` to the flight of `key`, starting the flight if there is
    /// none (counted as a load, else as a deduped one). Before it starts
    /// one it looks in the caches, under the same lock: a claim lands its
    /// value and ends its flight in one step without the node, so a value
    /// the caller missed may be there now. Then it returns the hit
    /// (counted as one) and joins nothing.
    pub(in crate::node) fn join_flight(
        &self,
        key: &str,
        w: Waiter,
        now: Instant,
    ) -> Result<Joined, Hit> {
        let mut s = self.shard(key);
        if s.flights.get(key).is_none() {
            if let Some(hit) = s.look(key, now) {
                s.hits += 1;
                return Err(hit);
            }
        }
        let joined = s.flights.join(key, w, FlightState::default);
        match joined {
            Joined::Leader => s.loads.loads += 1,
            Joined::Follower => s.loads.deduped += 1,
        }
        Ok(joined)
    }

    /// Runs `f` on the flight of `key`, if one is under way.
    pub(in crate::node) fn with_flight<R>(
        &self,
        key: &str,
        f: impl FnOnce(&mut KeyFlight) -> R,
    ) -> Option<R> {
        self.shard(key).flights.get_mut(key).map(f)
    }

    /// The state of the flight of `key`, if one is under way.
    pub(in crate::node) fn flight(&self, key: &str) -> Option<FlightState> {
        self.with_flight(key, |f| f.state)
    }

    /// Ends the flight of `key` and returns it with all its waiters.
    pub(in crate::node) fn land_flight(&self, key: &str) -> Option<KeyFlight> {
        self.shard(key).flights.land(key)
    }

    /// Takes local load `id`'s result for the flight of `key`
    /// ([`Shard::settle`]).
    pub(in crate::node) fn settle(
        &self,
        key: &str,
        id: LoadId,
        hot_ttl: Option<Duration>,
        now: Instant,
        result: Result<Loaded, LoadError>,
    ) -> Settled {
        let settled = self.shard(key).settle(self, key, id, hot_ttl, now, result);
        if let (Some(_), Ok((_, exp))) = (&settled.waiters, &settled.outcome) {
            self.expires_at(*exp);
        }
        settled
    }

    /// Counts a local load that failed outside [`GroupCaches::settle`] (it
    /// ran out of time).
    pub(in crate::node) fn count_load_error(&self, key: &str) {
        self.shard(key).loads.local_errs += 1;
    }

    /// Every key with a flight under way, sorted (so that what is done to
    /// each follows no hash seed).
    pub(in crate::node) fn flight_keys(&self) -> Vec<Arc<str>> {
        let mut keys: Vec<Arc<str>> = (self.shards.iter())
            .flat_map(|s| s.lock().flights.keys().map(Arc::from).collect::<Vec<_>>())
            .collect();
        keys.sort();
        keys
    }

    /// Every flight under way and its state, sorted by key.
    pub(in crate::node) fn flight_states(&self) -> Vec<(Arc<str>, FlightState)> {
        let mut all: Vec<(Arc<str>, FlightState)> = (self.shards.iter())
            .flat_map(|s| {
                let s = s.lock();
                (s.flights.keys())
                    .map(|k| (Arc::from(k), s.flights.get(k).expect("key").state))
                    .collect::<Vec<_>>()
            })
            .collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }

    /// True when no flight is under way.
    pub(in crate::node) fn no_flights(&self) -> bool {
        self.shards.iter().all(|s| s.lock().flights.is_empty())
    }
}
