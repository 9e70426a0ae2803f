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
//! The node's parts live in their own files: `types` (the public types),
//! `caches` (each group's caches and flights, sharded, which hits and
//! claims use without the node), `get` (gets, and what a load's outcome
//! does to its flight), `loads` (local loads and the queue for each
//! group's load slots), `slots` (the slots, shared with claims), `peer` (requests to peers), `pool` (a peer's connections
//! and queues), `serve` (answering requests), `inbound` (an inbound
//! connection's own state),
//! `write` (carrying writes out across the cluster), `writes` (what each
//! open write waits on), `handoff` (asking a key's previous owner after a
//! membership change), `admission` (who may connect, and their budgets),
//! `conn` (connection input) and `timer` (deadlines).

mod admission;
mod caches;
mod conn;
mod get;
mod handoff;
mod inbound;
mod loads;
mod peer;
mod pool;
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

use bytes::{Bytes, BytesMut};
use hashbrown::HashMap;

use crate::frame::FrameDecoder;
use crate::ring::Ring;

pub use inbound::{Inbound, InboundOutput};
use pool::{Health, Pool};

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

/// Why a request to a peer was sent: whom its answer goes to.
#[derive(Debug, Clone)]
enum Ask {
    /// A get for this node's flight of the key; `token` tells whether the
    /// flight still waits on this request.
    Flight { token: u64 },
    /// A peek at the key's previous owner for this node's flight (warm
    /// handoff); a miss or a failure sends the flight to the origin.
    Handoff { token: u64 },
    /// A health probe or a capability hello: an empty request. Any answer
    /// proves the peer alive and says whether it understands writes.
    Probe,
    /// A get on a caller's behalf ([`Node::get_via`]): the answer is the
    /// caller's, as is.
    Get(GetId),
    /// A write: `relay` asks that node to carry it out across the cluster
    /// ([`Node::write_via`]); otherwise it applies there alone, as part of
    /// a write this node carries out.
    Write {
        id: WriteId,
        op: WriteOp,
        relay: bool,
    },
}

/// A request to a peer, from the moment it is queued until answered.
#[derive(Debug)]
struct Sent {
    group: Arc<str>,
    key: Arc<str>,
    ask: Ask,
    asked_at: Instant,
    deadline: Instant,
    /// Latest the deadline may be pushed by keepalives: the owner's load
    /// timeout plus one request timeout after asking.
    max_deadline: Instant,
}

impl Sent {
    /// Whether the peer answers this at once, from memory: a peek never
    /// loads and a probe names no group. Such requests go on a connection
    /// of their own, so that none waits behind a get the peer is loading,
    /// which could wait on a peek of its own back to this node: two nodes
    /// peeking each other behind gets would each hold the other's answer.
    fn is_quick(&self) -> bool {
        matches!(self.ask, Ask::Handoff { .. } | Ask::Probe)
    }
}

struct Outbound {
    peer: Arc<str>,
    connect_deadline: Option<Instant>,
    buf: BytesMut,
    dec: FrameDecoder,
    inflight: VecDeque<Sent>,
    pipelining: bool,
    last_active: Instant,
    /// The pool's quick connection: it carries only requests the peer
    /// answers at once ([`Sent::is_quick`]), so none waits behind a get.
    quick: bool,
}

enum Conn {
    /// An inbound connection this node keeps the state of ([`Node::accept`]).
    In(Inbound),
    /// An inbound connection whose state a driver keeps
    /// ([`Node::accept_inbound`]): the node only answers its requests.
    Detached {
        from: IpAddr,
        peer: bool,
    },
    Out(Outbound),
}

impl Conn {
    /// An inbound connection's address and whether it is a peer's.
    fn inbound_from(&self) -> Option<(IpAddr, bool)> {
        match self {
            Conn::In(i) => Some((i.from, i.peer)),
            Conn::Detached { from, peer } => Some((*from, *peer)),
            Conn::Out(_) => None,
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
    conns: HashMap<ConnId, Conn>,
    pools: HashMap<Arc<str>, Pool>,
    /// Local loads, and each group's load slots.
    loads: loads::Loads,
    timers: timer::TimerTable,
    out: VecDeque<Output>,
    /// Ids of every kind; shared with the groups' caches, whose claims
    /// take load ids without the node.
    ids: Arc<AtomicU64>,
    /// Inbound connections from clients, and from peers.
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
            .field("conns", &self.conns.len())
            .finish_non_exhaustive()
    }
}

impl Node {
    /// A node with no group and no peer: it owns every key until
    /// [`Node::set_peers`] says otherwise.
    pub fn new(mut cfg: Config) -> Self {
        // A peer with no connection could never be asked.
        cfg.max_conns_per_peer = cfg.max_conns_per_peer.max(1);
        Self {
            ring: Ring::with_hash(cfg.replicas, cfg.hash),
            cfg,
            groups: HashMap::new(),
            conns: HashMap::new(),
            pools: HashMap::new(),
            loads: loads::Loads::default(),
            timers: timer::TimerTable::default(),
            out: VecDeque::new(),
            ids: Arc::default(),
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
        // Forget idle pools of peers that left, so churn cannot grow them.
        let ring = &self.ring;
        (self.pools).retain(|p, pool| !pool.is_unused() || ring.peers().iter().any(|r| r == p));
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
        // In the order they were opened, not a hash seed's.
        let mut ids: Vec<ConnId> = self.conns.keys().copied().collect();
        ids.sort();
        for id in ids {
            match self.conns.get_mut(&id) {
                Some(Conn::In(i)) => {
                    i.handle_shutdown(now);
                    self.pump_inbound(now, id);
                }
                Some(Conn::Out(o)) if o.inflight.is_empty() => {
                    self.close(now, id, Some(CloseReason::Shutdown));
                }
                // A driver's inbound connections are its to drain.
                _ => {}
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
        let mut conns: Vec<ConnId> = self.conns.keys().copied().collect();
        conns.sort();
        for id in conns {
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
            && self.pools.values().all(|p| p.held.is_empty())
            && self.groups.values().all(|g| g.caches.no_flights())
            && self.conns.values().all(|c| match c {
                Conn::In(i) => i.owes_nothing(),
                // What a driver's connection owes is a flight or a write.
                Conn::Detached { .. } => true,
                Conn::Out(o) => o.inflight.is_empty(),
            })
    }

    /// Open connections (inbound and outbound).
    pub fn connections(&self) -> usize {
        self.conns.len()
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
        let inbound = self.conns.values().filter_map(Conn::inbound_from);
        self.admission.validate(inbound)?;
        self.loads.validate()?;
        self.validate_writes()?;
        self.handoffs.validate(&self.timers)?;
        for (peer, p) in &self.pools {
            let mut quick = 0;
            for c in &p.conns {
                match self.conns.get(c) {
                    Some(Conn::Out(o)) if &o.peer == peer => {
                        quick += usize::from(o.quick);
                        if o.inflight.iter().any(|s| s.is_quick() != o.quick) {
                            return Err(format!("{c} to {peer} carries another lane's request"));
                        }
                    }
                    _ => return Err(format!("pool {peer} lists a stray {c}")),
                }
            }
            if quick > 1 || p.conns.len() - quick > self.cfg.max_conns_per_peer {
                return Err(format!(
                    "pool {peer} has {} connections, {quick} quick",
                    p.conns.len()
                ));
            }
            if p.quick.iter().any(|s| !s.is_quick()) || p.backlog.iter().any(Sent::is_quick) {
                return Err(format!("pool {peer} queues a request in the wrong lane"));
            }
        }
        Ok(())
    }
}
