#![doc = include_str!("../README.md")]

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::net::{tcp, TcpListener, TcpStream};
use tokio::runtime::Handle;
use tokio_util::compat::{Compat, TokioAsyncReadCompatExt, TokioAsyncWriteCompatExt};

/// The tokio runtime, as the driver sees it.
#[derive(Clone, Debug)]
pub struct Tokio {
    handle: Handle,
}

impl Tokio {
    /// The runtime this is called from.
    ///
    /// # Panics
    /// Outside a tokio runtime. Use [`Tokio::from_handle`] there.
    pub fn current() -> Self {
        Self {
            handle: Handle::current(),
        }
    }

    /// A given runtime.
    pub fn from_handle(handle: Handle) -> Self {
        Self { handle }
    }

    /// The runtime's handle: its tasks are spawned here.
    pub fn handle(&self) -> &Handle {
        &self.handle
    }
}

impl Default for Tokio {
    fn default() -> Self {
        Self::current()
    }
}

impl groupcache_driver::Runtime for Tokio {
    type Stream = Compat<TcpStream>;
    type Reader = Compat<tcp::OwnedReadHalf>;
    type Writer = Compat<tcp::OwnedWriteHalf>;
    type Listener = TcpListener;

    fn spawn<F>(&self, fut: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        drop(self.handle.spawn(fut));
    }

    fn enter(&self) -> impl Sized + '_ {
        // A load polled on a caller's own thread may use tokio's timers and IO.
        self.handle.enter()
    }

    fn sleep(&self, d: Duration) -> impl Future<Output = ()> + Send + 'static {
        tokio::time::sleep(d)
    }

    fn now(&self) -> Instant {
        // tokio's clock, so that tests on paused time move the node's too.
        tokio::time::Instant::now().into_std()
    }

    #[allow(clippy::manual_async_fn)] // the future must not borrow `self`
    fn connect(
        &self,
        addr: String,
    ) -> impl Future<Output = io::Result<Self::Stream>> + Send + 'static {
        async move { TcpStream::connect(addr).await.map(nodelay) }
    }

    fn adopt_std(&self, stream: std::net::TcpStream) -> io::Result<Self::Stream> {
        stream.set_nonblocking(true)?;
        let _in_runtime = self.handle.enter();
        Ok(nodelay(TcpStream::from_std(stream)?))
    }

    fn split(stream: Self::Stream) -> (Self::Reader, Self::Writer) {
        let (r, w) = stream.into_inner().into_split();
        (r.compat(), w.compat_write())
    }

    fn bind(
        &self,
        addr: SocketAddr,
    ) -> impl Future<Output = io::Result<Self::Listener>> + Send + 'static {
        TcpListener::bind(addr)
    }

    fn adopt_listener(&self, listener: std::net::TcpListener) -> io::Result<Self::Listener> {
        listener.set_nonblocking(true)?;
        let _in_runtime = self.handle.enter();
        TcpListener::from_std(listener)
    }

    fn local_addr(&self, listener: &Self::Listener) -> io::Result<SocketAddr> {
        listener.local_addr()
    }

    async fn accept(&self, listener: &Self::Listener) -> io::Result<(Self::Stream, SocketAddr)> {
        let (s, peer) = listener.accept().await?;
        Ok((nodelay(s), peer))
    }
}

/// Single-threaded tokio runtimes, each on a thread of its own: the
/// runtimes [`Builder::accept_on`](groupcache_driver::Builder::accept_on)
/// takes for thread-per-core serving. Dropping it stops the threads (after
/// their current task yields), so keep it until the node has shut down.
///
/// ```no_run
/// use groupcache_tokio::{Builder, CoreThreads};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let cores = CoreThreads::start(2)?;
/// let node = Builder::new()
///     .listen("127.0.0.1:8001".parse()?)
///     .accept_on(cores.runtimes())
///     .group("score", 1 << 20, None, |key: String| async move { Ok(key) })
///     .start()
///     .await?;
/// node.shutdown().await;
/// drop(cores);
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct CoreThreads(groupcache_driver::ServingThreads<Tokio>);

impl CoreThreads {
    /// Starts `n` threads (at least one), each running a single-threaded
    /// runtime with IO and time enabled.
    pub fn start(n: usize) -> io::Result<Self> {
        let threads =
            groupcache_driver::ServingThreads::start(n, "groupcache-core", |ready, stopped| {
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => return ready.fail(e),
                };
                ready.ok(Tokio::from_handle(rt.handle().clone()));
                // A current-thread runtime runs its tasks only inside
                // `block_on`: this thread is that runtime's worker until the
                // threads are stopped.
                rt.block_on(stopped.wait());
            })?;
        Ok(Self(threads))
    }

    /// A handle to each runtime, for [`Builder::accept_on`](groupcache_driver::Builder::accept_on).
    pub fn runtimes(&self) -> Vec<Tokio> {
        self.0.runtimes()
    }
}

fn nodelay(s: TcpStream) -> Compat<TcpStream> {
    // Small request/response frames: send them now, not after Nagle's delay.
    let _ = s.set_nodelay(true);
    s.compat()
}

pub use groupcache_driver::{
    core, sample, Bytes, Config, Discovery, DiscoveryError, DiscoveryStats, Error, GroupConfig,
    GroupExists, GroupStats, HashFn, InfoFuture, IpNet, LoadError, LoadFuture, Loaded, Loader,
    MembersFuture, ObjectInfo, PageConfig, PageSource, PeerSource, PeerSourceError, RangeError,
    StartError, WriteOp, WriteReport,
};
#[cfg(feature = "dns")]
pub use groupcache_driver::{DnsConfig, DnsDiscovery};
#[cfg(feature = "tls")]
pub use groupcache_driver::{Tls, TlsError, TlsFiles, TlsStats};

/// Configures a node on tokio (`Builder::new()` uses the current runtime); see [`groupcache_driver::Builder`].
pub type Builder = groupcache_driver::Builder<Tokio>;
/// A running node; see [`groupcache_driver::Node`].
pub type Node = groupcache_driver::Node<Tokio>;
/// A handle on one group; see [`groupcache_driver::Group`].
pub type Group = groupcache_driver::Group<Tokio>;
/// A client for non-members; see [`groupcache_driver::Client`].
pub type Client = groupcache_driver::Client<Tokio>;
