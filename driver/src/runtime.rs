//! What the driver needs from an async runtime: tasks, sleeps and TCP.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use futures_lite::{AsyncRead, AsyncWrite, FutureExt};

/// An async runtime the driver can run on. The adapters implement it for
/// tokio, async-std and smol; it holds no logic of its own.
pub trait Runtime: Clone + Send + Sync + 'static {
    /// Read half of a TCP connection.
    type Reader: AsyncRead + Send + Unpin + 'static;
    /// Write half of a TCP connection.
    type Writer: AsyncWrite + Send + Unpin + 'static;
    /// A bound TCP listener.
    type Listener: Send + Sync + 'static;

    /// Runs `fut` in the background, detached: it outlives its handle.
    fn spawn<F>(&self, fut: F)
    where
        F: Future<Output = ()> + Send + 'static;

    /// Completes after `d`.
    fn sleep(&self, d: Duration) -> impl Future<Output = ()> + Send + 'static;

    /// The runtime's clock: every `now` the driver gives the core comes from
    /// here, so a runtime with a test clock (tokio's paused time) drives the
    /// node's timeouts too. Must agree with [`Runtime::sleep`].
    fn now(&self) -> Instant {
        // The one place the driver reads the system clock.
        Instant::now()
    }

    /// Opens a TCP connection to `addr` (`host:port`).
    fn connect(
        &self,
        addr: String,
    ) -> impl Future<Output = io::Result<(Self::Reader, Self::Writer)>> + Send + 'static;

    /// Adopts a connected standard-library stream (one whose socket the
    /// caller set up itself, for example bound to a chosen local address).
    fn adopt_std(&self, stream: std::net::TcpStream) -> io::Result<(Self::Reader, Self::Writer)>;

    /// Binds a TCP listener.
    fn bind(
        &self,
        addr: SocketAddr,
    ) -> impl Future<Output = io::Result<Self::Listener>> + Send + 'static;

    /// The address a listener is bound to.
    fn local_addr(&self, listener: &Self::Listener) -> io::Result<SocketAddr>;

    /// Accepts one connection.
    fn accept<'a>(
        &'a self,
        listener: &'a Self::Listener,
    ) -> impl Future<Output = io::Result<(Self::Reader, Self::Writer, SocketAddr)>> + Send + 'a;
}

/// Runs `fut` for at most `d`; `None` if time ran out first.
pub async fn timeout<R: Runtime, T>(
    rt: &R,
    d: Duration,
    fut: impl Future<Output = T>,
) -> Option<T> {
    async { Some(fut.await) }
        .or(async {
            rt.sleep(d).await;
            None
        })
        .await
}
