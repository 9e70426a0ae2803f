//! The node state machine: groups, routing, peer connections and the server
//! side of the peer protocol, with no IO and no clock.
//!
//! Inputs are method calls that take `now`: [`Node::get`], [`Node::write`],
//! [`Node::get_via`] and [`Node::write_via`] (for non-members),
//! [`Node::accept`], [`Node::accept_inbound`] and [`Node::serve`] (for an
//! inbound connection a driver keeps, [`Inbound`]),
//! [`Node::handle_connected`], [`Node::handle_data`],
//! [`Node::handle_written`], [`Node::handle_closed`], [`Node::handle_load`],
//! [`Node::handle_timeout`], [`Node::set_peers`]; for a miss that claimed
//! its load without the node ([`GroupCaches::claim`]), [`Node::adopt`],
//! [`Node::land_claimed`] and [`Node::wake`].
//! After each input the driver drains [`Node::poll_output`] and sleeps until
//! [`Node::poll_timeout`]. Outputs ask the driver to run a loader, open a
//! connection, write bytes, close a connection, or hand a result to a caller.
//!
//! Routing: the owner of a key on the ring loads it. A node asks the owner
//! with the "from a peer" flag, so the owner serves it and never forwards it
//! again. If the owner fails or times out, the asker loads the key itself;
//! if the owner says "not found", that is the answer.

//!
//! The node's state is split by concern, each part a struct with its own
//! methods in its own file; the node's methods in the other files route
//! inputs between them:
//!
//! - `types`: the public types.
//! - `caches`: each group's caches, flights and claims, sharded; hits and
//!   claims use them without the node.
//! - `loads` and `slots`: local loads, and each group's load slots, which
//!   claims share.
//! - `peers`: each peer's pool of outbound connections, the requests queued
//!   and in flight on them, and what this node believes of the peer.
//! - `inbound`: an inbound connection's own state; `admission`: who may
//!   connect, and the inbound connections' budgets.
//! - `writes`: what each open write waits on; `handoff`: the previous ring
//!   and the peeks at a key's previous owner after a membership change.
//! - `timer`: the deadlines.
//!
//! The routing: `get` (gets, and what a load's outcome does to its
//! flight), `peer` (what a peer's answer or failure does to whoever
//! asked), `serve` (answering requests), `write` (carrying writes out
//! across the cluster), `conn` (connection input).

mod admission;
mod caches;
mod conn;
mod get;
mod handoff;
mod inbound;
mod loads;
mod peer;
mod peers;
mod serve;
mod slots;
mod timer;
mod types;
mod write;
mod writes;

use std::collections::VecDeque;
use std::fmt;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hashbrown::HashMap;

use crate::ring::Ring;

pub use inbound::{Inbound, InboundOutput};

/// Bytes a response frame needs beyond its value: the frame header, the
/// value's tag and length, and every other field at its largest.
pub const RESPONSE_OVERHEAD: usize = 64;

pub use caches::{CachesStats, Claim, Claimed, GroupCaches, Landed, LoadCounts, MIN_SHARD_BYTES};
pub use types::{
    CloseReason, Config, ConnId, Error, Get, GetId, GroupConfig, GroupExists, GroupStats,
    LoadError, LoadId, Loaded, Output, Refused, WriteId, WriteOp, WriteReport, Written,
};

#[derive(Debug, Clone, Copy)]
enum Waiter {
    Get(GetId),
    Serve { conn: ConnId, seq: u64, ext: bool },
}

#[derive(Debug, Default, Clone, Copy)]
struct FlightState {
    local: Option<LoadId>,
    remote: Option<u64>,
    /// The local load is a claim's ([`GroupCaches::claim`]): it has no
    /// record in the node until the node adopts it.
    claimed: bool,
}

struct Group {
    name: Arc<str>,
    /// The main cache (keys owned or loaded here) and the hot one (copies
    /// of other nodes' keys), and the flights, sharded; the driver reads
    /// and claims there too. It keeps the group's TTL and largest value.
    caches: Arc<GroupCaches>,
    stats: GroupStats,
    load_timeout: Duration,
    hot_ttl: Duration,
}

/// An inbound connection. Outbound ones are [`peers::Peers`]'.
enum Conn {
    /// An inbound connection this node keeps the state of ([`Node::accept`]);
    /// boxed, as most inbound connections are a driver's.
    In(Box<Inbound>),
    /// An inbound connection whose state a driver keeps
    /// ([`Node::accept_inbound`]): the node only answers its requests.
    Detached { from: IpAddr, peer: bool },
}

impl Conn {
    /// An inbound connection's address and whether it is a peer's.
    fn from(&self) -> (IpAddr, bool) {
        match self {
            Conn::In(i) => (i.from, i.peer),
            Conn::Detached { from, peer } => (*from, *peer),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Timer {
    Conn(ConnId),
    Peer(Arc<str>),
    Load(LoadId),
    /// A handoff's token: past its deadline the flight stops waiting on it.
    Handoff(u64),
}

/// A groupcache node as a pure state machine.
///
/// ```
/// use std::time::Instant;
/// use bytes::Bytes;
/// use groupcache_core::node::{Config, Get, GroupConfig, Node, Output};
///
/// # #[allow(clippy::disallowed_methods)]
/// let now = Instant::now();
/// let mut node = Node::new(Config::new("127.0.0.1:8001"));
/// node.add_group(GroupConfig::new("score", 1 << 20)).unwrap();
/// let Get::Pending(get) = node.get(now, "score", "Tom") else { unreachable!() };
/// // No peers: this node owns every key and asks the driver to load it.
/// let Some(Output::Load { id, .. }) = node.poll_output() else { unreachable!() };
/// node.handle_load(now, id, Ok(Bytes::from_static(b"630").into()));
/// assert_eq!(node.poll_output(), Some(Output::Done { get, result: Ok(Bytes::from_static(b"630")) }));
/// // The next get is a hit.
/// assert_eq!(node.get(now, "score", "Tom"), Get::Ready(Ok(Bytes::from_static(b"630"))));
/// ```
pub struct Node {
    cfg: Config,
    ring: Ring,
    groups: HashMap<Arc<str>, Group>,
    /// Inbound connections.
    conns: HashMap<ConnId, Conn>,
    /// Every peer's pool of outbound connections, and the requests on them.
    peers: peers::Peers,
    /// Local loads, and each group's load slots.
    loads: loads::Loads,
    timers: timer::TimerTable,
    out: VecDeque<Output>,
    /// Ids of every kind; shared with the groups' caches, whose claims
    /// take load ids without the node.
    ids: Arc<AtomicU64>,
    /// Who may connect, and the inbound connections' budgets.
    admission: admission::Admission,
    /// Writes this node carries out across the cluster.
    writes: writes::Writes,
    /// The previous ring while handoff lasts, and the requests waited on.
    handoffs: handoff::Handoffs,
    shutting_down: bool,
    /// Each group's caches, which inbound connections answer hits from.
    served: inbound::Served,
    /// The inbound connection whose outputs are being carried out, so an
    /// answer to it is left to that loop.
    pumping: Option<ConnId>,
}

impl fmt::Debug for Node {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Node")
            .field("self_addr", &self.cfg.self_addr)
            .field("peers", &self.ring.peers())
            .field("groups", &self.groups.len())
            .field("conns", &self.connections())
            .finish_non_exhaustive()
    }
}

impl Node {
    /// A node with no group and no peer: it owns every key until
    /// [`Node::set_peers`] says otherwise.
    pub fn new(mut cfg: Config) -> Self {
        // A peer with no connection could never be asked.
        cfg.max_conns_per_peer = cfg.max_conns_per_peer.max(1);
        let ids = Arc::<AtomicU64>::default();
        Self {
            ring: Ring::with_hash(cfg.replicas, cfg.hash),
            cfg,
            groups: HashMap::new(),
            conns: HashMap::new(),
            peers: peers::Peers::new(ids.clone()),
            loads: loads::Loads::default(),
            timers: timer::TimerTable::default(),
            out: VecDeque::new(),
            ids,
            admission: admission::Admission::default(),
            writes: writes::Writes::default(),
            handoffs: handoff::Handoffs::default(),
            shutting_down: false,
            served: Arc::default(),
            pumping: None,
        }
    }

    /// The node's settings.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// Registers a group. Fails if the name is taken.
    pub fn add_group(&mut self, g: GroupConfig) -> Result<(), GroupExists> {
        if self.groups.contains_key(g.name.as_str()) {
            return Err(GroupExists(g.name));
        }
        let name: Arc<str> = g.name.into();
        // No node sends a frame larger than it would accept itself.
        let max_value = g
            .max_value
            .min(self.cfg.max_frame.saturating_sub(RESPONSE_OVERHEAD));
        // A shard holds at least 16 of the largest values the group set
        // (pages, say), so that its small queue can judge one.
        let floor = match g.max_value {
            usize::MAX => self.cfg.min_shard_bytes,
            _ => (self.cfg.min_shard_bytes).max(max_value.saturating_mul(16)),
        };
        let shards = (self.cfg.cache_shards.max(1))
            .min(g.max_bytes.checked_div(floor).unwrap_or(usize::MAX))
            .max(1);
        let slots = Arc::new(slots::Slots::new(g.max_loads));
        // One budget for both caches, as the original's cacheBytes, and
        // every entry charged what it really costs.
        let caches = GroupCaches::new(
            g.max_bytes.saturating_sub(g.hot_bytes),
            g.hot_bytes.min(g.max_bytes),
            shards,
        )
        .for_group(
            name.clone(),
            g.ttl,
            max_value,
            slots.clone(),
            self.ids.clone(),
        );
        caches.set_gate(self.gate());
        self.groups.insert(
            name.clone(),
            Group {
                name: name.clone(),
                caches: Arc::new(caches),
                stats: GroupStats::default(),
                load_timeout: g.load_timeout,
                hot_ttl: g.hot_ttl,
            },
        );
        self.loads.add_group(name, slots);
        // Connections accepted from now on answer this group's hits too.
        let served = (self.groups.iter())
            .map(|(name, g)| (name.clone(), g.caches.clone()))
            .collect();
        self.served = Arc::new(served);
        Ok(())
    }

    /// Names of the registered groups.
    pub fn group_names(&self) -> impl Iterator<Item = &str> {
        self.groups.keys().map(|k| &**k)
    }

    /// Counters of a group, its shards' added up.
    pub fn stats(&self, group: &str) -> Option<GroupStats> {
        self.groups.get(group).map(|g| {
            let c = g.caches.stats();
            GroupStats {
                main: c.main,
                hot: c.hot,
                gets: c.gets,
                cache_hits: c.hits,
                server_requests: g.stats.server_requests + c.served,
                loads: c.loads.loads,
                loads_deduped: c.loads.deduped,
                local_loads: c.loads.local,
                local_load_errs: c.loads.local_errs,
                values_too_large: c.loads.too_large,
                ..g.stats
            }
        })
    }

    /// A group's caches, which the driver reads hits from without holding
    /// the node ([`GroupCaches::get`]); a miss there goes to
    /// [`Node::get_missed`].
    pub fn caches(&self, group: &str) -> Option<Arc<GroupCaches>> {
        self.groups.get(group).map(|g| g.caches.clone())
    }

    /// The value this node holds for `key` of `group` in its main or hot
    /// cache, expired or not, without touching eviction flags or counters; for
    /// tests and debugging.
    pub fn peek(&self, group: &str, key: &str) -> Option<Bytes> {
        self.groups.get(group)?.caches.peek(key)
    }

    /// Replaces the peer list (this node's own address included, if it owns
    /// keys). Requests under way finish; new ones follow the new ring.
    ///
    /// A list that differs from the current one opens a handoff window
    /// ([`Config::handoff_period`]): a key this node now owns and another
    /// node owned before is asked of that node before the origin. The
    /// previous ring is the current one, also for a node that ran outside
    /// the list (it forwarded to the same ring as the others); a node that
    /// knew no other node (it starts, or ran alone) takes the new list
    /// without itself. The same list again changes nothing.
    pub fn set_peers<I, S>(&mut self, now: Instant, peers: I)
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let peers: Vec<Arc<str>> = peers.into_iter().map(|p| Arc::from(p.as_ref())).collect();
        if peers == self.ring.peers() {
            return;
        }
        self.open_handoff(now, &peers);
        self.ring.set_peers(&peers);
        self.admission
            .set_peers(self.ring.peers().iter().map(|p| &**p));
        self.set_gates();
        self.peers.forget_left(self.ring.peers());
        // A member back in the list whose back-off lapsed while it was out
        // is probed now, not by the first miss that needs it.
        if !self.shutting_down {
            let me = self.cfg.self_addr.as_str();
            let others: Vec<Arc<str>> = (self.ring.peers().iter())
                .filter(|p| ***p != *me)
                .cloned()
                .collect();
            for peer in &others {
                self.with_peers(|p, io| p.probe_if_due(now, peer, io));
            }
        }
        self.trim_timers();
    }

    /// Renames this node in peer lists: the name it finds itself by on the
    /// ring. A node discovered by DNS learns its name from the answers (the
    /// address the others see), which can differ from the one it started
    /// with; call this before the [`Node::set_peers`] that lists it.
    pub fn set_self_addr(&mut self, addr: impl Into<String>) {
        self.cfg.self_addr = addr.into();
        self.set_gates();
    }

    /// What lets a miss claim its load without the node, if anything: no
    /// shutdown and no handoff window, and then the keys the ring gives
    /// this node.
    fn gate(&self) -> Option<Arc<caches::Gate>> {
        if self.shutting_down || self.handoffs.is_open() {
            return None;
        }
        Some(Arc::new(caches::Gate {
            ring: self.ring.clone(),
            me: self.cfg.self_addr.clone(),
        }))
    }

    /// Sets every group's gate for claims anew.
    fn set_gates(&mut self) {
        let gate = self.gate();
        for g in self.groups.values() {
            g.caches.set_gate(gate.clone());
        }
    }

    /// The ring in use.
    pub fn ring(&self) -> &Ring {
        &self.ring
    }

    /// The peer that owns `key` (this node's own address included).
    pub fn owner(&self, key: &str) -> Option<&str> {
        self.ring.owner(key)
    }

    fn id(&mut self) -> u64 {
        self.ids.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// The next thing the driver must do, if any.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    /// Stops taking new work: new gets and connections are refused, idle
    /// inbound connections close, busy ones close once their answers are
    /// written. Loads under way still complete.
    pub fn shutdown(&mut self, now: Instant) {
        self.shutting_down = true;
        self.set_gates();
        for id in self.conn_ids() {
            match self.conns.get_mut(&id) {
                Some(Conn::In(i)) => {
                    i.handle_shutdown(now);
                    self.pump_inbound(now, id);
                }
                // A driver's inbound connections are its to drain.
                Some(Conn::Detached { .. }) => {}
                None if self.peers.is_quiet(id) => {
                    self.close(now, id, Some(CloseReason::Shutdown));
                }
                None => {}
            }
        }
    }

    /// Ends the shutdown when its time is up: every get and every request
    /// still open is answered with [`Error::Shutdown`], loads under way are
    /// cancelled, and every connection closes once its answers are written.
    /// Afterwards the node is idle.
    pub fn abort(&mut self, now: Instant) {
        self.shutting_down = true;
        self.set_gates();
        let mut open = Vec::new();
        for g in self.groups.values() {
            open.extend(
                g.caches
                    .flight_keys()
                    .into_iter()
                    .map(|k| (g.name.clone(), k)),
            );
        }
        // Sorted, so the order of the answers does not depend on a hash seed.
        open.sort();
        for (group, key) in open {
            self.land(now, &group, &key, Err(Error::Shutdown));
        }
        self.abort_writes(now);
        for id in self.loads.clear() {
            self.out.push_back(Output::CancelLoad { id });
        }
        self.handoffs.clear();
        self.trim_timers();
        for id in self.conn_ids() {
            self.close(now, id, Some(CloseReason::Shutdown));
        }
    }

    /// True once [`Node::shutdown`] or [`Node::abort`] was called: gets
    /// fail with [`Error::Shutdown`] from then on, hits included, so a
    /// driver that answers hits from the caches itself stops doing so.
    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down
    }

    /// True when nothing is in flight: no load, no peer request, no inbound
    /// answer owed. After [`Node::shutdown`] the driver may stop then.
    pub fn is_idle(&self) -> bool {
        self.loads.is_empty()
            && self.writes.is_empty()
            && self.peers.is_idle()
            && self.groups.values().all(|g| g.caches.no_flights())
            && self.conns.values().all(|c| match c {
                Conn::In(i) => i.owes_nothing(),
                // What a driver's connection owes is a flight or a write.
                Conn::Detached { .. } => true,
            })
    }

    /// Open connections (inbound and outbound).
    pub fn connections(&self) -> usize {
        self.conns.len() + self.peers.connections()
    }

    /// Every connection, inbound and outbound, in the order they were
    /// opened, not a hash seed's.
    fn conn_ids(&self) -> Vec<ConnId> {
        let mut ids: Vec<ConnId> = self.conns.keys().copied().collect();
        ids.extend(self.peers.conn_ids());
        ids.sort();
        ids
    }

    /// Checks internal invariants; for tests and fuzzers.
    pub fn validate(&self) -> Result<(), String> {
        for g in self.groups.values() {
            (g.caches.validate()).map_err(|e| format!("{}: {e}", g.name))?;
        }
        for g in self.groups.values() {
            for (key, f) in g.caches.flight_states() {
                if f.local.is_none() && f.remote.is_none() {
                    return Err(format!("flight {}/{key} has no load under way", g.name));
                }
                if let Some(id) = f.local {
                    if !f.claimed && self.loads.get(id).is_none() {
                        return Err(format!("flight {}/{key} waits on a finished {id}", g.name));
                    }
                }
            }
        }
        if self.timers.len() > self.timer_bound() {
            return Err(format!("{} timer records", self.timers.len()));
        }
        for (id, c) in &self.conns {
            if let Some(d) = self.conn_deadline(c) {
                match self.timers.armed_at(*id) {
                    Some(at) if at <= d => {}
                    other => return Err(format!("{id} due at {d:?} but armed at {other:?}")),
                }
            }
        }
        let inbound = self.conns.values().map(Conn::from);
        self.admission.validate(inbound)?;
        self.loads.validate()?;
        self.validate_writes()?;
        self.handoffs.validate(&self.timers)?;
        self.peers.validate(&self.cfg, &self.timers)?;
        Ok(())
    }
}
