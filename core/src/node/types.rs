//! The node's public types: settings, ids, inputs' answers and outputs.

use std::fmt;

#[cfg(doc)]
use super::Node;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use ipnet::IpNet;

use crate::cache::CacheStats;
use crate::frame::{FrameError, DEFAULT_MAX_FRAME};
use crate::ring::{crc32_ieee, HashFn, DEFAULT_REPLICAS};
use crate::wire::{Response, CODE_NO_GROUP, CODE_OK};

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
id_type!(
    /// A pending write ([`Node::write`] or [`Node::write_via`]).
    WriteId
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
    /// Connections opened to one peer at most for gets and writes (at
    /// least 1). One more carries only requests the peer answers at once
    /// (handoff peeks and probes), so they never wait behind a get the peer
    /// is loading.
    pub max_conns_per_peer: usize,
    /// Requests outstanding on one connection at most (both directions).
    pub max_pipeline: usize,
    /// Inbound connections at most from addresses that are not peers
    /// (clients).
    pub max_inbound: usize,
    /// Inbound connections at most from one client address, so that one
    /// address cannot take every client slot.
    pub max_inbound_per_addr: usize,
    /// Inbound connections at most from the peers' addresses. Peers have
    /// this budget of their own, so clients can never lock them out. A peer
    /// is recognised by the IP address of its entry in the peer list.
    pub max_peer_inbound: usize,
    /// Bytes of answers queued on one inbound connection, not yet written,
    /// past which the node reads no more requests from it until the client
    /// reads (backpressure).
    pub max_unwritten: usize,
    /// When set, only these networks may connect to the peer port.
    pub allow: Option<Vec<IpNet>>,
    /// Longest a request sent on a caller's behalf ([`Node::get_via`],
    /// [`Node::write_via`]) may wait in all while the node it asked keeps
    /// sending keepalives. Silence longer than the request timeout still
    /// ends it at once.
    pub max_wait: Duration,
    /// How long after a membership change a node that became a key's owner
    /// asks the key's previous owner for its value before loading it from
    /// the origin (warm handoff), so that scaling out does not send every
    /// moved key to the origin again. Zero turns handoff off.
    pub handoff_period: Duration,
    /// Longest a load waits on the previous owner's answer during handoff
    /// before it goes to the origin.
    pub handoff_timeout: Duration,
    /// Shards each group's caches are split into at most, each behind a
    /// lock of its own, so that hits on different keys run in parallel
    /// ([`GroupCaches`](super::GroupCaches)). A group gets fewer when its
    /// budget would leave a shard under `min_shard_bytes`. 0, the default,
    /// leaves it to the driver, which gives four per core, up to 64; the
    /// core alone takes it as 1.
    pub cache_shards: usize,
    /// Smallest budget a cache shard is given
    /// ([`MIN_SHARD_BYTES`](super::MIN_SHARD_BYTES) by default), and for a
    /// group that sets [`GroupConfig::max_value`], at least 16 such values:
    /// a small shard turns over fast and caches no value larger than
    /// itself.
    pub min_shard_bytes: usize,
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
            max_inbound_per_addr: 256,
            max_peer_inbound: 1024,
            max_unwritten: 8 << 20,
            allow: None,
            // A group's default load timeout plus one request timeout.
            max_wait: Duration::from_secs(33),
            // Two DNS intervals: every node has seen the change by then.
            handoff_period: Duration::from_secs(60),
            handoff_timeout: Duration::from_millis(250),
            cache_shards: 0,
            min_shard_bytes: super::MIN_SHARD_BYTES,
        }
    }
}

/// The defaults, for a node whose name is set later (as the driver does
/// when it starts, from its listen address).
impl Default for Config {
    fn default() -> Self {
        Self::new("")
    }
}

/// Settings of one named group.
#[derive(Debug, Clone)]
pub struct GroupConfig {
    /// The group's name, as sent on the wire.
    pub name: String,
    /// Byte budget of the group on this node: the main cache (keys this
    /// node owns or loaded itself) and the hot cache together, as the
    /// original's `cacheBytes`. Every entry counts its key, its value and
    /// what the cache itself spends on it
    /// ([`ENTRY_OVERHEAD`](crate::cache::ENTRY_OVERHEAD)), so the budget
    /// bounds what the process really holds.
    pub max_bytes: usize,
    /// How long a loaded value is served; `None` keeps it until evicted.
    pub ttl: Option<Duration>,
    /// The share of `max_bytes` kept for the hot cache (values fetched
    /// from their owners); the main cache has the rest. Defaults to an
    /// eighth of `max_bytes`; 0 turns it off.
    pub hot_bytes: usize,
    /// Largest value the group caches or sends. A loader result above it is
    /// an error, never cached. The default, `usize::MAX`, and any larger
    /// setting mean "what fits in one frame" ([`Config::max_frame`]).
    pub max_value: usize,
    /// Longest a load may take, queueing included; after it the load is
    /// cancelled and its waiters get an error.
    pub load_timeout: Duration,
    /// Loads of this group running at once at most; further ones wait.
    pub max_loads: usize,
    /// Longest this node keeps a copy of a key another node owns (a hot
    /// copy, or a value it loaded itself while the owner was down). A write
    /// that could not reach this node is undone here at most this long
    /// after it.
    pub hot_ttl: Duration,
}

impl GroupConfig {
    /// A group with a byte budget, no expiry and the default hot share.
    pub fn new(name: impl Into<String>, max_bytes: usize) -> Self {
        Self {
            name: name.into(),
            max_bytes,
            ttl: None,
            hot_bytes: max_bytes / 8,
            max_value: usize::MAX,
            load_timeout: Duration::from_secs(30),
            max_loads: 64,
            hot_ttl: Duration::from_secs(60),
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
#[non_exhaustive]
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
    /// A node this one had to ask could not be reached: it refused or
    /// dropped the connection, did not answer in time, or is backed off.
    #[error("not reached: {0}")]
    Unreachable(Arc<str>),
    /// A write did not take effect: the key's owner could not be told, or
    /// does not understand writes (the message says which).
    #[error("write failed: {0}")]
    Write(Arc<str>),
    /// A value to write is larger than the group accepts.
    #[error("too large: {0}")]
    TooLarge(Arc<str>),
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
        Self::from_answer(group, resp, false).map(|r| r.value)
    }

    /// The outcome of any answer: a get's (`write` false) or a write's.
    pub(crate) fn from_answer(group: &str, resp: Response, write: bool) -> Result<Response, Error> {
        match resp.code {
            CODE_OK => Ok(resp),
            CODE_NO_GROUP => Err(Error::NoGroup(group.into())),
            _ => {
                let msg: Arc<str> = String::from_utf8_lossy(&resp.value).into();
                Err(if write {
                    Error::Write(msg)
                } else if resp.not_found {
                    Error::NotFound(msg)
                } else {
                    Error::Load(msg)
                })
            }
        }
    }

    /// True when the loader says the key does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::NotFound(_))
    }
}

/// A loaded value and, optionally, how long it may be served: a loader's
/// time to live is capped by the group's.
///
/// ```
/// use std::time::Duration;
/// use groupcache_core::node::Loaded;
///
/// let v: Loaded = "630".into(); // the group's TTL
/// let short = Loaded::from("630").ttl(Duration::from_secs(5));
/// assert_eq!(short.ttl, Some(Duration::from_secs(5)));
/// assert_eq!(v.value, "630");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Loaded {
    /// The value.
    pub value: Bytes,
    /// Its own time to live, if shorter than the group's.
    pub ttl: Option<Duration>,
}

impl Loaded {
    /// A value with the group's time to live.
    pub fn new(value: impl Into<Bytes>) -> Self {
        Self {
            value: value.into(),
            ttl: None,
        }
    }

    /// Serves the value at most `ttl` (never longer than the group's TTL).
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }
}

impl From<Bytes> for Loaded {
    fn from(v: Bytes) -> Self {
        Self::new(v)
    }
}

impl From<Vec<u8>> for Loaded {
    fn from(v: Vec<u8>) -> Self {
        Self::new(v)
    }
}

impl From<String> for Loaded {
    fn from(v: String) -> Self {
        Self::new(v)
    }
}

impl From<&'static str> for Loaded {
    fn from(v: &'static str) -> Self {
        Self::new(v)
    }
}

impl From<&'static [u8]> for Loaded {
    fn from(v: &'static [u8]) -> Self {
        Self::new(v)
    }
}

/// A write to one group: through [`Node::write`] this node carries it out
/// across the cluster; through [`Node::write_via`] it asks another node to.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum WriteOp {
    /// The key's owner stores `value`; every other node drops its copy.
    Set {
        /// The key.
        key: Arc<str>,
        /// The value.
        value: Bytes,
        /// How long to serve it, capped by the group's TTL; `None` means
        /// the group's TTL.
        ttl: Option<Duration>,
    },
    /// Every node forgets the key, and a load of it under way when the
    /// remove arrives is not cached.
    Remove {
        /// The key.
        key: Arc<str>,
    },
    /// Every node forgets the whole group.
    Purge,
}

impl WriteOp {
    /// A set of `key` to `value`, served for `ttl` (`None`: the group's).
    pub fn set(key: &str, value: impl Into<Bytes>, ttl: Option<Duration>) -> Self {
        WriteOp::Set {
            key: key.into(),
            value: value.into(),
            ttl,
        }
    }

    /// A remove of `key`.
    pub fn remove(key: &str) -> Self {
        WriteOp::Remove { key: key.into() }
    }

    /// The key written, if the op has one.
    pub fn key(&self) -> Option<&str> {
        match self {
            WriteOp::Set { key, .. } | WriteOp::Remove { key } => Some(key),
            WriteOp::Purge => None,
        }
    }
}

/// What a write that took effect reports.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct WriteReport {
    /// Peers that could not be told, sorted: down, too slow, or not
    /// understanding writes (Go nodes). Their copies of the key live at
    /// most the group's [`GroupConfig::hot_ttl`] (Go nodes: as their own
    /// caches decide).
    pub not_reached: Vec<Arc<str>>,
}

/// What [`Node::write`] returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Written {
    /// Done at once (no other node to tell, or refused).
    Ready(Result<WriteReport, Error>),
    /// The outcome comes later as [`Output::Written`] with this id.
    Pending(WriteId),
}

/// What a loader reports for a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoadError {
    /// The key does not exist at the origin. Not cached; peers do not retry.
    NotFound(String),
    /// Any other failure, including a panic or a cancelled load.
    Failed(String),
}

/// [`Node::add_group`] was given a name already registered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("group {0:?} is already registered")]
pub struct GroupExists(pub String);

/// Why a node refuses an inbound connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Refused {
    /// The address is outside the allowlist.
    #[error("address not in the allowlist")]
    NotAllowed,
    /// Too many inbound connections.
    #[error("too many connections")]
    TooMany,
    /// Too many inbound connections from this one client address.
    #[error("too many connections from this address")]
    TooManyFromAddr,
    /// The node is shutting down.
    #[error("shutting down")]
    ShuttingDown,
}

/// Why the node closes a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CloseReason {
    /// The peer sent bytes that are not valid framing.
    Frame(FrameError),
    /// A frame that is not a valid message, or an answer nobody asked for.
    Protocol(String),
    /// The peer did not answer, connect, or finish a frame in time.
    Timeout,
    /// No real request (nor answer) on the connection for the idle timeout.
    Idle,
    /// Too many requests outstanding on one connection.
    Overloaded,
    /// The node is shutting down.
    Shutdown,
}

/// Something the driver must do.
///
/// Deliberately exhaustive: a driver must carry out every kind of output, so
/// a new one is a breaking change that the compiler points out.
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
    /// Stop the load [`Output::Load`] started (it timed out or the node is
    /// shutting down): drop its future. Reporting it afterwards is harmless.
    CancelLoad {
        /// The load.
        id: LoadId,
    },
    /// The answer to request `seq` of an inbound connection whose state a
    /// driver keeps ([`Node::accept_inbound`]): hand it to that
    /// connection's [`Inbound::handle_answer`](super::Inbound::handle_answer).
    /// Dropped if the connection is gone.
    Answer {
        /// Which connection.
        conn: ConnId,
        /// The request it answers, as [`Node::serve`] was given it.
        seq: u64,
        /// The answer.
        response: crate::wire::Response,
    },
    /// Close the connection once the bytes already sent on it are written;
    /// the node has already forgotten it.
    Close {
        /// Which.
        conn: ConnId,
        /// Why, for logs.
        reason: CloseReason,
    },
    /// A pending write finished.
    Written {
        /// The handle [`Node::write`] or [`Node::write_via`] returned.
        write: WriteId,
        /// What it reached, or why it failed.
        result: Result<WriteReport, Error>,
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
    /// Loads that ran past the group's load timeout and were cancelled.
    pub load_timeouts: u64,
    /// Loader results refused for being larger than the group's maximum.
    pub values_too_large: u64,
    /// Sets this node carried out across the cluster.
    pub sets: u64,
    /// Removes this node carried out across the cluster.
    pub removes: u64,
    /// Purges this node carried out across the cluster.
    pub purges: u64,
    /// Writes applied here at another node's request.
    pub writes_applied: u64,
    /// Peers a write this node carried out could not reach, summed.
    pub write_peers_not_reached: u64,
    /// Misses answered by a key's previous owner after a membership change
    /// (warm handoff), instead of the origin.
    pub handoff_hits: u64,
    /// Handoff requests that found nothing in time (no copy, no answer,
    /// or a peer that does not understand them); the key was loaded.
    pub handoff_misses: u64,
    /// The main cache.
    pub main: CacheStats,
    /// The hot cache.
    pub hot: CacheStats,
}
