//! Warm handoff: after a membership change, a node that became a key's
//! owner asks the key's previous owner for it before the origin.
//!
//! Adding a node moves about 1/n of the keys to it; without handoff each
//! of them is loaded from the origin again on its next miss. The previous
//! owner usually still holds the value, so the new owner peeks at it
//! ([`OP_PEEK`]: answer from the cache, never load) with a short timeout,
//! for a bounded period after the change. A peek goes only to a peer that
//! announced it understands extensions (a Go node would load the key), and
//! never to a peer that is backed off. A key a write reached here lately
//! is never handed off (`fence.rs`).

mod fence;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::ring::Ring;
use crate::wire::{Request, Response, CODE_ERROR, CODE_OK, OP_PEEK};

use super::serve::ok_response;
use hashbrown::HashMap;

use super::peers::{Ask, Sent};
use super::timer::TimerTable;
use super::{ConnId, Node, Timer, WriteOp};
use fence::Fences;

/// The ring a handoff asks about, and until when.
struct Window {
    prev: Ring,
    until: Instant,
}

/// A handoff request a flight waits on.
struct Pending {
    group: Arc<str>,
    key: Arc<str>,
    deadline: Instant,
}

/// The node's handoff state: the ring before the last membership change,
/// while its window lasts, and the requests flights wait on, by token.
#[derive(Default)]
pub(super) struct Handoffs {
    window: Option<Window>,
    pending: HashMap<u64, Pending>,
    fences: Fences,
}

impl Handoffs {
    /// The owner of `key` on the ring before the last change, while the
    /// window lasts. A window that ran out is left for
    /// [`Handoffs::close_if_over`]: the node drops it there and reopens
    /// claims.
    fn previous_owner(&self, now: Instant, key: &str) -> Option<&str> {
        let w = self.window.as_ref().filter(|w| w.until > now)?;
        w.prev.owner(key)
    }

    /// True while a window is open (it may have run out unnoticed).
    pub(super) fn is_open(&self) -> bool {
        self.window.is_some()
    }

    /// Drops the window if it has run out; true if it did now.
    pub(super) fn close_if_over(&mut self, now: Instant) -> bool {
        let over = self.window.as_ref().is_some_and(|w| w.until <= now);
        if over {
            self.window = None;
        }
        over
    }

    /// True while a flight may wait on the request `token`.
    pub(super) fn is_pending(&self, token: u64) -> bool {
        self.pending.contains_key(&token)
    }

    /// Requests waited on.
    pub(super) fn len(&self) -> usize {
        self.pending.len()
    }

    /// Forgets every request (shutdown).
    pub(super) fn clear(&mut self) {
        self.pending.clear();
    }

    /// The requests' deadlines, for the timer heap's rebuild.
    pub(super) fn deadlines(&self) -> impl Iterator<Item = (Instant, Timer)> + '_ {
        self.pending
            .iter()
            .map(|(&t, p)| (p.deadline, Timer::Handoff(t)))
    }

    /// A write reached `group` here: its key (every key, for a purge)
    /// is not handed off until the write has had time to reach every
    /// other node.
    pub(super) fn fence(
        &mut self,
        now: Instant,
        request_timeout: Duration,
        group: &Arc<str>,
        op: &WriteOp,
    ) {
        let until = now + fence::fence_for(request_timeout);
        self.fences.fence(now, group, op.key(), until);
    }

    /// Every request has a timer that drops it by its deadline, so
    /// requests cannot pile up; fences stay within their bound.
    pub(super) fn validate(&self, timers: &TimerTable) -> Result<(), String> {
        self.fences.validate()?;
        for (&token, p) in &self.pending {
            if !timers.holds(&Timer::Handoff(token), p.deadline) {
                return Err(format!(
                    "handoff {token} of {}/{} has no timer",
                    p.group, p.key
                ));
            }
        }
        Ok(())
    }
}

impl Node {
    /// Opens a handoff window for a change from the current ring to
    /// `peers`.
    ///
    /// The previous ring is where the keys were: the current ring as it is
    /// for a member; for a node outside the ring (one that served, only
    /// forwarding, before it appeared in the list, or was dropped and comes
    /// back) the current ring too, since it is the others' ring. Only a
    /// node that knew no other node (it started, or ran alone until
    /// discovery answered) takes the new list without itself: that is the
    /// best guess of what the others had.
    pub(super) fn open_handoff(&mut self, now: Instant, peers: &[Arc<str>]) {
        if self.cfg.handoff_period.is_zero() {
            return;
        }
        let me = self.cfg.self_addr.as_str();
        let knew_others = self.ring.peers().iter().any(|p| &**p != me);
        let prev = if knew_others {
            self.ring.clone()
        } else {
            let mut r = Ring::with_hash(self.cfg.replicas, self.cfg.hash);
            r.set_peers(peers.iter().filter(|p| &***p != me));
            r
        };
        self.handoffs.window = (!prev.peers().is_empty()).then(|| Window {
            prev,
            until: now + self.cfg.handoff_period,
        });
    }

    /// The peer to ask for `key` before loading it here, if it is another
    /// node that is not backed off:
    ///
    /// - the key's owner on this node's ring, when that is another node: a
    ///   peer asked us as the owner, so the rings disagree while a change
    ///   spreads, and the owner we know holds the value if anyone does;
    /// - else its owner before the last membership change, while the
    ///   window lasts.
    fn previous_owner(&mut self, now: Instant, key: &str) -> Option<Arc<str>> {
        if self.cfg.handoff_period.is_zero() {
            return None;
        }
        let me = self.cfg.self_addr.as_str();
        let prev = match self.ring.owner(key).filter(|o| *o != me) {
            Some(current) => current,
            None => self
                .handoffs
                .previous_owner(now, key)
                .filter(|o| *o != me)?,
        };
        let prev: Arc<str> = prev.into();
        self.peers.may_peek(&prev).then_some(prev)
    }

    /// Starts a handoff for the flight of `key` if one applies; `false`
    /// means load it now.
    pub(super) fn try_handoff(&mut self, now: Instant, group: &Arc<str>, key: &Arc<str>) -> bool {
        if self.handoffs.fences.is_fenced(now, group, key) {
            return false;
        }
        let Some(prev) = self.previous_owner(now, key) else {
            return false;
        };
        let token = self.id();
        let deadline = now + self.cfg.handoff_timeout;
        let Some(g) = self.groups.get_mut(group) else {
            return false;
        };
        if g.caches
            .with_flight(key, |f| f.state.remote = Some(token))
            .is_none()
        {
            return false;
        }
        self.handoffs.pending.insert(
            token,
            Pending {
                group: group.clone(),
                key: key.clone(),
                deadline,
            },
        );
        self.arm(deadline, Timer::Handoff(token));
        let s = self.sent(now, group.clone(), key.clone(), Ask::Handoff { token }, now);
        self.send_extended(now, &prev, s);
        true
    }

    /// The previous owner answered a peek: a value lands the flight and is
    /// cached as if loaded here; anything else sends the flight to the
    /// origin.
    pub(super) fn handoff_answered(
        &mut self,
        now: Instant,
        sent: Sent,
        token: u64,
        resp: Response,
    ) {
        self.forget_handoff(token);
        if resp.code != CODE_OK {
            self.handoff_failed(now, &sent.group, &sent.key, token);
            return;
        }
        let owned = self
            .ring
            .owner(&sent.key)
            .is_none_or(|o| o == self.cfg.self_addr);
        let Some(g) = self.groups.get_mut(&sent.group) else {
            return;
        };
        if g.caches.flight(&sent.key).and_then(|f| f.remote) != Some(token) {
            return;
        }
        g.stats.handoff_hits += 1;
        // The previous owner's remaining time, counted from when we asked,
        // so the copy never outlives the original.
        let remote = (resp.ttl_ms > 0).then(|| sent.asked_at + Duration::from_millis(resp.ttl_ms));
        let expires = [
            remote,
            g.caches.ttl.map(|t| now + t),
            (!owned).then(|| now + g.hot_ttl),
        ]
        .into_iter()
        .flatten()
        .min();
        g.caches.insert_main(&sent.key, &resp.value, expires, now);
        self.land(now, &sent.group, &sent.key, Ok((resp.value, expires)));
    }

    /// A handoff found nothing (a miss, no answer in time, a failure): if
    /// the flight still waits on it, load the key here.
    pub(super) fn handoff_failed(
        &mut self,
        now: Instant,
        group: &Arc<str>,
        key: &Arc<str>,
        token: u64,
    ) {
        self.forget_handoff(token);
        let Some(g) = self.groups.get_mut(group) else {
            return;
        };
        let ours = g.caches.with_flight(key, |f| {
            let ours = f.state.remote == Some(token);
            if ours {
                f.state.remote = None;
            }
            ours.then_some(f.state.local.is_none())
        });
        let Some(Some(load)) = ours else {
            return;
        };
        g.stats.handoff_misses += 1;
        if load {
            self.load_locally(now, group.clone(), key.clone());
        }
    }

    /// Drops a handoff's record; its timer record goes with the next trim.
    fn forget_handoff(&mut self, token: u64) {
        if self.handoffs.pending.remove(&token).is_some() {
            self.trim_timers();
        }
    }

    /// A handoff's deadline passed. Its request may still be answered;
    /// the flight no longer waits on it.
    pub(super) fn expire_handoff(&mut self, now: Instant, token: u64) {
        let Some(p) = self.handoffs.pending.get(&token) else {
            return;
        };
        if p.deadline > now {
            return;
        }
        let (group, key) = (p.group.clone(), p.key.clone());
        self.handoff_failed(now, &group, &key, token);
    }

    /// Answers a peek from the cache alone: never loads, never forwards.
    pub(super) fn serve_peek(&mut self, now: Instant, conn: ConnId, seq: u64, req: &Request) {
        let Some(g) = self.groups.get_mut(req.group.as_str()) else {
            return;
        };
        g.stats.server_requests += 1;
        let resp = match g.caches.lookup(&req.key, now) {
            Some(hit) => ok_response(hit.value, hit.expires, now, req.ext),
            None => Response {
                value: Bytes::from_static(b"not cached here"),
                code: CODE_ERROR,
                pipelining: req.ext,
                ..Default::default()
            },
        };
        self.answer(now, conn, seq, resp);
    }
}

/// The request a handoff sends.
pub(super) fn peek_request(group: String, key: String) -> Request {
    Request {
        group,
        key,
        from_peer: true,
        ext: true,
        op: OP_PEEK,
        ..Default::default()
    }
}
