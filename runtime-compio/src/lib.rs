//! groupcache-rs on [compio]: every socket operation an io_uring
//! submission on Linux, under the same driver as the tokio, async-std and
//! smol adapters.
//!
//! compio is thread-per-core: a task stays on the thread that spawned it,
//! and its operations' futures cannot move between threads. The driver
//! needs `Send` streams and tasks, so each connection keeps its io_uring
//! operations in two small tasks on a compio thread (one reads, one
//! writes), and hands the driver `Send` halves that talk to them over
//! channels ([`Stream`]). A task spawned from a compio thread runs on that
//! thread; one spawned from elsewhere goes to the runtime value's home
//! thread.
//!
//! Features, off by default: `dns` (DNS discovery, `DnsDiscovery`) and
//! `tls` (mutual TLS, `Tls`).
//!
//! ```no_run
//! use groupcache_compio::{Builder, CompioThreads};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let threads = CompioThreads::start(2)?;
//! let cores = threads.runtimes();
//! let node = futures_lite::future::block_on(
//!     Builder::with_runtime(cores[0].clone())
//!         .listen("127.0.0.1:8001".parse()?)
//!         .accept_on(cores)
//!         .group("score", 1 << 20, None, |key: String| async move { Ok(key) })
//!         .start(),
//! )?;
//! futures_lite::future::block_on(node.shutdown());
//! # Ok(()) }
//! ```
//!
//! [compio]: https://docs.rs/compio

mod home;
mod read;
mod stream;
mod timer;
mod write;

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use compio::net::TcpListener;

use home::Home;
pub use home::{runtime, CompioThreads};
pub use read::Reader;
pub use stream::Stream;
pub use write::Writer;

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

/// Configures a node on compio; see [`groupcache_driver::Builder`].
pub type Builder = groupcache_driver::Builder<Compio>;
/// A running node; see [`groupcache_driver::Node`].
pub type Node = groupcache_driver::Node<Compio>;
/// A handle on one group; see [`groupcache_driver::Group`].
pub type Group = groupcache_driver::Group<Compio>;
/// A client for non-members; see [`groupcache_driver::Client`].
pub type Client = groupcache_driver::Client<Compio>;

/// A compio runtime as the driver sees it: the thread it spawns on when
/// called from outside compio (its home).
#[derive(Clone, Debug)]
pub struct Compio {
    home: Home,
}

impl Compio {
    /// The compio runtime this is called from, as home: work sent from
    /// other threads runs there. The first call on a runtime's thread
    /// starts the one small task that takes that work; later calls share
    /// it.
    ///
    /// # Panics
    /// Outside a compio runtime. Use [`CompioThreads`] there.
    pub fn current() -> Self {
        Self {
            home: Home::current(),
        }
    }
}

/// A bound listener; it becomes compio's on the first accept, which runs
/// on a compio thread.
#[derive(Clone, Debug)]
pub struct Listener(
    Arc<stream::Bridge<TcpListener, std::net::TcpListener>>,
    SocketAddr,
);

impl groupcache_driver::Runtime for Compio {
    type Stream = Stream;
    type Reader = Reader;
    type Writer = Writer;
    type Listener = Listener;

    fn spawn<F>(&self, fut: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.home.spawn(fut);
    }

    fn sleep(&self, d: Duration) -> impl Future<Output = ()> + Send + 'static {
        // One timer task on the home thread keeps every sleep; a stopped
        // runtime's timers never fire.
        timer::Sleep::new(self.home.clone(), self.now() + d)
    }

    fn connect(
        &self,
        addr: String,
    ) -> impl Future<Output = io::Result<Self::Stream>> + Send + 'static {
        let home = self.home.clone();
        let connected = self.home.run_io(move || async move {
            let s = compio::net::TcpStream::connect(addr).await?;
            // Small request/response frames: send them now.
            let _ = s.set_nodelay(true);
            Ok(s)
        });
        async move { Ok(Stream::new(home, stream::Source::ready(connected.await?))) }
    }

    fn adopt_std(&self, stream: std::net::TcpStream) -> io::Result<Self::Stream> {
        stream.set_nodelay(true)?;
        Ok(Stream::new(self.home.clone(), stream::Source::new(stream)))
    }

    fn split(stream: Self::Stream) -> (Self::Reader, Self::Writer) {
        stream.into_split()
    }

    fn bind(
        &self,
        addr: SocketAddr,
    ) -> impl Future<Output = io::Result<Self::Listener>> + Send + 'static {
        let listener = std::net::TcpListener::bind(addr).and_then(|l| self.adopt_listener(l));
        async move { listener }
    }

    fn adopt_listener(&self, listener: std::net::TcpListener) -> io::Result<Self::Listener> {
        let local = listener.local_addr()?;
        Ok(Listener(Arc::new(stream::Bridge::new(listener)), local))
    }

    fn local_addr(&self, listener: &Self::Listener) -> io::Result<SocketAddr> {
        Ok(listener.1)
    }

    async fn accept(&self, listener: &Self::Listener) -> io::Result<(Self::Stream, SocketAddr)> {
        let bridge = listener.0.clone();
        let (s, peer) = self
            .home
            .run_io(move || async move {
                let l = bridge.get(TcpListener::from_std)?;
                let (s, peer) = l.accept().await?;
                let _ = s.set_nodelay(true);
                Ok((s, peer))
            })
            .await?;
        Ok((
            Stream::new(self.home.clone(), stream::Source::ready(s)),
            peer,
        ))
    }
}
