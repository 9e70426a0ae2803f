//! groupcache-rs on the async-io stack: smol and async-std.
//!
//! smol and async-std share their reactor (`async-io`) and IO traits
//! (`futures-io`), so one adapter serves both; the executor is chosen by
//! feature (`smol`, the default, and/or `async-std`) and by
//! [`AsyncIo::smol`] / [`AsyncIo::async_std`].
//!
//! **async-std is discontinued upstream** (RUSTSEC-2025-0052): it receives no
//! fixes. Prefer smol; the `async-std` feature is kept for code that cannot
//! move yet.
//!
//! Features, off by default: `dns` (DNS discovery, `DnsDiscovery`) and
//! `tls` (mutual TLS, `Tls`).
//!
//! ```no_run
//! use std::time::Duration;
//! use groupcache_async_std::{Builder, LoadError};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! smol::block_on(async {
//!     let node = Builder::new() // on smol
//!         .listen("127.0.0.1:8001".parse()?)
//!         .group("score", 2 << 10, Some(Duration::from_secs(1024)), |key: String| async move {
//!             if key == "Tom" { Ok("630") } else { Err(LoadError::NotFound(format!("{key} not exist"))) }
//!         })
//!         .start()
//!         .await?;
//!     println!("{:?}", node.get("score", "Tom").await?);
//!     node.shutdown().await;
//!     Ok(())
//! })
//! # }
//! ```

#[cfg(not(any(feature = "smol", feature = "async-std")))]
compile_error!("enable the `smol` feature, the `async-std` feature, or both");

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use async_net::{TcpListener, TcpStream};

/// Which executor runs the node's tasks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Executor {
    /// smol's global executor; tasks are detached so they outlive their
    /// handles.
    #[cfg(feature = "smol")]
    Smol,
    /// async-std's executor (discontinued upstream, RUSTSEC-2025-0052).
    #[cfg(feature = "async-std")]
    AsyncStd,
}

/// The async-io runtime with a chosen executor, as the driver sees it.
#[derive(Clone, Debug)]
pub struct AsyncIo {
    exec: Executor,
}

impl AsyncIo {
    /// Tasks on smol's global executor.
    #[cfg(feature = "smol")]
    pub fn smol() -> Self {
        Self {
            exec: Executor::Smol,
        }
    }

    /// Tasks on async-std's executor.
    #[cfg(feature = "async-std")]
    pub fn async_std() -> Self {
        Self {
            exec: Executor::AsyncStd,
        }
    }

    /// The executor in use.
    pub fn executor(&self) -> Executor {
        self.exec
    }
}

impl Default for AsyncIo {
    /// smol when its feature is on, else async-std.
    fn default() -> Self {
        #[cfg(feature = "smol")]
        return Self::smol();
        #[cfg(not(feature = "smol"))]
        return Self::async_std();
    }
}

impl groupcache_driver::Runtime for AsyncIo {
    type Stream = TcpStream;
    type Reader = TcpStream;
    type Writer = TcpStream;
    type Listener = TcpListener;

    fn spawn<F>(&self, fut: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        match self.exec {
            #[cfg(feature = "smol")]
            Executor::Smol => smol::spawn(fut).detach(),
            #[cfg(feature = "async-std")]
            Executor::AsyncStd => drop(async_std::task::spawn(fut)),
        }
    }

    fn sleep(&self, d: Duration) -> impl Future<Output = ()> + Send + 'static {
        let timer = async_io::Timer::after(d);
        async move {
            timer.await;
        }
    }

    #[allow(clippy::manual_async_fn)] // the future must not borrow `self`
    fn connect(
        &self,
        addr: String,
    ) -> impl Future<Output = io::Result<Self::Stream>> + Send + 'static {
        async move {
            let s = TcpStream::connect(addr).await?;
            // Small request/response frames: send them now, not after Nagle's delay.
            let _ = s.set_nodelay(true);
            Ok(s)
        }
    }

    fn adopt_std(&self, stream: std::net::TcpStream) -> io::Result<Self::Stream> {
        let s = TcpStream::try_from(stream)?;
        let _ = s.set_nodelay(true);
        Ok(s)
    }

    fn split(stream: Self::Stream) -> (Self::Reader, Self::Writer) {
        (stream.clone(), stream)
    }

    #[allow(clippy::manual_async_fn)] // the future must not borrow `self`
    fn bind(
        &self,
        addr: SocketAddr,
    ) -> impl Future<Output = io::Result<Self::Listener>> + Send + 'static {
        async move { TcpListener::bind(addr).await }
    }

    fn adopt_listener(&self, listener: std::net::TcpListener) -> io::Result<Self::Listener> {
        TcpListener::try_from(listener)
    }

    fn local_addr(&self, listener: &Self::Listener) -> io::Result<SocketAddr> {
        listener.local_addr()
    }

    async fn accept(&self, listener: &Self::Listener) -> io::Result<(Self::Stream, SocketAddr)> {
        let (s, peer) = listener.accept().await?;
        let _ = s.set_nodelay(true);
        Ok((s, peer))
    }
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

/// Configures a node on smol or async-std; see [`groupcache_driver::Builder`].
pub type Builder = groupcache_driver::Builder<AsyncIo>;
/// A running node; see [`groupcache_driver::Node`].
pub type Node = groupcache_driver::Node<AsyncIo>;
/// A handle on one group; see [`groupcache_driver::Group`].
pub type Group = groupcache_driver::Group<AsyncIo>;
/// A client for non-members; see [`groupcache_driver::Client`].
pub type Client = groupcache_driver::Client<AsyncIo>;
