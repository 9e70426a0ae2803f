//! groupcache-rs on tokio.
//!
//! A distributed read-through cache: named groups, each with a byte budget,
//! a TTL and a loader; every key has one owner on a consistent-hash ring; a
//! miss is loaded once in the cluster. Peers speak go-needle/groupcache's
//! protocol, so Rust and Go nodes can share a cluster.
//!
//! ```no_run
//! use std::time::{Duration, Instant};
//! use groupcache_tokio::{Builder, LoadError};
//!
//! # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let node = Builder::new()
//!     .listen("127.0.0.1:8001".parse()?)
//!     .peers(["127.0.0.1:8001", "127.0.0.1:8002", "127.0.0.1:8003"])
//!     .group("score", 2 << 10, Some(Duration::from_secs(1024)), |key: String| async move {
//!         match key.as_str() {
//!             "Tom" => Ok("630"),
//!             _ => Err(LoadError::NotFound(format!("{key} not exist"))),
//!         }
//!     })
//!     .start()
//!     .await?;
//! let score = node.group("score").unwrap();
//! println!("{:?}", score.get("Tom").await?);
//! node.shutdown().await;
//! # Ok(()) }
//! ```

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
    tls: Option<Tls>,
}

impl Tokio {
    /// The runtime this is called from.
    ///
    /// # Panics
    /// Outside a tokio runtime. Use [`Tokio::from_handle`] there.
    pub fn current() -> Self {
        Self {
            handle: Handle::current(),
            tls: None,
        }
    }

    /// A given runtime.
    pub fn from_handle(handle: Handle) -> Self {
        Self { handle, tls: None }
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

    fn local_addr(&self, listener: &Self::Listener) -> io::Result<SocketAddr> {
        listener.local_addr()
    }

    async fn accept(&self, listener: &Self::Listener) -> io::Result<(Self::Stream, SocketAddr)> {
        let (s, peer) = listener.accept().await?;
        Ok((nodelay(s), peer))
    }

    fn tls(&self) -> Option<&Tls> {
        self.tls.as_ref()
    }

    fn set_tls(&mut self, tls: Option<Tls>) {
        self.tls = tls;
    }
}

fn nodelay(s: TcpStream) -> Compat<TcpStream> {
    // Small request/response frames: send them now, not after Nagle's delay.
    let _ = s.set_nodelay(true);
    s.compat()
}

groupcache_driver::adapter_api!(Tokio);
