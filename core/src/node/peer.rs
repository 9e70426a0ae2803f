//! Asking peers: what a peer's answer, or its failure to answer, does to
//! the flight, write or caller that asked. Carrying requests and answers is
//! [`Peers`](super::peers::Peers)'s.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::wire::{CODE_ERROR, CODE_OK};

use super::peers::{Answer, Ask, Failure, Io, Peers, Sent};
use super::{Error, GetId, Node, Output, WriteReport};

/// Bytes a request frame needs beyond its group and key: the header, tags,
/// lengths and flags.
const REQUEST_OVERHEAD: usize = 32;

impl Node {
    /// Runs `f` on the peers with the node's settings, outputs and timers,
    /// then keeps the timer records bounded.
    pub(super) fn with_peers<R>(&mut self, f: impl FnOnce(&mut Peers, &mut Io) -> R) -> R {
        let mut io = Io {
            cfg: &self.cfg,
            out: &mut self.out,
            timers: &mut self.timers,
        };
        let r = f(&mut self.peers, &mut io);
        self.trim_timers();
        r
    }

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
        if !(fits && self.with_peers(|p, io| p.try_use(now, &peer, io))) {
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
        Sent::new(now, self.cfg.request_timeout, group, key, ask, max_deadline)
    }

    /// Queues a request for `peer` and sends it as soon as a connection
    /// can take it.
    pub(super) fn enqueue(&mut self, now: Instant, peer: &Arc<str>, s: Sent) {
        self.with_peers(|p, io| p.enqueue(now, peer, s, io));
    }

    /// Sends a request only a node that understands the extensions can take
    /// (a write, a peek) to `peer` once it is known to; fails it at once
    /// when the peer is backed off or known not to.
    pub(super) fn send_extended(&mut self, now: Instant, peer: &Arc<str>, s: Sent) {
        if let Some((s, why)) = self.with_peers(|p, io| p.send_extended(now, peer, s, io)) {
            self.peer_failed(now, peer, s, why);
        }
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
        if let Err(why) = self.peers.reachable(now, &peer) {
            self.out.push_back(Output::Done {
                get,
                result: Err(why.error(&peer)),
            });
        } else {
            self.enqueue(now, &peer, s);
        }
        get
    }

    /// An [`Output::Connect`] succeeded.
    pub fn handle_connected(&mut self, now: Instant, conn: super::ConnId) {
        self.with_peers(|p, io| p.connected(now, conn, io));
    }

    /// A peer answered `sent`: the answer goes to whoever asked.
    pub(super) fn on_answer(&mut self, now: Instant, a: Answer) {
        let Answer {
            peer,
            sent,
            response: resp,
        } = a;
        // Answers to probes and writes say whether the peer understands
        // writes; answers to gets do not carry it, to stay as small as the
        // original's.
        if matches!(sent.ask, Ask::Probe | Ask::Write { .. }) {
            let refused = self.with_peers(|p, io| p.learned(now, &peer, resp.writes, io));
            for s in refused {
                self.peer_failed(now, &peer, s, Failure::NoWrites);
            }
        }
        let token = match &sent.ask {
            Ask::Flight { token } => *token,
            &Ask::Handoff { token } => {
                self.handoff_answered(now, sent, token, resp);
                return;
            }
            Ask::Probe => {
                // Any answer at all (a Go node says "no group") proves it
                // alive.
                self.peers.probe_answered(&peer);
                return;
            }
            &Ask::Get(get) => {
                let result = Error::from_response(&sent.group, resp);
                self.out.push_back(Output::Done { get, result });
                return;
            }
            &Ask::Write {
                id, relay: true, ..
            } => {
                let result = Error::from_answer(&sent.group, resp, true).map(|r| WriteReport {
                    not_reached: r.not_reached.into_iter().map(Arc::from).collect(),
                });
                self.out.push_back(Output::Written { write: id, result });
                return;
            }
            &Ask::Write { id, .. } => {
                let result = match resp.code {
                    CODE_OK => Ok(()),
                    _ => Err(String::from_utf8_lossy(&resp.value).into()),
                };
                self.write_answered(now, id, &peer, result);
                return;
            }
        };
        let Some(g) = self.groups.get_mut(&sent.group) else {
            return;
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
                let held = self.peers.probe_failed(now, peer, &self.cfg);
                self.arm_backoff(peer);
                for s in held {
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
