//! Configuring and starting a node.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use groupcache_core::node::{self as core, Config, GroupConfig};

use super::shared::Shared;
use super::tasks::accept_loop;
use super::watch::{discovery_loop, Watch};
use super::{Node, StartError};
use crate::discovery::{recognise_self, Discovery};
use crate::loader::Loader;
use crate::pages::{PageConfig, PageLoader, PageSource, Paged};
use crate::runtime::timeout;
use crate::runtime::Runtime;
use crate::transport::Tls;

/// Configures and starts a [`Node`].
///
/// ```no_run
/// # async fn demo<R: groupcache_driver::Runtime>(rt: R) -> Result<(), Box<dyn std::error::Error>> {
/// use std::time::Duration;
/// use groupcache_driver::{Builder, LoadError};
///
/// let node = Builder::with_runtime(rt)
///     .listen("127.0.0.1:8001".parse()?)
///     .peers(["127.0.0.1:8001", "127.0.0.1:8002"])
///     .group("score", 2 << 10, Some(Duration::from_secs(1024)), |key: String| async move {
///         if key == "Tom" { Ok("630") } else { Err(LoadError::NotFound(format!("{key} not exist"))) }
///     })
///     .start()
///     .await?;
/// let score = node.get("score", "Tom").await?;
/// # Ok(()) }
/// ```
pub struct Builder<R: Runtime> {
    pub(super) rt: R,
    pub(super) listen: SocketAddr,
    pub(super) self_addr: Option<String>,
    pub(super) peers: Option<Vec<String>>,
    pub(super) groups: Vec<(GroupConfig, Arc<dyn Loader>)>,
    pub(super) paged: HashMap<String, Arc<Paged>>,
    pub(super) cfg: Config,
    pub(super) shutdown_timeout: Duration,
    pub(super) discovery: Option<Arc<dyn Discovery>>,
    pub(super) discovery_interval: Duration,
    pub(super) accept_on: Vec<R>,
    pub(super) tls: Option<Tls>,
}

impl<R: Runtime + Default> Builder<R> {
    /// A node on the runtime `R::default()` picks (the current one).
    #[allow(clippy::new_without_default)]
    pub fn new() -> Self {
        Self::with_runtime(R::default())
    }
}

impl<R: Runtime> Builder<R> {
    /// A node on runtime `rt` listening on 127.0.0.1 with a port chosen by
    /// the OS, with the core's default timeouts and limits.
    pub fn with_runtime(rt: R) -> Self {
        Self {
            rt,
            listen: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0),
            self_addr: None,
            peers: None,
            groups: Vec::new(),
            paged: HashMap::new(),
            cfg: Config::default(),
            shutdown_timeout: Duration::from_secs(5),
            discovery: None,
            discovery_interval: Duration::from_secs(30),
            accept_on: Vec::new(),
            tls: None,
        }
    }

    /// Address to serve peers on.
    pub fn listen(mut self, addr: SocketAddr) -> Self {
        self.listen = addr;
        self
    }

    /// This node's name in peer lists (default: the bound address, e.g.
    /// `127.0.0.1:8001`). Set it when peers reach this node by another name.
    pub fn self_addr(mut self, addr: impl Into<String>) -> Self {
        self.self_addr = Some(addr.into());
        self
    }

    /// The cluster's members, this node included (default: this node alone).
    pub fn peers<I, S>(mut self, peers: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.peers = Some(peers.into_iter().map(Into::into).collect());
        self
    }

    /// Learns the members from `d` instead of a fixed list: asked once
    /// before the node starts serving, then every
    /// [`discovery_interval`](Builder::discovery_interval). A round that
    /// fails or finds nobody keeps the last good list (and is logged). The
    /// node finds itself in the answers by its
    /// [`self_addr`](Builder::self_addr), or else by its listen address
    /// (any address of this machine at its port when it listens on all of
    /// them), and takes that as its name on the ring. Replaces
    /// [`Builder::peers`]. DNS discovery needs the `dns` feature.
    ///
    /// ```no_run
    /// # #[cfg(feature = "dns")]
    /// # async fn demo<R: groupcache_driver::Runtime>(rt: R) -> Result<(), Box<dyn std::error::Error>> {
    /// use groupcache_driver::{Builder, DnsConfig, DnsDiscovery, PeerSource};
    ///
    /// let sources = PeerSource::parse_all(["dns+groupcache.default.svc.cluster.local:8000"])?;
    /// let node = Builder::with_runtime(rt)
    ///     .listen("0.0.0.0:8000".parse()?)
    ///     .discovery(DnsDiscovery::new(sources, DnsConfig::default())?)
    ///     .group("score", 1 << 20, None, |key: String| async move { Ok(key) })
    ///     .start()
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn discovery(mut self, d: impl Discovery) -> Self {
        self.discovery = Some(Arc::new(d));
        self
    }

    /// Speaks mutual TLS 1.3 on every connection: the peer port requires
    /// and verifies client certificates against the CA, and connections to
    /// peers verify theirs and present this node's. Handshakes are cut off
    /// at the connect timeout. Go nodes cannot speak TLS: a cluster with Go
    /// members stays plaintext.
    #[cfg(feature = "tls")]
    pub fn tls(mut self, tls: Tls) -> Self {
        self.tls = Some(tls);
        self
    }

    /// How often discovery is asked again (default 30 s).
    pub fn discovery_interval(mut self, d: Duration) -> Self {
        self.discovery_interval = d.max(Duration::from_millis(10));
        self
    }

    /// The node's settings, whole: ring, timeouts, connection budgets,
    /// backpressure, allowlist and handoff ([`Config`], whose docs give
    /// each default). Its `self_addr` is not used: the node's name is
    /// [`Builder::self_addr`], or its listen address.
    ///
    /// ```
    /// # fn demo<R: groupcache_driver::Runtime>(rt: R) {
    /// use std::time::Duration;
    /// use groupcache_driver::{Builder, Config};
    ///
    /// let b = Builder::with_runtime(rt).config(Config {
    ///     request_timeout: Duration::from_secs(2),
    ///     max_inbound: 4096,
    ///     ..Config::default()
    /// });
    /// # }
    /// ```
    pub fn config(mut self, cfg: Config) -> Self {
        self.cfg = cfg;
        self
    }

    /// Changes some of the node's settings ([`Config`]) in place, keeping
    /// the others: `builder.configure(|c| c.request_timeout = Duration::from_secs(2))`.
    pub fn configure(mut self, change: impl FnOnce(&mut Config)) -> Self {
        change(&mut self.cfg);
        self
    }

    /// Adds a group: a name, a byte budget, how long values live (`None`:
    /// until evicted) and the loader that fetches missing keys.
    pub fn group(
        self,
        name: impl Into<String>,
        max_bytes: usize,
        ttl: Option<Duration>,
        loader: impl Loader,
    ) -> Self {
        let mut g = GroupConfig::new(name, max_bytes);
        g.ttl = ttl;
        self.group_config(g, loader)
    }

    /// Adds a group with every setting of [`GroupConfig`] (hot cache size).
    pub fn group_config(mut self, group: GroupConfig, loader: impl Loader) -> Self {
        self.groups.push((group, Arc::new(loader)));
        self
    }

    /// Adds a group whose values are objects read in pages
    /// ([`PageConfig`]): each page is one key, loaded from `source` with
    /// one ranged read, so objects of any size are cached in pieces no
    /// larger than a page. Read them with [`crate::Group::get_range`]; a
    /// plain [`crate::Group::get`] returns an object that fits in one page.
    ///
    /// ```no_run
    /// # async fn demo<R: groupcache_driver::Runtime>(rt: R, source: impl groupcache_driver::PageSource) -> Result<(), Box<dyn std::error::Error>> {
    /// use groupcache_driver::{Builder, GroupConfig, PageConfig};
    ///
    /// let node = Builder::with_runtime(rt)
    ///     .paged_group(GroupConfig::new("objects", 256 << 20), PageConfig::new(1 << 20), source)
    ///     .start()
    ///     .await?;
    /// let bytes = node.group("objects").unwrap().get_range("videos/a.mp4", 0..4096).await?;
    /// # Ok(()) }
    /// ```
    pub fn paged_group(
        mut self,
        mut group: GroupConfig,
        pages: PageConfig,
        source: impl PageSource,
    ) -> Self {
        let source: Arc<dyn PageSource> = Arc::new(source);
        // A page is a value: the node must be able to hold and send one.
        let pages = PageConfig {
            page_size: pages.page_size.min(group.max_value as u64).max(1),
            ..pages
        };
        group.max_value = group.max_value.min(pages.page_size as usize);
        let loader = PageLoader {
            source: source.clone(),
            page_size: pages.page_size,
        };
        self.paged.insert(
            group.name.clone(),
            Arc::new(Paged::new(pages, source, group.load_timeout)),
        );
        self.group_config(group, loader)
    }

    /// Accepts on one listener per runtime in `runtimes`, all bound to the
    /// listen address with `SO_REUSEPORT` (Linux spreads new connections
    /// over them), each runtime running its listener's accept loop and the
    /// connections it accepts. Given one single-threaded runtime per core,
    /// this is thread-per-core serving: a connection's task never moves
    /// between threads and no worker steals it. Timers, loads and outgoing
    /// connections stay on the builder's runtime.
    ///
    /// Empty (the default): one listener, on the builder's runtime.
    /// Any other process of the same user may bind the same port with
    /// `SO_REUSEPORT` too and take a share of the connections.
    pub fn accept_on(mut self, runtimes: impl IntoIterator<Item = R>) -> Self {
        self.accept_on = runtimes.into_iter().collect();
        self
    }

    /// How long [`Node::shutdown`] waits for requests in flight (default 5 s).
    pub fn shutdown_timeout(mut self, d: Duration) -> Self {
        self.shutdown_timeout = d;
        self
    }

    /// Binds the listener and starts serving in the background.
    pub async fn start(self) -> Result<Node<R>, StartError> {
        let bind_error = |source| StartError::Bind {
            addr: self.listen,
            source,
        };
        let listeners = if self.accept_on.is_empty() {
            let listener = self.rt.bind(self.listen).await.map_err(bind_error)?;
            vec![(self.rt.clone(), listener)]
        } else {
            bind_reuse_port(self.accept_on, self.listen).map_err(bind_error)?
        };
        let local = self.rt.local_addr(&listeners[0].1).map_err(bind_error)?;
        let mut cfg = self.cfg;
        cfg.self_addr = self.self_addr.unwrap_or_else(|| local.to_string());
        if cfg.cache_shards == 0 {
            cfg.cache_shards = default_cache_shards();
        }
        let mut peers = self.peers.unwrap_or_else(|| vec![cfg.self_addr.clone()]);
        if let Some(d) = &self.discovery {
            // The first round decides this node's name; until one succeeds
            // the node is alone.
            let first = timeout(&self.rt, self.discovery_interval, d.members()).await;
            peers = vec![cfg.self_addr.clone()];
            match first {
                Some(Ok(m)) if !m.is_empty() => {
                    let (m, me) = recognise_self(m, &cfg.self_addr, local);
                    cfg.self_addr = me.unwrap_or(cfg.self_addr);
                    peers = m;
                }
                Some(Ok(_)) => tracing::warn!("discovery found no members; starting alone"),
                Some(Err(e)) => tracing::warn!(error = %e, "discovery failed; starting alone"),
                None => tracing::warn!("discovery did not answer in time; starting alone"),
            }
        }
        let self_addr = cfg.self_addr.clone();
        let mut node = core::Node::new(cfg);
        node.set_peers(self.rt.now(), &peers);
        let mut loaders = hashbrown::HashMap::new();
        for (g, loader) in self.groups {
            loaders.insert(g.name.clone(), loader);
            node.add_group(g)?;
        }
        let (stop_tx, stop_rx) = async_channel::bounded::<()>(1);
        let (shared, idle_rx) = Shared::start(self.rt.clone(), self.tls, node, loaders);
        if let Some(d) = self.discovery {
            let watch = Watch {
                discovery: d,
                interval: self.discovery_interval,
                listen: local,
                last: peers,
            };
            self.rt
                .spawn(discovery_loop(shared.clone(), watch, stop_rx.clone()));
        }
        for (rt, listener) in listeners {
            rt.spawn(accept_loop(
                shared.clone(),
                rt.clone(),
                listener,
                stop_rx.clone(),
            ));
        }
        tracing::debug!(%local, self_addr, "groupcache node started");
        Ok(Node {
            shared,
            local,
            stop: stop_tx,
            idle: idle_rx,
            shutdown_timeout: self.shutdown_timeout,
            paged: Arc::new(self.paged),
        })
    }
}

/// Four cache shards per core, as quick_cache has: threads hitting at
/// random rarely meet on one. At most 64: past that, a group's budget is
/// cut into shards that turn over too fast.
fn default_cache_shards() -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    (cores * 4).min(64)
}

/// One listener per runtime, all on `addr` with `SO_REUSEPORT`; a port 0 is
/// the one the OS gives the first.
fn bind_reuse_port<R: Runtime>(
    runtimes: Vec<R>,
    mut addr: SocketAddr,
) -> std::io::Result<Vec<(R, R::Listener)>> {
    use socket2::{Domain, Socket, Type};
    let mut out = Vec::with_capacity(runtimes.len());
    for rt in runtimes {
        let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
        // As the standard library's bind does: a restarted node can listen
        // at once, past connections of its last run in TIME_WAIT.
        socket.set_reuse_address(true)?;
        socket.set_reuse_port(true)?;
        socket.bind(&addr.into())?;
        socket.listen(1024)?;
        let listener: std::net::TcpListener = socket.into();
        addr = listener.local_addr()?;
        out.push((rt.clone(), rt.adopt_listener(listener)?));
    }
    Ok(out)
}
