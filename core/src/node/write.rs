//! Writes: set, remove and purge, carried out across the cluster.
//!
//! The node a write enters through carries it out. A set or remove goes to
//! the key's owner first; only once the owner has applied it are the other
//! nodes told to drop their copies, so none of them can fetch the old value
//! from the owner again afterwards. A purge goes to every node at once, one
//! message per node. Peers that have not announced they understand writes
//! (Go nodes, older Rust nodes) are never sent one, since they would read it
//! as a get: they are reported as not reached.
//!
//! A purge has no one owner: every node owns some of the group's keys.
//! So it tells every node twice. The first round purges every node; the
//! second, sent once every node answered the first, purges them again, so
//! that a copy a node fetched between the rounds from an owner the first
//! round had not reached yet is gone too, and loads restarted by the
//! second round ask owners that have all purged.
//!
//! Applying a write also settles a load of the key under way: a set lands
//! it with the new value; a remove or purge starts it again, so a value
//! loaded before the write is never cached after it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::wire::{Request, Response, CODE_OK, OP_PURGE, OP_REMOVE, OP_SET};

use super::peers::{Ask, Failure};
use super::serve::error_response;
use super::writes::{Answered, Finished, WriteWaiter};
use super::{Error, Node, Output, WriteId, WriteOp, WriteReport, Written};

/// Bytes a write request frame needs beyond its group, key and value.
const WRITE_OVERHEAD: usize = 48;

/// The request fields of a write: op, value, time to live in ms.
pub(super) fn op_fields(op: &WriteOp) -> (i32, Bytes, u64) {
    match op {
        WriteOp::Set { value, ttl, .. } => {
            // 0 means "the group's TTL": a set TTL rounds up to at least 1.
            let ms = ttl.map_or(0, |t| (t.as_nanos().div_ceil(1_000_000) as u64).max(1));
            (OP_SET, value.clone(), ms)
        }
        WriteOp::Remove { .. } => (OP_REMOVE, Bytes::new(), 0),
        WriteOp::Purge => (OP_PURGE, Bytes::new(), 0),
    }
}

/// The write a request that is not a get asks for.
pub(super) fn op_of(req: &Request) -> Result<WriteOp, Error> {
    let key = || Arc::<str>::from(req.key.as_str());
    Ok(match req.op {
        OP_SET => WriteOp::Set {
            key: key(),
            value: req.value.clone(),
            ttl: (req.ttl_ms > 0).then(|| Duration::from_millis(req.ttl_ms)),
        },
        OP_REMOVE => WriteOp::Remove { key: key() },
        OP_PURGE => WriteOp::Purge,
        other => return Err(Error::Write(format!("unknown operation {other}").into())),
    })
}

/// The answer to a write request; it announces that this node understands
/// writes, as the answer to an empty request (a probe) does.
pub(super) fn write_response(result: &Result<WriteReport, Error>, ext: bool) -> Response {
    match result {
        Ok(r) => Response {
            code: CODE_OK,
            pipelining: ext,
            writes: ext,
            not_reached: r.not_reached.iter().map(|p| p.to_string()).collect(),
            ..Default::default()
        },
        Err(e) => Response {
            writes: ext,
            ..error_response(e, ext)
        },
    }
}

impl Node {
    /// Carries out a write across the cluster (see [`WriteOp`]). The
    /// outcome is [`Written::Ready`] when no other node has to be told, else
    /// [`Output::Written`] later.
    ///
    /// A set or remove fails with [`Error::Write`] when the key's owner
    /// could not apply it (down, too slow, or a Go node); the other nodes
    /// still drop their copies. Nodes that could not be told are listed in
    /// [`WriteReport::not_reached`].
    ///
    /// ```
    /// use std::time::Instant;
    /// use groupcache_core::node::{Config, Get, GroupConfig, Node, WriteOp, Written};
    ///
    /// # #[allow(clippy::disallowed_methods)]
    /// let now = Instant::now();
    /// let mut node = Node::new(Config::new("127.0.0.1:8001"));
    /// node.add_group(GroupConfig::new("score", 1 << 20)).unwrap();
    /// let set = WriteOp::Set { key: "Tom".into(), value: "630".into(), ttl: None };
    /// // No peers: nobody else to tell.
    /// assert!(matches!(node.write(now, "score", set), Written::Ready(Ok(_))));
    /// assert_eq!(node.get(now, "score", "Tom"), Get::Ready(Ok("630".into())));
    /// ```
    pub fn write(&mut self, now: Instant, group: &str, op: WriteOp) -> Written {
        let id = WriteId(self.id());
        if let Err(e) = self.start_write(now, id, group, op, WriteWaiter::Local) {
            return Written::Ready(Err(e));
        }
        if self.writes.contains(id) {
            return Written::Pending(id);
        }
        // Finished at once: hand the outcome back instead of as an output.
        let at = self
            .out
            .iter()
            .rposition(|o| matches!(o, Output::Written { write, .. } if *write == id))
            .expect("a finished write left its outcome");
        match self.out.remove(at) {
            Some(Output::Written { result, .. }) => Written::Ready(result),
            _ => unreachable!("found above"),
        }
    }

    /// Asks the node at `peer` to carry out a write across the cluster, as
    /// a client that is not a member would. The outcome comes as
    /// [`Output::Written`]. Used by the non-member client.
    pub fn write_via(&mut self, now: Instant, peer: &str, group: &str, op: WriteOp) -> WriteId {
        let id = WriteId(self.id());
        let peer: Arc<str> = peer.into();
        let key: Arc<str> = op.key().unwrap_or("").into();
        let ask = Ask::Write {
            id,
            op,
            relay: true,
        };
        let s = self.sent(now, group.into(), key, ask, now + self.cfg.max_wait);
        self.send_extended(now, &peer, s);
        id
    }

    /// Checks a write before anything is done.
    fn check_write(&self, group: &str, op: &WriteOp) -> Result<(), Error> {
        if self.shutting_down {
            return Err(Error::Shutdown);
        }
        self.check_size(group, op)
    }

    /// A set's value must fit the group's limit and, with its group and key,
    /// one request frame.
    pub(super) fn check_size(&self, group: &str, op: &WriteOp) -> Result<(), Error> {
        let Some(g) = self.groups.get(group) else {
            return Err(Error::NoGroup(group.into()));
        };
        let WriteOp::Set { key, value, .. } = op else {
            return Ok(());
        };
        let frame_room = self
            .cfg
            .max_frame
            .saturating_sub(WRITE_OVERHEAD + group.len() + key.len());
        // `max_value` is already clamped to what fits in an answer frame.
        let limit = g.caches.max_value.min(frame_room);
        if value.len() > limit {
            let len = value.len();
            return Err(Error::TooLarge(
                format!("{group}/{key}: value of {len} bytes exceeds the limit of {limit}").into(),
            ));
        }
        Ok(())
    }

    /// Starts carrying out a write: the owner first, or, when this node is
    /// the owner (or the op is a purge), this node and then everyone else.
    pub(super) fn start_write(
        &mut self,
        now: Instant,
        id: WriteId,
        group: &str,
        op: WriteOp,
        waiter: WriteWaiter,
    ) -> Result<(), Error> {
        self.check_write(group, &op)?;
        let g = self.groups.get_mut(group).expect("checked");
        match op {
            WriteOp::Set { .. } => g.stats.sets += 1,
            WriteOp::Remove { .. } => g.stats.removes += 1,
            WriteOp::Purge => g.stats.purges += 1,
        }
        let group = g.name.clone();
        let owner: Option<Arc<str>> = op
            .key()
            .and_then(|k| self.ring.owner(k))
            .filter(|o| *o != self.cfg.self_addr)
            .map(Arc::from);
        (self.writes).open(id, group.clone(), op.clone(), waiter, owner.clone());
        match owner {
            Some(owner) => {
                let key: Arc<str> = op.key().unwrap_or("").into();
                let ask = Ask::Write {
                    id,
                    op,
                    relay: false,
                };
                let deadline = now + self.cfg.request_timeout;
                let s = self.sent(now, group, key, ask, deadline);
                self.send_extended(now, &owner, s);
            }
            None => {
                self.apply_write(now, &group, &op);
                self.fan_out(now, id);
            }
        }
        Ok(())
    }

    /// The owner applied the write (or could not): tell every other node to
    /// drop its copy, or to purge.
    fn fan_out(&mut self, now: Instant, id: WriteId) {
        let Some((group, op, owner)) = self.writes.owner_done(id) else {
            return;
        };
        let drop = match &op {
            WriteOp::Set { key, .. } | WriteOp::Remove { key } => {
                WriteOp::Remove { key: key.clone() }
            }
            WriteOp::Purge => WriteOp::Purge,
        };
        if owner.is_some() {
            // This node's own copy goes now that the owner has the write.
            self.apply_write(now, &group, &drop);
        }
        let mut peers: Vec<Arc<str>> = self
            .ring
            .peers()
            .iter()
            .filter(|p| ***p != *self.cfg.self_addr && Some(&***p) != owner.as_deref())
            .cloned()
            .collect();
        peers.sort();
        peers.dedup();
        let key: Arc<str> = drop.key().unwrap_or("").into();
        self.writes.await_answers(id, peers.len());
        for peer in peers {
            let ask = Ask::Write {
                id,
                op: drop.clone(),
                relay: false,
            };
            let deadline = now + self.cfg.request_timeout;
            let s = self.sent(now, group.clone(), key.clone(), ask, deadline);
            self.send_extended(now, &peer, s);
        }
        if self.writes.is_answered(id) {
            self.all_answered(now, id);
        }
    }

    /// Every node told of write `id` answered: a purge goes round again,
    /// this node first; any other write is done.
    fn all_answered(&mut self, now: Instant, id: WriteId) {
        match self.writes.next_round(id) {
            Some(group) => {
                self.apply_write(now, &group, &WriteOp::Purge);
                self.fan_out(now, id);
            }
            None => self.finish_write(now, id),
        }
    }

    /// A node told of write `id` answered, or could not be reached.
    pub(super) fn write_answered(
        &mut self,
        now: Instant,
        id: WriteId,
        peer: &Arc<str>,
        result: Result<(), Arc<str>>,
    ) {
        match self.writes.answered(id, peer, result) {
            Answered::Owner => self.fan_out(now, id),
            Answered::All => self.all_answered(now, id),
            Answered::Waiting => {}
        }
    }

    /// Every node has answered: report to whoever waits.
    fn finish_write(&mut self, now: Instant, id: WriteId) {
        let Some(Finished {
            group,
            waiter,
            not_reached,
            result,
        }) = self.writes.finish(id)
        else {
            return;
        };
        if let Some(g) = self.groups.get_mut(&group) {
            g.stats.write_peers_not_reached += not_reached as u64;
        }
        self.deliver_write(now, id, waiter, result);
    }

    fn deliver_write(
        &mut self,
        now: Instant,
        id: WriteId,
        waiter: WriteWaiter,
        result: Result<WriteReport, Error>,
    ) {
        match waiter {
            WriteWaiter::Local => self.out.push_back(Output::Written { write: id, result }),
            WriteWaiter::Serve { conn, seq, ext } => {
                let resp = write_response(&result, ext);
                self.answer(now, conn, seq, resp);
            }
        }
    }

    /// Applies a write to this node's caches: a set stores the value (this
    /// node is its owner), a remove drops the key, a purge the whole group.
    /// A load of the key under way is settled so that nothing loaded before
    /// the write is cached after it.
    pub(super) fn apply_write(&mut self, now: Instant, group: &str, op: &WriteOp) {
        let Some(g) = self.groups.get_mut(group) else {
            return;
        };
        let group = g.name.clone();
        if !self.cfg.handoff_period.is_zero() {
            (self.handoffs).fence(now, self.cfg.request_timeout, &group, op);
        }
        match op {
            WriteOp::Set { key, value, ttl } => {
                let expires = [*ttl, g.caches.ttl]
                    .into_iter()
                    .flatten()
                    .min()
                    .map(|t| now + t);
                g.caches.set(key, value, expires, now);
                self.settle_flight(now, &group, key, Some((value.clone(), expires)));
            }
            WriteOp::Remove { key } => {
                g.caches.remove(key);
                self.settle_flight(now, &group, key, None);
            }
            WriteOp::Purge => {
                g.caches.clear();
                // Sorted, so the loads start in an order no hash seed sets.
                for key in g.caches.flight_keys() {
                    self.settle_flight(now, &group, &key, None);
                }
            }
        }
    }

    /// A write reached a key with a load under way, which may return what
    /// the origin held before the write. A set answers its waiters with the
    /// new value; otherwise the load starts again, the old one cancelled and
    /// its answer ignored.
    fn settle_flight(
        &mut self,
        now: Instant,
        group: &Arc<str>,
        key: &str,
        set: Option<(Bytes, Option<Instant>)>,
    ) {
        let taken = (self.groups.get(group)).and_then(|g| {
            g.caches.with_flight(key, |f| {
                let claimed = std::mem::take(&mut f.state.claimed);
                (f.state.local.take(), f.state.remote.take(), claimed)
            })
        });
        let Some((local, remote, claimed)) = taken else {
            return;
        };
        // A claim learns it was passed over when it lands.
        if let Some(id) = local.filter(|_| !claimed) {
            self.cancel_load(id);
        }
        if let Some(v) = set {
            self.land(now, group, key, Ok(v));
            return;
        }
        let key: Arc<str> = key.into();
        let owner = self
            .ring
            .owner(&key)
            .filter(|o| *o != self.cfg.self_addr)
            .map(Arc::<str>::from);
        match owner {
            // A flight that was asking the owner asks it again; one that
            // loaded here (for a peer, or as owner) loads here again.
            Some(owner) if remote.is_some() && local.is_none() => {
                self.ask_peer(now, owner, group.clone(), key)
            }
            _ => self.load_locally(now, group.clone(), key),
        }
    }

    /// Shutdown: every write still open fails, and so does every request
    /// still queued for a peer.
    pub(super) fn abort_writes(&mut self, now: Instant) {
        for (id, waiter) in self.writes.abort() {
            self.deliver_write(now, id, waiter, Err(Error::Shutdown));
        }
        for (peer, s) in self.peers.drain_queued() {
            self.peer_failed(now, &peer, s, Failure::Shutdown);
        }
    }

    /// Every open write waits on exactly the requests its state says.
    pub(super) fn validate_writes(&self) -> Result<(), String> {
        let mut asked: hashbrown::HashMap<WriteId, usize> = hashbrown::HashMap::new();
        for s in self.peers.unanswered() {
            if let Ask::Write {
                id, relay: false, ..
            } = s.ask
            {
                *asked.entry(id).or_default() += 1;
            }
        }
        self.writes.validate(&asked)
    }
}
