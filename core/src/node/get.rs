//! Gets and flights, and what a local load's outcome does to them.

use std::sync::Arc;
use std::time::Instant;

use crate::cache::Hit;
use crate::flight::Joined;

use super::caches::Outcome;
use super::loads::LoadRec;
use super::serve::{error_response, ok_response};
use super::{
    Claimed, Error, Get, GetId, GroupCaches, LoadError, LoadId, Loaded, Node, Output, Timer, Waiter,
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
        if self.handoffs.close_if_over(now) {
            self.set_gates();
        }
        let Some(g) = self.groups.get_mut(group) else {
            return Get::Ready(Err(Error::NoGroup(group.into())));
        };
        if let Some(hit) = look(&g.caches, key, now) {
            return Get::Ready(Ok(hit.value));
        }
        let id = GetId(self.id());
        match self.join(now, group, key, Waiter::Get(id), false) {
            Some(hit) => Get::Ready(Ok(hit.value)),
            None => Get::Pending(id),
        }
    }

    /// Adds a waiter to the flight of `key`, starting the load if needed;
    /// or, if the value landed since the caller looked (a claim lands
    /// without the node), returns it and adds nothing.
    #[must_use]
    pub(super) fn join(
        &mut self,
        now: Instant,
        group: &str,
        key: &str,
        w: Waiter,
        from_peer: bool,
    ) -> Option<Hit> {
        let owner_is_peer = !from_peer
            && self
                .ring
                .owner(key)
                .is_some_and(|o| o != self.cfg.self_addr);
        let g = self.groups.get(group).expect("caller checked group");
        let joined = match g.caches.join_flight(key, w, now) {
            Ok(joined) => joined,
            Err(hit) => return Some(hit),
        };
        match joined {
            Joined::Leader => {
                let (name, key): (Arc<str>, Arc<str>) = (g.name.clone(), key.into());
                if owner_is_peer {
                    let owner: Arc<str> = self.ring.owner(&key).expect("owner").into();
                    self.ask_peer(now, owner, name, key);
                } else if !self.try_handoff(now, &name, &key) {
                    self.load_locally(now, name, key);
                }
            }
            Joined::Follower => {
                // A peer asks us because it thinks we own the key, while we
                // are asking someone else: rings disagree. Load here rather
                // than wait on a cycle of requests. A handoff cannot cycle
                // (a peek never forwards): wait on it.
                let handoffs = &self.handoffs;
                let needs_local = from_peer
                    && g.caches.flight(key).is_some_and(|f| {
                        f.local.is_none() && !f.remote.is_some_and(|t| handoffs.is_pending(t))
                    });
                if needs_local {
                    let (name, key) = (g.name.clone(), key.into());
                    self.load_locally(now, name, key);
                }
            }
        }
        None
    }

    /// Decides a local load of `key`: started at once if the group has a
    /// free load slot, else queued. Either way it ends by the load timeout.
    pub(super) fn load_locally(&mut self, now: Instant, group: Arc<str>, key: Arc<str>) {
        let id = LoadId(self.id());
        let g = self.groups.get_mut(&group).expect("group");
        g.caches.with_flight(&key, |f| {
            f.state.local = Some(id);
            f.state.claimed = false;
        });
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
        self.settle_load(now, &group, &key, id, result);
    }

    /// Hands local load `id`'s result to the flight of `key`, which caches
    /// it and, if it still waited on `id`, lands: its waiters get the
    /// outcome, which is returned.
    fn settle_load(
        &mut self,
        now: Instant,
        group: &str,
        key: &str,
        id: LoadId,
        result: Result<Loaded, LoadError>,
    ) -> Option<Outcome> {
        let owned = self.ring.owner(key).is_none_or(|o| o == self.cfg.self_addr);
        let g = self.groups.get(group)?;
        let hot = (!owned).then_some(g.hot_ttl);
        let settled = g.caches.settle(key, id, hot, now, result);
        self.deliver(now, settled.waiters?, &settled.outcome);
        Some(settled.outcome)
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
        g.caches.count_load_error(&key);
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
            .and_then(|g| g.caches.flight(key))
            .is_some_and(|f| f.local == Some(id))
    }

    /// Delivers one outcome to every waiter of a flight.
    pub(super) fn land(&mut self, now: Instant, group: &str, key: &str, outcome: Outcome) {
        let Some(flight) = self
            .groups
            .get(group)
            .and_then(|g| g.caches.land_flight(key))
        else {
            return;
        };
        self.deliver(now, flight.waiters, &outcome);
    }

    /// Hands `outcome` to each of a landed flight's `waiters`.
    fn deliver(&mut self, now: Instant, waiters: Vec<Waiter>, outcome: &Outcome) {
        for w in waiters {
            match w {
                Waiter::Get(get) => self.out.push_back(Output::Done {
                    get,
                    result: outcome.clone().map(|(v, _)| v),
                }),
                Waiter::Serve { conn, seq, ext } => {
                    let resp = match outcome {
                        Ok((v, exp)) => ok_response(v.clone(), *exp, now, ext),
                        Err(e) => error_response(e, ext),
                    };
                    self.answer(now, conn, seq, resp);
                }
            }
        }
    }

    /// Takes over a load a get claimed ([`GroupCaches::claim`]) whose
    /// loader did not answer at once: the node keeps it from now on, with
    /// the group's load timeout, and the get waits on it as on any flight.
    /// With the get's id returned, the driver runs the load to its end and
    /// reports it with [`Node::handle_load`] (under the claim's id, and
    /// cancels it on [`Output::CancelLoad`]); the get's answer comes as
    /// [`Output::Done`].
    ///
    /// `None`: the flight moved on while the claim loaded (a write reached
    /// the key, or the node shut down). The claim is over: the driver drops
    /// its load, and the get goes on with [`Node::get_missed`].
    pub fn adopt(
        &mut self,
        now: Instant,
        group: &str,
        key: &str,
        claimed: Claimed,
    ) -> Option<GetId> {
        let get = GetId(self.id());
        let g = self.groups.get(group)?;
        g.caches.slots.end_claim();
        let adopted = g.caches.with_flight(key, |f| {
            let ours = f.state.claimed && f.state.local == Some(claimed.id);
            if ours {
                f.state.claimed = false;
                f.waiters.push(Waiter::Get(get));
            }
            ours
        });
        if adopted == Some(true) {
            let deadline = now + g.load_timeout;
            let name = g.name.clone();
            self.loads.adopt(claimed.id, name, key.into(), deadline);
            self.arm(deadline, Timer::Load(claimed.id));
            return Some(get);
        }
        self.give_slot(group);
        None
    }

    /// Lands a claimed load that [`GroupCaches::land_claimed`] left to the
    /// node ([`Landed::Node`](super::Landed::Node)): the value is cached and every get that
    /// joined the flight gets the outcome, which is also the claiming
    /// get's. If the flight moved on meanwhile (a write, a shutdown), the
    /// result is dropped and the get goes on as [`Node::get_missed`] does.
    pub fn land_claimed(
        &mut self,
        now: Instant,
        group: &str,
        key: &str,
        claimed: Claimed,
        result: Result<Loaded, LoadError>,
    ) -> Get {
        let Some(g) = self.groups.get(group) else {
            return Get::Ready(Err(Error::NoGroup(group.into())));
        };
        g.caches.slots.end_claim();
        let landed = self.settle_load(now, group, key, claimed.id, result);
        self.give_slot(group);
        match landed {
            Some(outcome) => Get::Ready(outcome.map(|(v, _)| v)),
            None => self.get_missed(now, group, key),
        }
    }

    /// Looks at itself again after claims landed without it
    /// ([`Landed::Done`](super::Landed::Done) with `wake`): starts the loads that wait for the
    /// slots they gave back. The driver then reads
    /// [`Node::poll_timeout`] anew, as after any input, for a sweep that
    /// moved earlier.
    pub fn wake(&mut self, now: Instant) {
        let _ = now;
        let mut names: Vec<Arc<str>> = self.groups.keys().cloned().collect();
        names.sort();
        for name in names {
            self.loads.slot_freed(&name, &mut self.out);
        }
    }

    /// Gives a claim's slot back to `group`, to the oldest load waiting.
    fn give_slot(&mut self, group: &str) {
        if let Some(g) = self.groups.get(group) {
            g.caches.slots.give();
            self.loads.slot_freed(group, &mut self.out);
        }
    }
}
