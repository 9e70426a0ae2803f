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
}

impl Default for Tokio {
    fn default() -> Self {
        Self::current()
    }
}

impl groupcache_driver::Runtime for Tokio {
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
    ) -> impl Future<Output = io::Result<(Self::Reader, Self::Writer)>> + Send + 'static {
        async move { TcpStream::connect(addr).await.map(split) }
    }

    fn adopt_std(&self, stream: std::net::TcpStream) -> io::Result<(Self::Reader, Self::Writer)> {
        stream.set_nonblocking(true)?;
        let _in_runtime = self.handle.enter();
        Ok(split(TcpStream::from_std(stream)?))
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

    async fn accept(
        &self,
        listener: &Self::Listener,
    ) -> io::Result<(Self::Reader, Self::Writer, SocketAddr)> {
        let (s, peer) = listener.accept().await?;
        let (r, w) = split(s);
        Ok((r, w, peer))
    }
}

fn split(s: TcpStream) -> (Compat<tcp::OwnedReadHalf>, Compat<tcp::OwnedWriteHalf>) {
    // Small request/response frames: send them now, not after Nagle's delay.
    let _ = s.set_nodelay(true);
    let (r, w) = s.into_split();
    (r.compat(), w.compat_write())
}

groupcache_driver::adapter_api!(Tokio);
