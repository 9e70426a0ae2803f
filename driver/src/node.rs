//! A running node: the core state machine behind a mutex, driven by tasks
//! that move bytes, run loaders and keep time. Every decision is the core's;
//! this file only carries out its outputs.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::panic::AssertUnwindSafe;
use std::pin::pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use async_channel::{Receiver, Sender};
use atomic_waker::AtomicWaker;
use bytes::Bytes;
use futures_lite::future::{poll_fn, poll_once};
use futures_lite::{AsyncReadExt, AsyncWrite, AsyncWriteExt, FutureExt};
use groupcache_core::node::{
    self as core, Config, ConnId, Get, GetId, GroupConfig, GroupStats, LoadError, LoadId, Output,
};
use groupcache_core::ring::HashFn;
use groupcache_core::wire::SHARE_VALUE_MIN;
use ipnet::IpNet;

use crate::loader::Loader;
use crate::runtime::{timeout, Runtime};
use crate::Error;

/// Bytes read from a socket at a time. Frames larger than this arrive over
/// several reads; the claimed length of a frame is never allocated up front.
const READ_CHUNK: usize = 16 * 1024;

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        source: io::Error,
    },
    /// The configuration is inconsistent (for example a group named twice).
    #[error("invalid configuration: {0}")]
    Config(String),
}

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
    rt: R,
    listen: SocketAddr,
    self_addr: Option<String>,
    peers: Option<Vec<String>>,
    groups: Vec<(GroupConfig, Arc<dyn Loader>)>,
    cfg: Config,
    shutdown_timeout: Duration,
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
            cfg: Config::new(""),
            shutdown_timeout: Duration::from_secs(5),
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

    /// Ring points per peer (default 50, as the original).
    pub fn replicas(mut self, n: usize) -> Self {
        self.cfg.replicas = n;
        self
    }

    /// Ring hash (default CRC-32 IEEE, as the original).
    pub fn hash(mut self, f: HashFn) -> Self {
        self.cfg.hash = f;
        self
    }

    /// Time allowed to connect to a peer (default 1 s).
    pub fn connect_timeout(mut self, d: Duration) -> Self {
        self.cfg.connect_timeout = d;
        self
    }

    /// Time allowed for a peer to answer, for a client to send a whole frame,
    /// and for a write to complete (default 3 s).
    pub fn request_timeout(mut self, d: Duration) -> Self {
        self.cfg.request_timeout = d;
        self
    }

    /// Idle connections close after this long (default 60 s).
    pub fn idle_timeout(mut self, d: Duration) -> Self {
        self.cfg.idle_timeout = d;
        self
    }

    /// Largest frame payload accepted (default 4 MiB).
    pub fn max_frame(mut self, bytes: usize) -> Self {
        self.cfg.max_frame = bytes;
        self
    }

    /// Inbound connections at most from clients, that is from addresses
    /// that are not in the peer list (default 1024).
    pub fn max_connections(mut self, n: usize) -> Self {
        self.cfg.max_inbound = n;
        self
    }

    /// Inbound connections at most from one client address (default 256),
    /// so one address cannot take every client slot.
    pub fn max_connections_per_addr(mut self, n: usize) -> Self {
        self.cfg.max_inbound_per_addr = n;
        self
    }

    /// Inbound connections at most from the peers' addresses (default
    /// 1024): a budget of their own that clients cannot use up. Peers are
    /// recognised by the IP address of their peer-list entries.
    pub fn max_peer_connections(mut self, n: usize) -> Self {
        self.cfg.max_peer_inbound = n;
        self
    }

    /// Answer bytes queued on one connection, unread by its client, past
    /// which the node stops reading that connection's requests (default
    /// 8 MiB).
    pub fn max_unwritten(mut self, bytes: usize) -> Self {
        self.cfg.max_unwritten = bytes;
        self
    }

    /// How long a peer that refused a connection or let a request time out
    /// is left alone before it is probed (default 1 s).
    pub fn peer_backoff(mut self, d: Duration) -> Self {
        self.cfg.peer_backoff = d;
        self
    }

    /// Connections to one peer at most (default 8).
    pub fn max_conns_per_peer(mut self, n: usize) -> Self {
        self.cfg.max_conns_per_peer = n.max(1);
        self
    }

    /// Only these networks (IPv4 and IPv6) may connect to the peer port.
    pub fn allow(mut self, nets: impl IntoIterator<Item = IpNet>) -> Self {
        self.cfg.allow = Some(nets.into_iter().collect());
        self
    }

    /// How long [`Node::shutdown`] waits for requests in flight (default 5 s).
    pub fn shutdown_timeout(mut self, d: Duration) -> Self {
        self.shutdown_timeout = d;
        self
    }

    /// Binds the listener and starts serving in the background.
    pub async fn start(self) -> Result<Node<R>, StartError> {
        let listener = self
            .rt
            .bind(self.listen)
            .await
            .map_err(|source| StartError::Bind {
                addr: self.listen,
                source,
            })?;
        let local = self
            .rt
            .local_addr(&listener)
            .map_err(|source| StartError::Bind {
                addr: self.listen,
                source,
            })?;
        let mut cfg = self.cfg;
        cfg.self_addr = self.self_addr.unwrap_or_else(|| local.to_string());
        let peers = self.peers.unwrap_or_else(|| vec![cfg.self_addr.clone()]);
        let write_timeout = cfg.request_timeout;
        let self_addr = cfg.self_addr.clone();
        let mut node = core::Node::new(cfg);
        node.set_peers(&peers);
        let mut loaders = HashMap::new();
        for (g, loader) in self.groups {
            loaders.insert(g.name.clone(), loader);
            node.add_group(g).map_err(StartError::Config)?;
        }
        let (wake_tx, wake_rx) = async_channel::bounded(1);
        let (stop_tx, stop_rx) = async_channel::bounded::<()>(1);
        let (idle_tx, idle_rx) = async_channel::bounded(1);
        let shared = Arc::new(Shared {
            rt: self.rt.clone(),
            state: Mutex::new(State {
                node,
                conns: HashMap::new(),
                gets: HashMap::new(),
                loads: HashMap::new(),
                timer_at: None,
                shutting_down: false,
            }),
            loaders,
            wake: wake_tx,
            idle: idle_tx,
            write_timeout,
            live: Live::default(),
        });
        self.rt.spawn(timer_loop(shared.clone(), wake_rx));
        self.rt
            .spawn(accept_loop(shared.clone(), listener, stop_rx));
        tracing::debug!(%local, self_addr, "groupcache node started");
        Ok(Node {
            shared,
            local,
            stop: stop_tx,
            idle: idle_rx,
            shutdown_timeout: self.shutdown_timeout,
        })
    }
}

/// Bytes queued for one connection, in order: small pieces copied into one
/// buffer, large values kept as the cache's shared buffers (never copied).
#[derive(Default)]
struct Chunks {
    bufs: VecDeque<Bytes>,
    /// Bytes after the last of `bufs`.
    tail: Vec<u8>,
}

impl Chunks {
    fn is_empty(&self) -> bool {
        self.bufs.is_empty() && self.tail.is_empty()
    }

    fn len(&self) -> usize {
        self.bufs.iter().map(Bytes::len).sum::<usize>() + self.tail.len()
    }

    fn push(&mut self, data: Bytes) {
        if data.len() >= SHARE_VALUE_MIN {
            self.seal();
            self.bufs.push_back(data);
        } else {
            self.tail.extend_from_slice(&data);
        }
    }

    fn seal(&mut self) {
        if !self.tail.is_empty() {
            self.bufs
                .push_back(Bytes::from(std::mem::take(&mut self.tail)));
        }
    }

    /// Moves everything of `other` to the end of `self`. The common case,
    /// small answers only, swaps buffers and allocates nothing.
    fn append(&mut self, other: &mut Chunks) {
        if !other.bufs.is_empty() {
            self.seal();
            self.bufs.append(&mut other.bufs);
        }
        if self.tail.is_empty() {
            std::mem::swap(&mut self.tail, &mut other.tail);
        } else {
            self.tail.extend_from_slice(&other.tail);
            other.tail.clear();
        }
    }

    fn clear(&mut self) {
        self.bufs.clear();
        self.tail.clear();
    }

    async fn write_to<W: AsyncWrite + Unpin>(&self, w: &mut W) -> io::Result<()> {
        for b in &self.bufs {
            w.write_all(b).await?;
        }
        w.write_all(&self.tail).await?;
        w.flush().await
    }
}

/// Bytes the core sends on one connection, waiting for its task to write
/// them. A mutex-guarded queue and a waker: small answers allocate nothing.
#[derive(Default)]
struct Outbox {
    /// Pending bytes, and whether the core has dropped the connection.
    state: Mutex<(Chunks, bool)>,
    waker: AtomicWaker,
}

impl Outbox {
    fn lock(&self) -> MutexGuard<'_, (Chunks, bool)> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn push(&self, data: Bytes) {
        self.lock().0.push(data);
        self.waker.wake();
    }

    fn close(&self) {
        self.lock().1 = true;
        self.waker.wake();
    }

    /// Moves the pending bytes to the end of `out`, keeping both buffers'
    /// capacity; returns whether the connection is closed.
    fn take(&self, out: &mut Chunks) -> bool {
        let mut s = self.lock();
        out.append(&mut s.0);
        s.1
    }

    /// Ready when there are bytes to write (moved into `out`) or the
    /// connection is closed.
    fn poll_ready(&self, cx: &mut Context<'_>, out: &mut Chunks) -> Poll<()> {
        self.waker.register(cx.waker());
        let closed = self.take(out);
        if closed || !out.is_empty() {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

/// The core's hold on a connection: dropping it closes the connection once
/// its pending bytes are written (or abandons a connect in progress).
struct ConnHandle(Arc<Outbox>);

impl Drop for ConnHandle {
    fn drop(&mut self) {
        self.0.close();
    }
}

struct State {
    node: core::Node,
    conns: HashMap<ConnId, ConnHandle>,
    gets: HashMap<GetId, Sender<Result<Bytes, Error>>>,
    /// Loads running; dropping a sender cancels its load.
    loads: HashMap<LoadId, Sender<()>>,
    timer_at: Option<Instant>,
    /// Set by [`Node::shutdown`]: only then is idleness worth checking.
    shutting_down: bool,
}

impl State {
    /// Gives a new connection its outbox; the core's hold on it is the
    /// handle kept here.
    fn open(&mut self, conn: ConnId) -> Arc<Outbox> {
        let outbox = Arc::new(Outbox::default());
        self.conns.insert(conn, ConnHandle(outbox.clone()));
        outbox
    }
}

/// Work that must happen outside the lock: spawning tasks.
enum Action {
    Load(LoadId, Arc<str>, Arc<str>, Receiver<()>),
    Connect(ConnId, Arc<str>, Arc<Outbox>),
}

struct Shared<R: Runtime> {
    rt: R,
    state: Mutex<State>,
    loaders: HashMap<String, Arc<dyn Loader>>,
    wake: Sender<()>,
    idle: Sender<()>,
    write_timeout: Duration,
    live: Live,
}

impl<R: Runtime> Shared<R> {
    fn lock(&self) -> MutexGuard<'_, State> {
        // The core never panics while the lock is held; if it ever did, its
        // state is still the best there is.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Feeds one input to the core and carries out what it asks.
    fn input<T>(self: &Arc<Self>, f: impl FnOnce(&mut core::Node, Instant) -> T) -> T {
        let mut st = self.lock();
        let out = f(&mut st.node, self.rt.now());
        self.drain(st);
        out
    }

    /// Carries out the core's outputs: cheap ones under the lock, spawns
    /// after it is released.
    fn drain(self: &Arc<Self>, mut st: MutexGuard<'_, State>) {
        let mut actions = Vec::new();
        while let Some(o) = st.node.poll_output() {
            match o {
                Output::Send { conn, data } => {
                    if let Some(c) = st.conns.get(&conn) {
                        c.0.push(data);
                    }
                }
                Output::Close { conn, reason } => {
                    tracing::debug!(%conn, ?reason, "closing connection");
                    st.conns.remove(&conn);
                }
                Output::Done { get, result } => {
                    if let Some(tx) = st.gets.remove(&get) {
                        let _ = tx.try_send(result);
                    }
                }
                Output::Load { id, group, key } => {
                    // Dropping the sender cancels the load.
                    let (cancel, cancelled) = async_channel::bounded(1);
                    st.loads.insert(id, cancel);
                    actions.push(Action::Load(id, group, key, cancelled));
                }
                Output::CancelLoad { id } => {
                    st.loads.remove(&id);
                }
                Output::Connect { conn, addr } => {
                    let outbox = st.open(conn);
                    actions.push(Action::Connect(conn, addr, outbox));
                }
            }
        }
        let next = st.node.poll_timeout();
        if next.is_some() && (st.timer_at.is_none() || next < st.timer_at) {
            st.timer_at = next;
            let _ = self.wake.try_send(());
        }
        if st.shutting_down && st.node.is_idle() {
            let _ = self.idle.try_send(());
        }
        drop(st);
        for a in actions {
            match a {
                Action::Load(id, group, key, cancelled) => {
                    self.spawn_load(id, group, key, cancelled)
                }
                Action::Connect(conn, addr, outbox) => {
                    self.rt
                        .spawn(connect(self.clone(), conn, addr.to_string(), outbox));
                }
            }
        }
    }

    fn spawn_load(
        self: &Arc<Self>,
        id: LoadId,
        group: Arc<str>,
        key: Arc<str>,
        cancelled: Receiver<()>,
    ) {
        let Some(loader) = self.loaders.get(&*group).cloned() else {
            let err = LoadError::Failed(format!("no loader for group {group:?}"));
            self.finish_load(id, Err(err));
            return;
        };
        let mut guard = LoadGuard {
            shared: Some(self.clone()),
            id,
        };
        self.rt.spawn(async move {
            let name = key.to_string();
            let load = AssertUnwindSafe(async move { loader.load(name).await }).catch_unwind();
            let result = async { Some(load.await) }
                .or(async {
                    // Ends when the core cancels the load (sender dropped).
                    let _ = cancelled.recv().await;
                    None
                })
                .await;
            let result = match result {
                None => Err(LoadError::Failed(format!("{group}/{key}: load cancelled"))),
                Some(Ok(r)) => r,
                Some(Err(panic)) => {
                    let msg = panic
                        .downcast_ref::<&str>()
                        .map(|s| s.to_string())
                        .or_else(|| panic.downcast_ref::<String>().cloned())
                        .unwrap_or_else(|| "non-string panic".into());
                    tracing::warn!(%group, %key, "loader panicked: {msg}");
                    Err(LoadError::Failed(format!(
                        "{group}/{key}: loader panicked: {msg}"
                    )))
                }
            };
            guard.finish(result);
        });
    }

    /// Reports a load's outcome to the core.
    fn finish_load(self: &Arc<Self>, id: LoadId, result: Result<Bytes, LoadError>) {
        let mut st = self.lock();
        st.loads.remove(&id);
        let now = self.rt.now();
        st.node.handle_load(now, id, result);
        self.drain(st);
    }

    fn register(self: &Arc<Self>, st: &mut State, conn: ConnId, r: R::Reader, w: R::Writer) {
        let outbox = st.open(conn);
        self.spawn_io(conn, r, w, outbox);
    }

    fn spawn_io(self: &Arc<Self>, conn: ConnId, r: R::Reader, w: R::Writer, outbox: Arc<Outbox>) {
        self.rt.spawn(conn_loop(self.clone(), conn, r, w, outbox));
    }
}

/// Reports a load exactly once: with its result, or as failed if the task
/// is dropped first (runtime shutting down), so the key is never wedged.
struct LoadGuard<R: Runtime> {
    shared: Option<Arc<Shared<R>>>,
    id: LoadId,
}

impl<R: Runtime> LoadGuard<R> {
    fn finish(&mut self, result: Result<Bytes, LoadError>) {
        if let Some(s) = self.shared.take() {
            s.finish_load(self.id, result);
        }
    }
}

impl<R: Runtime> Drop for LoadGuard<R> {
    fn drop(&mut self) {
        self.finish(Err(LoadError::Failed("load cancelled".into())));
    }
}

async fn timer_loop<R: Runtime>(shared: Arc<Shared<R>>, wake: Receiver<()>) {
    loop {
        let at = {
            let mut st = shared.lock();
            st.timer_at = st.node.poll_timeout();
            st.timer_at
        };
        // With nothing scheduled, sleep until woken.
        let d = at.map_or(Duration::from_secs(3600), |t| {
            t.saturating_duration_since(shared.rt.now())
        });
        let stopped = async {
            shared.rt.sleep(d).await;
            false
        }
        .or(async { wake.recv().await.is_err() })
        .await;
        if stopped {
            return;
        }
        shared.input(|n, now| n.handle_timeout(now));
    }
}

async fn accept_loop<R: Runtime>(
    shared: Arc<Shared<R>>,
    listener: R::Listener,
    stop: Receiver<()>,
) {
    loop {
        let accepted = async { Some(shared.rt.accept(&listener).await) }
            .or(async {
                let _ = stop.recv().await;
                None
            })
            .await;
        match accepted {
            None => return,
            Some(Err(e)) => {
                // Out of descriptors or similar: back off rather than spin.
                tracing::warn!("accept failed: {e}");
                shared.rt.sleep(Duration::from_millis(50)).await;
            }
            Some(Ok((r, w, peer))) => {
                let mut st = shared.lock();
                let now = shared.rt.now();
                match st.node.accept(now, peer.ip()) {
                    Ok(conn) => {
                        shared.register(&mut st, conn, r, w);
                        shared.drain(st);
                    }
                    Err(why) => tracing::debug!(%peer, "refused connection: {why}"),
                }
            }
        }
    }
}

async fn connect<R: Runtime>(
    shared: Arc<Shared<R>>,
    conn: ConnId,
    addr: String,
    outbox: Arc<Outbox>,
) {
    // The core enforces the connect timeout: when it gives up it drops the
    // handle, which closes the outbox and ends this attempt.
    let mut nothing = Chunks::default();
    let attempt = async { Some(shared.rt.connect(addr.clone()).await) }
        .or(async {
            poll_fn(|cx| outbox.poll_ready(cx, &mut nothing)).await;
            None
        })
        .await;
    match attempt {
        None => {}
        Some(Ok((r, w))) => {
            shared.input(|n, now| n.handle_connected(now, conn));
            shared.spawn_io(conn, r, w, outbox);
        }
        Some(Err(e)) => {
            tracing::debug!(%conn, addr, "connect failed: {e}");
            shared.input(|n, now| n.handle_closed(now, conn));
        }
    }
}

/// One task per connection. It feeds what it reads to the core and writes
/// what the core sends on this connection; an answer to a request read here
/// is written by the same task, without waking another. It reports what it
/// wrote, and reads nothing while the core says the client has too many
/// answers unread (backpressure). Ends when the core drops the connection
/// (after its queued bytes are written), or on EOF, an IO error or a
/// stalled write.
async fn conn_loop<R: Runtime>(
    shared: Arc<Shared<R>>,
    conn: ConnId,
    mut r: R::Reader,
    mut w: R::Writer,
    outbox: Arc<Outbox>,
) {
    enum Event {
        Read(io::Result<usize>),
        Write,
    }
    let _live = shared.live.enter();
    let mut buf = vec![0u8; READ_CHUNK];
    let mut out = Chunks::default();
    let mut paused = false;
    // Bytes written and not yet reported: they ride along with the next
    // input, so the common request/answer turn takes the lock once.
    let mut unreported = 0;
    loop {
        let write = async {
            poll_fn(|cx| outbox.poll_ready(cx, &mut out)).await;
            Event::Write
        };
        let event = if paused {
            write.await
        } else {
            async { Event::Read(r.read(&mut buf).await) }
                .or(write)
                .await
        };
        if let Event::Read(read) = event {
            match read {
                Ok(0) | Err(_) => {
                    shared.input(|n, now| n.handle_closed(now, conn));
                    return;
                }
                Ok(len) => {
                    // This task writes whatever the input produces right
                    // below: pushes to its outbox need not wake it.
                    drop(outbox.waker.take());
                    let written = std::mem::take(&mut unreported);
                    paused = !shared.input(|n, now| {
                        if written > 0 {
                            n.handle_written(now, conn, written);
                        }
                        n.handle_data(now, conn, &buf[..len]);
                        n.wants_read(conn)
                    });
                }
            }
        }
        // Whatever the core queued, answers to what was just read included.
        let closed = outbox.take(&mut out);
        if !out.is_empty() {
            let wrote = {
                let mut write = pin!(out.write_to(&mut w));
                // Most writes complete at once: only arm a timer for one
                // that has to wait for the peer to read.
                match poll_once(&mut write).await {
                    Some(done) => Some(done),
                    None => timeout(&shared.rt, shared.write_timeout, write).await,
                }
            };
            if !matches!(wrote, Some(Ok(()))) {
                shared.input(|n, now| n.handle_closed(now, conn));
                return;
            }
            unreported += out.len();
            out.clear();
        }
        if closed {
            let _ = w.close().await;
            return;
        }
        if paused && unreported > 0 {
            let written = std::mem::take(&mut unreported);
            paused = !shared.input(|n, now| {
                n.handle_written(now, conn, written);
                n.wants_read(conn)
            });
        }
    }
}

/// Counts the connection tasks still running, so that shutdown can wait for
/// their last answers to be written.
#[derive(Default)]
struct Live {
    count: AtomicUsize,
    ended: event_listener::Event,
}

impl Live {
    fn enter(&self) -> LiveGuard<'_> {
        self.count.fetch_add(1, Ordering::SeqCst);
        LiveGuard(self)
    }

    async fn all_ended(&self) {
        loop {
            let listener = self.ended.listen();
            if self.count.load(Ordering::SeqCst) == 0 {
                return;
            }
            listener.await;
        }
    }
}

struct LiveGuard<'a>(&'a Live);

impl Drop for LiveGuard<'_> {
    fn drop(&mut self) {
        self.0.count.fetch_sub(1, Ordering::SeqCst);
        self.0.ended.notify(usize::MAX);
    }
}

/// A running groupcache node. Cloning it is cheap; every clone is the same
/// node.
#[derive(Clone)]
pub struct Node<R: Runtime> {
    shared: Arc<Shared<R>>,
    local: SocketAddr,
    stop: Sender<()>,
    idle: Receiver<()>,
    shutdown_timeout: Duration,
}

impl<R: Runtime> std::fmt::Debug for Node<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node").field("local", &self.local).finish()
    }
}

impl<R: Runtime> Node<R> {
    /// The address the peer port is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// This node's name in peer lists.
    pub fn self_addr(&self) -> String {
        self.shared.lock().node.config().self_addr.clone()
    }

    /// Gets `key` of `group`: from this node's caches, from its owner, or by
    /// loading it. A hit takes one lock and one hash lookup.
    pub async fn get(&self, group: &str, key: &str) -> Result<Bytes, Error> {
        let rx = {
            let mut st = self.shared.lock();
            let now = self.shared.rt.now();
            match st.node.get(now, group, key) {
                Get::Ready(r) => return r,
                Get::Pending(id) => {
                    let (tx, rx) = async_channel::bounded(1);
                    st.gets.insert(id, tx);
                    self.shared.drain(st);
                    rx
                }
            }
        };
        rx.recv().await.unwrap_or(Err(Error::Shutdown))
    }

    /// A handle on one group, for repeated gets.
    pub fn group(&self, name: &str) -> Option<Group<R>> {
        let st = self.shared.lock();
        st.node.stats(name)?;
        Some(Group {
            node: self.clone(),
            name: name.into(),
        })
    }

    /// Replaces the cluster's members (this node included). Gets under way
    /// finish; new ones follow the new ring.
    pub fn set_peers<I, S>(&self, peers: I)
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        self.shared.lock().node.set_peers(peers);
    }

    /// The member that owns `key`.
    pub fn owner(&self, key: &str) -> Option<String> {
        self.shared.lock().node.owner(key).map(str::to_string)
    }

    /// Counters of a group.
    pub fn stats(&self, group: &str) -> Option<GroupStats> {
        self.shared.lock().node.stats(group)
    }

    /// Names of the groups.
    pub fn groups(&self) -> Vec<String> {
        let st = self.shared.lock();
        st.node.group_names().map(str::to_string).collect()
    }

    /// Stops accepting, lets requests in flight finish (at most the shutdown
    /// timeout), then answers every request still open with a shutdown
    /// error, cancels loads still running, and closes every connection once
    /// its answers are written (each write bounded by the request timeout).
    pub async fn shutdown(&self) {
        let _ = self.stop.try_send(());
        self.stop.close();
        self.shared.lock().shutting_down = true;
        self.shared.input(|n, now| n.shutdown(now));
        let rt = self.shared.rt.clone();
        let idle = self.idle.clone();
        let shared = self.shared.clone();
        let drained = timeout(&rt, self.shutdown_timeout, async move {
            while !shared.lock().node.is_idle() {
                if idle.recv().await.is_err() {
                    break;
                }
            }
        })
        .await;
        if drained.is_none() {
            tracing::warn!(
                "shutdown timed out with requests in flight: answering them with errors"
            );
        }
        self.shared.input(|n, now| n.abort(now));
        {
            let mut st = self.shared.lock();
            st.conns.clear();
            for (_, tx) in st.gets.drain() {
                let _ = tx.try_send(Err(Error::Shutdown));
            }
        }
        let flushed = timeout(&rt, self.shared.write_timeout, self.shared.live.all_ended()).await;
        if flushed.is_none() {
            tracing::warn!("shutdown: some connections did not take their last answers in time");
        }
        self.shared.wake.close();
    }
}

/// A handle on one group of a node.
#[derive(Clone, Debug)]
pub struct Group<R: Runtime> {
    node: Node<R>,
    name: Arc<str>,
}

impl<R: Runtime> Group<R> {
    /// The group's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Gets `key` (see [`Node::get`]).
    pub async fn get(&self, key: &str) -> Result<Bytes, Error> {
        self.node.get(&self.name, key).await
    }

    /// The group's counters.
    pub fn stats(&self) -> GroupStats {
        self.node.stats(&self.name).unwrap_or_default()
    }
}
