//! The node state machine: groups, routing, peer connections and the server
//! side of the peer protocol, with no IO and no clock.
//!
//! Inputs are method calls that take `now`: [`Node::get`], [`Node::accept`],
//! [`Node::handle_connected`], [`Node::handle_data`], [`Node::handle_closed`],
//! [`Node::handle_load`], [`Node::handle_timeout`], [`Node::set_peers`].
//! After each input the driver drains [`Node::poll_output`] and sleeps until
//! [`Node::poll_timeout`]. Outputs ask the driver to run a loader, open a
//! connection, write bytes, close a connection, or hand a result to a caller.
//!
//! Routing: the owner of a key on the ring loads it. A node asks the owner
//! with the "from a peer" flag, so the owner serves it and never forwards it
//! again. If the owner fails or times out, the asker loads the key itself;
//! if the owner says "not found", that is the answer.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use hashbrown::HashMap;
use ipnet::IpNet;

use crate::cache::{Cache, CacheStats};
use crate::flight::{Flights, Joined};
use crate::frame::{FrameDecoder, FrameError, DEFAULT_MAX_FRAME};
use crate::ring::{crc32_ieee, HashFn, Ring, DEFAULT_REPLICAS};
use crate::wire::{
    encode_frame, Request, Response, CODE_ERROR, CODE_NO_GROUP, CODE_OK, NO_GROUP_MESSAGE,
};

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(pub u64);
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}#{}", stringify!($name), self.0)
            }
        }
    };
}

id_type!(
    /// A connection, inbound or outbound, named by the node.
    ConnId
);
id_type!(
    /// A pending [`Node::get`].
    GetId
);
id_type!(
    /// A load the driver runs with the group's loader.
    LoadId
);

/// Settings of a node.
#[derive(Debug, Clone)]
pub struct Config {
    /// This node's address exactly as it appears in peer lists.
    pub self_addr: String,
    /// Ring points per peer.
    pub replicas: usize,
    /// Ring hash.
    pub hash: HashFn,
    /// Largest frame payload accepted or sent.
    pub max_frame: usize,
    /// Time allowed to open a connection to a peer.
    pub connect_timeout: Duration,
    /// Time allowed for a peer to answer a request, and for a client to send
    /// a whole frame once it started one.
    pub request_timeout: Duration,
    /// Connections with nothing to do are closed after this long.
    pub idle_timeout: Duration,
    /// After a failed connect, requests for that peer go straight to local
    /// loads for this long.
    pub peer_backoff: Duration,
    /// Connections opened to one peer at most.
    pub max_conns_per_peer: usize,
    /// Requests outstanding on one connection at most (both directions).
    pub max_pipeline: usize,
    /// Inbound connections at most.
    pub max_inbound: usize,
    /// When set, only these networks may connect to the peer port.
    pub allow: Option<Vec<IpNet>>,
}

impl Config {
    /// Defaults for a node reachable at `self_addr`.
    pub fn new(self_addr: impl Into<String>) -> Self {
        Self {
            self_addr: self_addr.into(),
            replicas: DEFAULT_REPLICAS,
            hash: crc32_ieee,
            max_frame: DEFAULT_MAX_FRAME,
            connect_timeout: Duration::from_secs(1),
            request_timeout: Duration::from_secs(3),
            idle_timeout: Duration::from_secs(60),
            peer_backoff: Duration::from_secs(1),
            max_conns_per_peer: 8,
            max_pipeline: 256,
            max_inbound: 1024,
            allow: None,
        }
    }
}

/// Settings of one named group.
#[derive(Debug, Clone)]
pub struct GroupConfig {
    /// The group's name, as sent on the wire.
    pub name: String,
    /// Byte budget of the main cache (keys this node owns or loaded itself).
    pub max_bytes: usize,
    /// How long a loaded value is served; `None` keeps it until evicted.
    pub ttl: Option<Duration>,
    /// Byte budget of the hot cache (values fetched from their owners).
    /// Defaults to an eighth of `max_bytes`; 0 turns it off.
    pub hot_bytes: usize,
}

impl GroupConfig {
    /// A group with a byte budget, no expiry and the default hot share.
    pub fn new(name: impl Into<String>, max_bytes: usize) -> Self {
        Self {
            name: name.into(),
            max_bytes,
            ttl: None,
            hot_bytes: max_bytes / 8,
        }
    }

    /// Sets the time to live of loaded values.
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }
}

/// Why a get failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// No group of that name on this node.
    #[error("no group {0:?}")]
    NoGroup(Arc<str>),
    /// The loader (here or on the owner) says the key does not exist.
    #[error("not found: {0}")]
    NotFound(Arc<str>),
    /// The loader failed, panicked or was abandoned.
    #[error("load failed: {0}")]
    Load(Arc<str>),
    /// The node is shutting down.
    #[error("node is shutting down")]
    Shutdown,
}

impl Error {
    /// The outcome a response carries, for a client that asked `group`.
    ///
    /// ```
    /// use groupcache_core::node::Error;
    /// use groupcache_core::wire::Response;
    ///
    /// let r = Response { value: "630".into(), code: 200, ..Default::default() };
    /// assert_eq!(Error::from_response("score", r), Ok("630".into()));
    /// let r = Response { value: "no group".into(), code: 404, ..Default::default() };
    /// assert_eq!(Error::from_response("x", r), Err(Error::NoGroup("x".into())));
    /// ```
    pub fn from_response(group: &str, resp: Response) -> Result<Bytes, Error> {
        match resp.code {
            CODE_OK => Ok(resp.value),
            CODE_NO_GROUP => Err(Error::NoGroup(group.into())),
            _ => {
                let msg: Arc<str> = String::from_utf8_lossy(&resp.value).into();
                Err(if resp.not_found {
                    Error::NotFound(msg)
                } else {
                    Error::Load(msg)
                })
            }
        }
    }
}

/// What a loader reports for a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoadError {
    /// The key does not exist at the origin. Not cached; peers do not retry.
    NotFound(String),
    /// Any other failure, including a panic or a cancelled load.
    Failed(String),
}

/// Why a node refuses an inbound connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// The address is outside the allowlist.
    #[error("address not in the allowlist")]
    NotAllowed,
    /// Too many inbound connections.
    #[error("too many connections")]
    TooMany,
    /// The node is shutting down.
    #[error("shutting down")]
    ShuttingDown,
}

/// Why the node closes a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CloseReason {
    /// The peer sent bytes that are not valid framing.
    Frame(FrameError),
    /// A frame that is not a valid message, or an answer nobody asked for.
    Protocol(String),
    /// The peer did not answer, connect, or finish a frame in time.
    Timeout,
    /// Nothing happened on the connection for the idle timeout.
    Idle,
    /// Too many requests outstanding on one connection.
    Overloaded,
    /// The node is shutting down.
    Shutdown,
}

/// Something the driver must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Run the group's loader for `key`, then call [`Node::handle_load`].
    Load {
        /// Pass back to `handle_load`.
        id: LoadId,
        /// Group name.
        group: Arc<str>,
        /// Key to load.
        key: Arc<str>,
    },
    /// Open a TCP connection to `addr`, then call [`Node::handle_connected`]
    /// (or [`Node::handle_closed`] if it fails).
    Connect {
        /// The connection's name.
        conn: ConnId,
        /// Peer address from the peer list.
        addr: Arc<str>,
    },
    /// Write `data` to the connection.
    Send {
        /// Where.
        conn: ConnId,
        /// Whole frames.
        data: Bytes,
    },
    /// Close the connection; the node has already forgotten it.
    Close {
        /// Which.
        conn: ConnId,
        /// Why, for logs.
        reason: CloseReason,
    },
    /// A pending get finished.
    Done {
        /// The handle [`Node::get`] returned.
        get: GetId,
        /// The value or the error.
        result: Result<Bytes, Error>,
    },
}

/// What [`Node::get`] returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Get {
    /// Answered at once (a cache hit, or an error such as an unknown group).
    Ready(Result<Bytes, Error>),
    /// The answer comes later as [`Output::Done`] with this id.
    Pending(GetId),
}

/// Counters of one group.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GroupStats {
    /// Gets from callers of this node.
    pub gets: u64,
    /// Gets and served requests answered from the main or hot cache.
    pub cache_hits: u64,
    /// Values fetched from their owner.
    pub peer_loads: u64,
    /// Peer requests that failed (error, timeout, closed connection).
    pub peer_errors: u64,
    /// Misses that had to be loaded (deduped ones excluded).
    pub loads: u64,
    /// Misses that joined a load already under way.
    pub loads_deduped: u64,
    /// Successful local loads.
    pub local_loads: u64,
    /// Failed local loads.
    pub local_load_errs: u64,
    /// Requests served to other nodes and clients.
    pub server_requests: u64,
    /// The main cache.
    pub main: CacheStats,
    /// The hot cache.
    pub hot: CacheStats,
}

#[derive(Debug, Clone, Copy)]
enum Waiter {
    Get(GetId),
    Serve { conn: ConnId, seq: u64, ext: bool },
}

#[derive(Debug, Default)]
struct FlightState {
    local: Option<LoadId>,
    remote: Option<u64>,
}

struct Group {
    name: Arc<str>,
    ttl: Option<Duration>,
    main: Cache,
    hot: Cache,
    flights: Flights<FlightState, Waiter>,
    stats: GroupStats,
}

/// A request to a peer, from the moment it is queued until answered.
#[derive(Debug)]
struct Sent {
    group: Arc<str>,
    key: Arc<str>,
    token: u64,
    asked_at: Instant,
    deadline: Instant,
}

struct Inbound {
    buf: BytesMut,
    dec: FrameDecoder,
    /// Answers in request order; `None` until ready.
    slots: VecDeque<Option<Bytes>>,
    first_seq: u64,
    frame_started: Option<Instant>,
    last_active: Instant,
}

struct Outbound {
    peer: Arc<str>,
    connect_deadline: Option<Instant>,
    buf: BytesMut,
    dec: FrameDecoder,
    inflight: VecDeque<Sent>,
    pipelining: bool,
    last_active: Instant,
}

enum Conn {
    In(Inbound),
    Out(Outbound),
}

#[derive(Default)]
struct Pool {
    conns: Vec<ConnId>,
    backlog: VecDeque<Sent>,
    down_until: Option<Instant>,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Timer {
    Conn(ConnId),
    Peer(Arc<str>),
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
/// node.handle_load(now, id, Ok(Bytes::from_static(b"630")));
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
    loads: HashMap<LoadId, (Arc<str>, Arc<str>)>,
    timers: BinaryHeap<Reverse<(Instant, Timer)>>,
    /// The earliest live timer record of each connection. A connection's
    /// deadline only ever moves later on the hot path, so most changes push
    /// nothing; the record re-arms itself when it fires early.
    armed: HashMap<ConnId, Instant>,
    out: VecDeque<Output>,
    next_id: u64,
    inbound: usize,
    shutting_down: bool,
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
    pub fn new(cfg: Config) -> Self {
        Self {
            ring: Ring::with_hash(cfg.replicas, cfg.hash),
            cfg,
            groups: HashMap::new(),
            conns: HashMap::new(),
            pools: HashMap::new(),
            loads: HashMap::new(),
            timers: BinaryHeap::new(),
            armed: HashMap::new(),
            out: VecDeque::new(),
            next_id: 0,
            inbound: 0,
            shutting_down: false,
        }
    }

    /// The node's settings.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// Registers a group. Fails if the name is taken.
    pub fn add_group(&mut self, g: GroupConfig) -> Result<(), String> {
        if self.groups.contains_key(g.name.as_str()) {
            return Err(format!("group {:?} is already registered", g.name));
        }
        let name: Arc<str> = g.name.into();
        self.groups.insert(
            name.clone(),
            Group {
                name,
                ttl: g.ttl,
                main: Cache::new(g.max_bytes),
                hot: Cache::new(g.hot_bytes),
                flights: Flights::default(),
                stats: GroupStats::default(),
            },
        );
        Ok(())
    }

    /// Names of the registered groups.
    pub fn group_names(&self) -> impl Iterator<Item = &str> {
        self.groups.keys().map(|k| &**k)
    }

    /// Counters of a group.
    pub fn stats(&self, group: &str) -> Option<GroupStats> {
        self.groups.get(group).map(|g| GroupStats {
            main: g.main.stats(),
            hot: g.hot.stats(),
            ..g.stats
        })
    }

    /// Replaces the peer list (this node's own address included, if it owns
    /// keys). Requests under way finish; new ones follow the new ring.
    pub fn set_peers<I, S>(&mut self, peers: I)
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        self.ring.set_peers(peers);
        // Forget idle pools of peers that left, so churn cannot grow them.
        let ring = &self.ring;
        self.pools.retain(|p, pool| {
            !pool.conns.is_empty()
                || !pool.backlog.is_empty()
                || ring.peers().iter().any(|r| r == p)
        });
        self.trim_timers();
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
        self.next_id += 1;
        self.next_id
    }

    // ----------------------------------------------------------------- gets

    /// Gets `key` of `group`: a hit is answered at once without allocating;
    /// a miss is loaded (here or by the owner) and answered by
    /// [`Output::Done`].
    #[inline]
    pub fn get(&mut self, now: Instant, group: &str, key: &str) -> Get {
        if self.shutting_down {
            return Get::Ready(Err(Error::Shutdown));
        }
        let Some(g) = self.groups.get_mut(group) else {
            return Get::Ready(Err(Error::NoGroup(group.into())));
        };
        g.stats.gets += 1;
        if let Some(hit) = g.main.get(key, now).or_else(|| g.hot.get(key, now)) {
            g.stats.cache_hits += 1;
            return Get::Ready(Ok(hit.value));
        }
        let id = GetId(self.id());
        self.join(now, group, key, Waiter::Get(id), false);
        Get::Pending(id)
    }

    /// Adds a waiter to the flight of `key`, starting the load if needed.
    fn join(&mut self, now: Instant, group: &str, key: &str, w: Waiter, from_peer: bool) {
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
                } else {
                    self.load_locally(name, key);
                }
            }
            Joined::Follower => {
                g.stats.loads_deduped += 1;
                // A peer asks us because it thinks we own the key, while we
                // are asking someone else: rings disagree. Load here rather
                // than wait on a cycle of requests.
                let needs_local =
                    from_peer && g.flights.get(key).is_some_and(|f| f.state.local.is_none());
                if needs_local {
                    let (name, key) = (g.name.clone(), key.into());
                    self.load_locally(name, key);
                }
            }
        }
    }

    fn load_locally(&mut self, group: Arc<str>, key: Arc<str>) {
        let id = LoadId(self.id());
        let g = self.groups.get_mut(&group).expect("group");
        if let Some(f) = g.flights.get_mut(&key) {
            f.state.local = Some(id);
        }
        self.loads.insert(id, (group.clone(), key.clone()));
        self.out.push_back(Output::Load { id, group, key });
    }

    /// Reports the outcome of an [`Output::Load`]. Every load must be reported
    /// exactly once, also when the loader panicked or was cancelled
    /// (as [`LoadError::Failed`]), or its waiters wait forever.
    pub fn handle_load(&mut self, now: Instant, id: LoadId, result: Result<Bytes, LoadError>) {
        let Some((group, key)) = self.loads.remove(&id) else {
            return;
        };
        let Some(g) = self.groups.get_mut(&group) else {
            return;
        };
        let ours = g
            .flights
            .get(&key)
            .is_some_and(|f| f.state.local == Some(id));
        let outcome = match result {
            Ok(value) => {
                g.stats.local_loads += 1;
                let expires = g.ttl.map(|t| now + t);
                g.main.insert(&key, value.clone(), expires, now);
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

    /// Delivers one outcome to every waiter of a flight.
    fn land(
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

    // ------------------------------------------------------------ client side

    fn ask_peer(&mut self, now: Instant, peer: Arc<str>, group: Arc<str>, key: Arc<str>) {
        let pool = self.pools.entry(peer.clone()).or_default();
        if pool.down_until.is_some_and(|t| t > now) {
            // Recently unreachable: do not wait for it again.
            self.groups
                .get_mut(&group)
                .expect("group")
                .stats
                .peer_errors += 1;
            self.load_locally(group, key);
            return;
        }
        let token = self.id();
        if let Some(f) = self
            .groups
            .get_mut(&group)
            .and_then(|g| g.flights.get_mut(&key))
        {
            f.state.remote = Some(token);
        }
        let deadline = now + self.cfg.request_timeout;
        let pool = self.pools.get_mut(&peer).expect("pool");
        pool.backlog.push_back(Sent {
            group,
            key,
            token,
            asked_at: now,
            deadline,
        });
        self.arm(deadline, Timer::Peer(peer.clone()));
        self.pump(now, &peer);
    }

    /// Moves queued requests of `peer` onto connections that can take them,
    /// opening connections as needed.
    fn pump(&mut self, now: Instant, peer: &Arc<str>) {
        let Some(pool) = self.pools.get_mut(peer) else {
            return;
        };
        let max_pipe = self.cfg.max_pipeline;
        let mut connecting = 0;
        let mut sends: Vec<(ConnId, BytesMut)> = Vec::new();
        for &c in &pool.conns {
            let Some(Conn::Out(o)) = self.conns.get_mut(&c) else {
                continue;
            };
            if o.connect_deadline.is_some() {
                connecting += 1;
                continue;
            }
            let room = if o.pipelining {
                max_pipe.saturating_sub(o.inflight.len())
            } else {
                usize::from(o.inflight.is_empty())
            };
            let mut data = BytesMut::new();
            for _ in 0..room {
                let Some(s) = pool.backlog.pop_front() else {
                    break;
                };
                let req = Request {
                    group: s.group.to_string(),
                    key: s.key.to_string(),
                    from_peer: true,
                    ext: true,
                };
                encode_frame(&req, &mut data);
                o.inflight.push_back(s);
            }
            if !data.is_empty() {
                o.last_active = now;
                sends.push((c, data));
            }
        }
        let want = pool.backlog.len().saturating_sub(connecting);
        let open = want.min(self.cfg.max_conns_per_peer.saturating_sub(pool.conns.len()));
        let mut new_conns = Vec::new();
        for _ in 0..open {
            self.next_id += 1;
            let conn = ConnId(self.next_id);
            pool.conns.push(conn);
            new_conns.push(conn);
        }
        for (conn, data) in sends {
            self.arm_conn(conn);
            self.out.push_back(Output::Send {
                conn,
                data: data.freeze(),
            });
        }
        for conn in new_conns {
            let deadline = now + self.cfg.connect_timeout;
            self.conns.insert(
                conn,
                Conn::Out(Outbound {
                    peer: peer.clone(),
                    connect_deadline: Some(deadline),
                    buf: BytesMut::new(),
                    dec: FrameDecoder::new(self.cfg.max_frame),
                    inflight: VecDeque::new(),
                    pipelining: false,
                    last_active: now,
                }),
            );
            self.arm_conn(conn);
            self.out.push_back(Output::Connect {
                conn,
                addr: peer.clone(),
            });
        }
    }

    /// An [`Output::Connect`] succeeded.
    pub fn handle_connected(&mut self, now: Instant, conn: ConnId) {
        let Some(Conn::Out(o)) = self.conns.get_mut(&conn) else {
            return;
        };
        o.connect_deadline = None;
        o.last_active = now;
        let peer = o.peer.clone();
        if let Some(p) = self.pools.get_mut(&peer) {
            p.down_until = None;
        }
        self.arm_conn(conn);
        self.pump(now, &peer);
    }

    fn on_response(
        &mut self,
        now: Instant,
        conn: ConnId,
        payload: &[u8],
    ) -> Result<(), CloseReason> {
        let resp =
            Response::decode_payload(payload).map_err(|e| CloseReason::Protocol(e.to_string()))?;
        let Some(Conn::Out(o)) = self.conns.get_mut(&conn) else {
            return Ok(());
        };
        let sent = o
            .inflight
            .pop_front()
            .ok_or_else(|| CloseReason::Protocol("response to no request".into()))?;
        o.pipelining = resp.pipelining;
        o.last_active = now;
        let Some(g) = self.groups.get_mut(&sent.group) else {
            return Ok(());
        };
        let current = g
            .flights
            .get(&sent.key)
            .is_some_and(|f| f.state.remote == Some(sent.token));
        if resp.code == CODE_OK {
            g.stats.peer_loads += 1;
            // Count the remaining TTL from when we asked, so a copy never
            // outlives the owner's.
            let remote =
                (resp.ttl_ms > 0).then(|| sent.asked_at + Duration::from_millis(resp.ttl_ms));
            let local = g.ttl.map(|t| now + t);
            let expires = match (remote, local) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            g.hot.insert(&sent.key, resp.value.clone(), expires, now);
            if current {
                self.land(now, &sent.group, &sent.key, Ok((resp.value, expires)));
            }
        } else if resp.code == CODE_ERROR && (resp.not_found || resp.load_failed) {
            // The owner's loader answered: that answer is final.
            if current {
                let e = Error::from_response(&sent.group, resp).expect_err("code 500");
                self.land(now, &sent.group, &sent.key, Err(e));
            }
        } else {
            self.peer_failed(sent);
        }
        Ok(())
    }

    /// A peer request failed: count it and load the key here instead.
    fn peer_failed(&mut self, sent: Sent) {
        let Some(g) = self.groups.get_mut(&sent.group) else {
            return;
        };
        g.stats.peer_errors += 1;
        let Some(f) = g.flights.get_mut(&sent.key) else {
            return;
        };
        if f.state.remote != Some(sent.token) {
            return;
        }
        f.state.remote = None;
        if f.state.local.is_none() {
            self.load_locally(sent.group, sent.key);
        }
    }

    // ------------------------------------------------------------ server side

    /// A peer or client connected to this node's port from `addr`.
    pub fn accept(&mut self, now: Instant, addr: IpAddr) -> Result<ConnId, Refused> {
        if self.shutting_down {
            return Err(Refused::ShuttingDown);
        }
        if let Some(allow) = &self.cfg.allow {
            let addr = canonical(addr);
            if !allow.iter().any(|n| n.contains(&addr)) {
                return Err(Refused::NotAllowed);
            }
        }
        if self.inbound >= self.cfg.max_inbound {
            return Err(Refused::TooMany);
        }
        self.inbound += 1;
        let conn = ConnId(self.id());
        self.conns.insert(
            conn,
            Conn::In(Inbound {
                buf: BytesMut::new(),
                dec: FrameDecoder::new(self.cfg.max_frame),
                slots: VecDeque::new(),
                first_seq: 0,
                frame_started: None,
                last_active: now,
            }),
        );
        self.arm_conn(conn);
        Ok(conn)
    }

    fn on_request(
        &mut self,
        now: Instant,
        conn: ConnId,
        payload: &[u8],
    ) -> Result<(), CloseReason> {
        let req =
            Request::decode_payload(payload).map_err(|e| CloseReason::Protocol(e.to_string()))?;
        let Some(Conn::In(i)) = self.conns.get_mut(&conn) else {
            return Ok(());
        };
        if i.slots.len() >= self.cfg.max_pipeline {
            return Err(CloseReason::Overloaded);
        }
        let seq = i.first_seq + i.slots.len() as u64;
        i.slots.push_back(None);
        let Some(g) = self.groups.get_mut(req.group.as_str()) else {
            let resp = Response {
                value: Bytes::from_static(NO_GROUP_MESSAGE.as_bytes()),
                code: CODE_NO_GROUP,
                pipelining: req.ext,
                ..Default::default()
            };
            self.answer(now, conn, seq, resp);
            return Ok(());
        };
        g.stats.server_requests += 1;
        let hit = g
            .main
            .get(&req.key, now)
            .or_else(|| g.hot.get(&req.key, now));
        if let Some(hit) = hit {
            g.stats.cache_hits += 1;
            self.answer(
                now,
                conn,
                seq,
                ok_response(hit.value, hit.expires, now, req.ext),
            );
            return Ok(());
        }
        let w = Waiter::Serve {
            conn,
            seq,
            ext: req.ext,
        };
        self.join(now, &req.group, &req.key, w, req.from_peer);
        Ok(())
    }

    /// Fills answer `seq` of an inbound connection and writes every answer
    /// that is now ready in order.
    fn answer(&mut self, now: Instant, conn: ConnId, seq: u64, resp: Response) {
        let Some(Conn::In(i)) = self.conns.get_mut(&conn) else {
            return;
        };
        let Some(slot) = seq
            .checked_sub(i.first_seq)
            .and_then(|k| i.slots.get_mut(k as usize))
        else {
            return;
        };
        let mut data = BytesMut::new();
        if seq == i.first_seq {
            // The common case: the oldest answer is ready; encode it straight
            // into the output instead of parking it in its slot.
            encode_frame(&resp, &mut data);
            i.slots.pop_front();
            i.first_seq += 1;
        } else {
            let mut frame = BytesMut::new();
            encode_frame(&resp, &mut frame);
            *slot = Some(frame.freeze());
        }
        while let Some(Some(_)) = i.slots.front() {
            let f = i.slots.pop_front().flatten().expect("checked");
            i.first_seq += 1;
            data.extend_from_slice(&f);
        }
        if data.is_empty() {
            return;
        }
        i.last_active = now;
        let done = self.shutting_down && i.slots.is_empty() && i.buf.is_empty();
        self.out.push_back(Output::Send {
            conn,
            data: data.freeze(),
        });
        if done {
            self.close(now, conn, Some(CloseReason::Shutdown));
        } else {
            self.arm_conn(conn);
        }
    }

    // ------------------------------------------------------- connection input

    /// Bytes arrived on a connection.
    pub fn handle_data(&mut self, now: Instant, conn: ConnId, data: &[u8]) {
        let mut frames = Vec::new();
        let outbound;
        let decoded = match self.conns.get_mut(&conn) {
            None => return,
            Some(Conn::In(i)) => {
                outbound = false;
                i.last_active = now;
                i.buf.extend_from_slice(data);
                let r = decode_into(&mut i.dec, &mut i.buf, &mut frames);
                i.frame_started = match (i.dec.is_mid_frame(&i.buf), i.frame_started) {
                    (false, _) => None,
                    (true, Some(t)) if frames.is_empty() => Some(t),
                    (true, _) => Some(now),
                };
                r
            }
            Some(Conn::Out(o)) => {
                outbound = true;
                o.buf.extend_from_slice(data);
                decode_into(&mut o.dec, &mut o.buf, &mut frames)
            }
        };
        // Frames before a framing error are still answered, in order.
        let mut result = Ok(());
        for f in frames {
            result = if outbound {
                self.on_response(now, conn, &f)
            } else {
                self.on_request(now, conn, &f)
            };
            if result.is_err() {
                break;
            }
        }
        let result = result.and(decoded.map_err(CloseReason::Frame));
        match result {
            Err(reason) => self.close(now, conn, Some(reason)),
            Ok(()) => {
                self.arm_conn(conn);
                if let Some(Conn::Out(o)) = self.conns.get(&conn) {
                    let peer = o.peer.clone();
                    self.pump(now, &peer);
                }
            }
        }
    }

    /// The driver saw the connection close or fail (including a failed
    /// connect). Outstanding peer requests on it fall back to local loads.
    pub fn handle_closed(&mut self, now: Instant, conn: ConnId) {
        self.close(now, conn, None);
    }

    /// Forgets a connection; `reason` is set when the node itself closes it.
    fn close(&mut self, now: Instant, conn: ConnId, reason: Option<CloseReason>) {
        let Some(c) = self.conns.remove(&conn) else {
            return;
        };
        self.armed.remove(&conn);
        self.trim_timers();
        if let Some(reason) = reason {
            self.out.push_back(Output::Close { conn, reason });
        }
        match c {
            Conn::In(_) => self.inbound -= 1,
            Conn::Out(o) => {
                let pool = self.pools.get_mut(&o.peer).expect("pool of conn");
                pool.conns.retain(|&c| c != conn);
                let mut failed: Vec<Sent> = o.inflight.into();
                if o.connect_deadline.is_some() && pool.conns.is_empty() {
                    // The peer cannot be reached: fail what waits for it too.
                    pool.down_until = Some(now + self.cfg.peer_backoff);
                    failed.extend(pool.backlog.drain(..));
                }
                for s in failed {
                    self.peer_failed(s);
                }
                self.pump(now, &o.peer);
            }
        }
    }

    // ----------------------------------------------------------------- timers

    fn arm(&mut self, at: Instant, t: Timer) {
        self.timers.push(Reverse((at, t)));
        self.trim_timers();
    }

    fn trim_timers(&mut self) {
        if self.timers.len() > self.timer_bound() {
            self.rebuild_timers();
        }
    }

    /// Most timer records kept before stale ones are dropped, so the heap
    /// stays proportional to the connections and peers.
    fn timer_bound(&self) -> usize {
        4 * (self.conns.len() + self.pools.len()) + 64
    }

    fn arm_conn(&mut self, conn: ConnId) {
        let Some(at) = self.conns.get(&conn).and_then(|c| self.conn_deadline(c)) else {
            return;
        };
        if self.armed.get(&conn).is_some_and(|&armed| armed <= at) {
            return;
        }
        self.armed.insert(conn, at);
        self.arm(at, Timer::Conn(conn));
    }

    fn conn_deadline(&self, c: &Conn) -> Option<Instant> {
        match c {
            Conn::In(i) => match i.frame_started {
                Some(t) => Some(t + self.cfg.request_timeout),
                None if i.slots.is_empty() => Some(i.last_active + self.cfg.idle_timeout),
                None => None,
            },
            Conn::Out(o) => o.connect_deadline.or_else(|| {
                o.inflight
                    .front()
                    .map(|s| s.deadline)
                    .or(Some(o.last_active + self.cfg.idle_timeout))
            }),
        }
    }

    /// Drops timer records that no longer match a deadline.
    fn rebuild_timers(&mut self) {
        let mut fresh = BinaryHeap::new();
        self.armed.clear();
        for (&id, c) in &self.conns {
            if let Some(at) = self.conn_deadline(c) {
                fresh.push(Reverse((at, Timer::Conn(id))));
                self.armed.insert(id, at);
            }
        }
        for (peer, p) in &self.pools {
            if let Some(s) = p.backlog.front() {
                fresh.push(Reverse((s.deadline, Timer::Peer(peer.clone()))));
            }
        }
        self.timers = fresh;
    }

    /// When the driver should call [`Node::handle_timeout`] next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let timer = self.timers.peek().map(|Reverse((t, _))| *t);
        self.groups
            .values()
            .flat_map(|g| [g.main.next_expiry(), g.hot.next_expiry()])
            .chain([timer])
            .flatten()
            .min()
    }

    /// Time passed: enforces timeouts and sweeps expired cache entries.
    pub fn handle_timeout(&mut self, now: Instant) {
        for g in self.groups.values_mut() {
            g.main.sweep(now, 256);
            g.hot.sweep(now, 256);
        }
        while let Some(Reverse((at, _))) = self.timers.peek() {
            if *at > now {
                break;
            }
            let Some(Reverse((at, t))) = self.timers.pop() else {
                break;
            };
            match t {
                Timer::Conn(id) => {
                    if self.armed.get(&id) != Some(&at) {
                        continue; // superseded by an earlier record
                    }
                    self.armed.remove(&id);
                    let Some(c) = self.conns.get(&id) else {
                        continue;
                    };
                    let Some(deadline) = self.conn_deadline(c) else {
                        continue;
                    };
                    if deadline > now {
                        self.arm_conn(id);
                        continue;
                    }
                    let busy = match c {
                        Conn::In(i) => i.frame_started.is_some(),
                        Conn::Out(o) => !o.inflight.is_empty() || o.connect_deadline.is_some(),
                    };
                    let reason = if busy {
                        CloseReason::Timeout
                    } else {
                        CloseReason::Idle
                    };
                    self.close(now, id, Some(reason));
                }
                Timer::Peer(peer) => self.expire_backlog(now, &peer),
            }
        }
    }

    /// Queued requests to `peer` that waited past their deadline fall back.
    fn expire_backlog(&mut self, now: Instant, peer: &Arc<str>) {
        let Some(pool) = self.pools.get_mut(peer) else {
            return;
        };
        let mut expired = Vec::new();
        while pool.backlog.front().is_some_and(|s| s.deadline <= now) {
            expired.extend(pool.backlog.pop_front());
        }
        // Timer records may have been compacted to one per pool: re-arm for
        // the new front, or its requests would wait forever.
        if let Some(next) = pool.backlog.front().map(|s| s.deadline) {
            self.arm(next, Timer::Peer(peer.clone()));
        }
        for s in expired {
            self.peer_failed(s);
        }
    }

    // --------------------------------------------------------------- outputs

    /// The next thing the driver must do, if any.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    /// Stops taking new work: new gets and connections are refused, idle
    /// inbound connections close, busy ones close once their answers are
    /// written. Loads under way still complete.
    pub fn shutdown(&mut self, now: Instant) {
        self.shutting_down = true;
        let idle: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|(_, c)| match c {
                Conn::In(i) => i.slots.is_empty(),
                Conn::Out(o) => o.inflight.is_empty(),
            })
            .map(|(&id, _)| id)
            .collect();
        for id in idle {
            self.close(now, id, Some(CloseReason::Shutdown));
        }
    }

    /// True when nothing is in flight: no load, no peer request, no inbound
    /// answer owed. After [`Node::shutdown`] the driver may stop then.
    pub fn is_idle(&self) -> bool {
        self.loads.is_empty()
            && self.groups.values().all(|g| g.flights.is_empty())
            && self.conns.values().all(|c| match c {
                Conn::In(i) => i.slots.is_empty(),
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
            g.main
                .validate()
                .map_err(|e| format!("{} main: {e}", g.name))?;
            g.hot
                .validate()
                .map_err(|e| format!("{} hot: {e}", g.name))?;
        }
        for g in self.groups.values() {
            for key in g.flights.keys() {
                let f = g.flights.get(key).expect("key");
                if f.state.local.is_none() && f.state.remote.is_none() {
                    return Err(format!("flight {}/{key} has no load under way", g.name));
                }
                if let Some(id) = f.state.local {
                    if !self.loads.contains_key(&id) {
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
                match self.armed.get(id) {
                    Some(&at) if at <= d => {}
                    other => return Err(format!("{id} due at {d:?} but armed at {other:?}")),
                }
            }
        }
        let inbound = self
            .conns
            .values()
            .filter(|c| matches!(c, Conn::In(_)))
            .count();
        if inbound != self.inbound {
            return Err(format!("inbound count {} != {inbound}", self.inbound));
        }
        for (peer, p) in &self.pools {
            for c in &p.conns {
                match self.conns.get(c) {
                    Some(Conn::Out(o)) if &o.peer == peer => {}
                    _ => return Err(format!("pool {peer} lists a stray {c}")),
                }
            }
        }
        Ok(())
    }
}

fn decode_into(
    dec: &mut FrameDecoder,
    buf: &mut BytesMut,
    out: &mut Vec<Bytes>,
) -> Result<(), FrameError> {
    while let Some(f) = dec.decode(buf)? {
        out.push(f);
    }
    Ok(())
}

/// IPv4-mapped IPv6 addresses match IPv4 networks.
fn canonical(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(addr, IpAddr::V4),
        v4 => v4,
    }
}

fn ok_response(value: Bytes, expires: Option<Instant>, now: Instant, ext: bool) -> Response {
    let ttl_ms = match (ext, expires) {
        (true, Some(t)) => {
            let left = t.saturating_duration_since(now);
            // Round up so a fresh value never reads as "no expiry" (0).
            (left.as_nanos().div_ceil(1_000_000) as u64).max(1)
        }
        _ => 0,
    };
    Response {
        value,
        code: CODE_OK,
        ttl_ms,
        not_found: false,
        pipelining: ext,
        load_failed: false,
    }
}

fn error_response(e: &Error, ext: bool) -> Response {
    let msg = match e {
        Error::NotFound(m) | Error::Load(m) | Error::NoGroup(m) => m.to_string(),
        Error::Shutdown => e.to_string(),
    };
    Response {
        value: Bytes::from(msg),
        code: CODE_ERROR,
        ttl_ms: 0,
        not_found: ext && matches!(e, Error::NotFound(_)),
        pipelining: ext,
        load_failed: ext && matches!(e, Error::Load(_)),
    }
}
