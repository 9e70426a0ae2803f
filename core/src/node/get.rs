//! Gets and flights, and what a local load's outcome does to them.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;

use crate::cache::Hit;
use crate::flight::Joined;

use super::loads::LoadRec;
use super::serve::{error_response, ok_response};
use super::{
    Error, FlightState, Get, GetId, GroupCaches, LoadError, LoadId, Loaded, Node, Output, Timer,
    Waiter,
};

impl Node {
    /// Gets `key` of `group`: a hit is answered at once without allocating;
    /// a miss is loaded (here or by the owner) and answered by
    /// [`Output::Done`].
    #[inline]
    pub fn get(&mut self, now: Instant, group: &str, key: &str) -> Get {
        self.get_with(now, group, key, GroupCaches::get)
    }

    /// Goes on with a get that [`GroupCaches::get`] counted and missed
    /// without the node: looks again (a load may have landed since), then
    /// joins the key's flight.
    pub fn get_missed(&mut self, now: Instant, group: &str, key: &str) -> Get {
        self.get_with(now, group, key, GroupCaches::hit)
    }

    /// A get that looks in the caches with `look` before it joins the
    /// key's flight.
    #[inline]
    fn get_with(
        &mut self,
        now: Instant,
        group: &str,
        key: &str,
        look: fn(&GroupCaches, &str, Instant) -> Option<Hit>,
    ) -> Get {
        if self.shutting_down {
            return Get::Ready(Err(Error::Shutdown));
        }
        let Some(g) = self.groups.get_mut(group) else {
            return Get::Ready(Err(Error::NoGroup(group.into())));
        };
        if let Some(hit) = look(&g.caches, key, now) {
            return Get::Ready(Ok(hit.value));
        }
        let id = GetId(self.id());
        self.join(now, group, key, Waiter::Get(id), false);
        Get::Pending(id)
    }

    /// Adds a waiter to the flight of `key`, starting the load if needed.
    pub(super) fn join(
        &mut self,
        now: Instant,
        group: &str,
        key: &str,
        w: Waiter,
        from_peer: bool,
    ) {
        let owner_is_peer = !from_peer
            && self
                .ring
                .owner(key)
                .is_some_and(|o| o != self.cfg.self_addr);
        let g = self.groups.get_mut(group).expect("caller checked group");
        match g.flights.join(key, w, FlightState::default) {
            Joined::Leader => {
                g.stats.loads += 1;
                let (name, key): (Arc<str>, Arc<str>) = (g.name.clone(), key.into());
                if owner_is_peer {
                    let owner: Arc<str> = self.ring.owner(&key).expect("owner").into();
                    self.ask_peer(now, owner, name, key);
                } else if !self.try_handoff(now, &name, &key) {
                    self.load_locally(now, name, key);
                }
            }
            Joined::Follower => {
                g.stats.loads_deduped += 1;
                // A peer asks us because it thinks we own the key, while we
                // are asking someone else: rings disagree. Load here rather
                // than wait on a cycle of requests. A handoff cannot cycle
                // (a peek never forwards): wait on it.
                let handoffs = &self.handoffs;
                let needs_local = from_peer
                    && g.flights.get(key).is_some_and(|f| {
                        f.state.local.is_none()
                            && !f.state.remote.is_some_and(|t| handoffs.is_pending(t))
                    });
                if needs_local {
                    let (name, key) = (g.name.clone(), key.into());
                    self.load_locally(now, name, key);
                }
            }
        }
    }

    /// Decides a local load of `key`: started at once if the group has a
    /// free load slot, else queued. Either way it ends by the load timeout.
    pub(super) fn load_locally(&mut self, now: Instant, group: Arc<str>, key: Arc<str>) {
        let id = LoadId(self.id());
        let g = self.groups.get_mut(&group).expect("group");
        if let Some(f) = g.flights.get_mut(&key) {
            f.state.local = Some(id);
        }
        let deadline = now + g.load_timeout;
        self.loads.decide(id, group, key, deadline, &mut self.out);
        self.arm(deadline, Timer::Load(id));
    }

    /// Forgets load `id`, freeing its slot for a queued one; returns its
    /// record.
    pub(super) fn finish_load(&mut self, id: LoadId) -> Option<LoadRec> {
        let l = self.loads.finish(id, &mut self.out)?;
        self.trim_timers();
        Some(l)
    }

    /// Gives up on load `id`: forgets it, as [`Node::finish_load`], and
    /// asks the driver to drop it if it was handed over.
    pub(super) fn cancel_load(&mut self, id: LoadId) -> Option<LoadRec> {
        let l = self.finish_load(id)?;
        if l.started {
            self.out.push_back(Output::CancelLoad { id });
        }
        Some(l)
    }

    /// Reports the outcome of an [`Output::Load`]. Every load must be reported
    /// exactly once, also when the loader panicked or was cancelled
    /// (as [`LoadError::Failed`]), or its waiters wait forever. A report for
    /// a load the node already gave up on is ignored.
    ///
    /// A value's own time to live ([`Loaded::ttl`]) is capped by the
    /// group's; a key another node owns (loaded here because the owner was
    /// down) is kept at most the group's hot TTL.
    pub fn handle_load(&mut self, now: Instant, id: LoadId, result: Result<Loaded, LoadError>) {
        let Some(LoadRec { group, key, .. }) = self.finish_load(id) else {
            return;
        };
        let ours = self.is_flights_load(&group, &key, id);
        let owned = self
            .ring
            .owner(&key)
            .is_none_or(|o| o == self.cfg.self_addr);
        let Some(g) = self.groups.get_mut(&group) else {
            return;
        };
        let outcome = match result {
            Ok(Loaded { value, .. }) if value.len() > g.max_value => {
                // Never cached, never sent: a frame that large would be
                // refused by every receiver.
                g.stats.local_load_errs += 1;
                g.stats.values_too_large += 1;
                Err(Error::Load(
                    format!(
                        "{group}/{key}: value of {} bytes exceeds the limit of {}",
                        value.len(),
                        g.max_value
                    )
                    .into(),
                ))
            }
            Ok(Loaded { value, ttl }) => {
                g.stats.local_loads += 1;
                let hot = (!owned).then_some(g.hot_ttl);
                let expires = [ttl, g.ttl, hot]
                    .into_iter()
                    .flatten()
                    .min()
                    .map(|t| now + t);
                // A load the flight no longer waits on may predate a write.
                if ours {
                    g.caches.insert_main(&key, &value, expires, now);
                }
                Ok((value, expires))
            }
            Err(e) => {
                g.stats.local_load_errs += 1;
                Err(match e {
                    LoadError::NotFound(m) => Error::NotFound(m.into()),
                    LoadError::Failed(m) => Error::Load(m.into()),
                })
            }
        };
        if ours {
            self.land(now, &group, &key, outcome);
        }
    }

    /// A load ran out of time: cancel it and fail its waiters.
    pub(super) fn expire_load(&mut self, now: Instant, id: LoadId) {
        let Some(l) = self.loads.get(id) else {
            return;
        };
        if l.deadline > now {
            return;
        }
        let Some(LoadRec { group, key, .. }) = self.cancel_load(id) else {
            return;
        };
        let ours = self.is_flights_load(&group, &key, id);
        let Some(g) = self.groups.get_mut(&group) else {
            return;
        };
        g.stats.load_timeouts += 1;
        g.stats.local_load_errs += 1;
        let timeout = g.load_timeout;
        if ours {
            let e = Error::Load(format!("{group}/{key}: load timed out after {timeout:?}").into());
            self.land(now, &group, &key, Err(e));
        }
    }

    /// Whether load `id` is the one the flight of `key` waits on (a flight
    /// may have moved on to another load when rings disagreed).
    fn is_flights_load(&self, group: &str, key: &str, id: LoadId) -> bool {
        self.groups
            .get(group)
            .and_then(|g| g.flights.get(key))
            .is_some_and(|f| f.state.local == Some(id))
    }

    /// Delivers one outcome to every waiter of a flight.
    pub(super) fn land(
        &mut self,
        now: Instant,
        group: &str,
        key: &str,
        outcome: Result<(Bytes, Option<Instant>), Error>,
    ) {
        let Some(g) = self.groups.get_mut(group) else {
            return;
        };
        let Some(flight) = g.flights.land(key) else {
            return;
        };
        for w in flight.waiters {
            match w {
                Waiter::Get(get) => self.out.push_back(Output::Done {
                    get,
                    result: outcome.clone().map(|(v, _)| v),
                }),
                Waiter::Serve { conn, seq, ext } => {
                    let resp = match &outcome {
                        Ok((v, exp)) => ok_response(v.clone(), *exp, now, ext),
                        Err(e) => error_response(e, ext),
                    };
                    self.answer(now, conn, seq, resp);
                }
            }
        }
    }
}
