//! What the driver needs from an async runtime: tasks, sleeps and TCP.
//! TLS is not the runtime's business: a node or client holds its own
//! [`Tls`](crate::Tls) settings, and the driver wraps the runtime's
//! streams.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use futures_lite::{AsyncRead, AsyncWrite, FutureExt};

/// An async runtime the driver can run on. The adapters implement it for
/// tokio, async-std, smol and compio; it holds no logic of its own.
pub trait Runtime: Clone + Send + Sync + 'static {
    /// A TCP connection, whole: what TLS wraps.
    type Stream: AsyncRead + AsyncWrite + Send + Unpin + 'static;
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
        // Every time the node decides by is read here. (TLS also reads the
        // clock, only to look at its files at most once a second.)
        Instant::now()
    }

    /// Makes the runtime's context current on this thread while the guard
    /// lives. The driver polls a load once where it starts it, on whatever
    /// thread that is (a caller's `block_on`, say), so that a loader which
    /// answers at once costs no hand-off; a runtime whose futures need a
    /// context of its own on the polling thread (tokio's timers and IO) sets
    /// it here. The default does nothing, as for runtimes whose reactor is
    /// global.
    fn enter(&self) -> impl Sized + '_ {}

    /// Opens a TCP connection to `addr` (`host:port`), with Nagle's delay
    /// off (frames are small and answered at once).
    fn connect(
        &self,
        addr: String,
    ) -> impl Future<Output = io::Result<Self::Stream>> + Send + 'static;

    /// Adopts a connected standard-library stream (one whose socket the
    /// caller set up itself, for example bound to a chosen local address).
    fn adopt_std(&self, stream: std::net::TcpStream) -> io::Result<Self::Stream>;

    /// Splits a connection into halves that a reader and a writer can use
    /// at once.
    fn split(stream: Self::Stream) -> (Self::Reader, Self::Writer);

    /// Binds a TCP listener.
    fn bind(
        &self,
        addr: SocketAddr,
    ) -> impl Future<Output = io::Result<Self::Listener>> + Send + 'static;

    /// Adopts a bound, listening standard-library listener (one whose
    /// socket the driver set up itself, for example with `SO_REUSEPORT`).
    /// May be called from any thread, inside the runtime or not.
    fn adopt_listener(&self, listener: std::net::TcpListener) -> io::Result<Self::Listener>;

    /// The address a listener is bound to.
    fn local_addr(&self, listener: &Self::Listener) -> io::Result<SocketAddr>;

    /// Accepts one connection, with Nagle's delay off.
    fn accept<'a>(
        &'a self,
        listener: &'a Self::Listener,
    ) -> impl Future<Output = io::Result<(Self::Stream, SocketAddr)>> + Send + 'a;
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
