//! The byte streams of a connection: the runtime's own halves, or halves
//! of a TLS stream over it when the node or client has [`Tls`] settings.
//! Every connection the driver accepts or opens goes through here, so
//! nodes, clients and tests speak TLS alike.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

#[cfg(feature = "tls")]
use futures_lite::io::{ReadHalf, WriteHalf};
use futures_lite::{AsyncRead, AsyncWrite};
#[cfg(feature = "tls")]
use futures_rustls::TlsStream;

use crate::runtime::Runtime;

/// The TLS settings of a node or client.
#[cfg(feature = "tls")]
pub(crate) type Tls = crate::tls::Tls;

/// Without the `tls` feature no connection speaks TLS: there is no value
/// of this type, so every `Option<Tls>` is `None`.
#[cfg(not(feature = "tls"))]
#[derive(Debug, Clone)]
pub(crate) enum Tls {}

/// The read half of a connection.
pub(crate) enum Reader<R: Runtime> {
    /// Plaintext: the runtime's own half.
    Plain(R::Reader),
    /// TLS over the runtime's stream.
    #[cfg(feature = "tls")]
    Tls(ReadHalf<TlsStream<R::Stream>>),
}

/// The write half of a connection.
pub(crate) enum Writer<R: Runtime> {
    /// Plaintext: the runtime's own half.
    Plain(R::Writer),
    /// TLS over the runtime's stream.
    #[cfg(feature = "tls")]
    Tls(WriteHalf<TlsStream<R::Stream>>),
}

/// Opens a connection to `addr`, with a TLS handshake if `tls` is given;
/// the handshake is cut off after `limit`.
pub(crate) async fn connect<R: Runtime>(
    rt: &R,
    tls: Option<&Tls>,
    addr: &str,
    limit: Duration,
) -> io::Result<(Reader<R>, Writer<R>)> {
    let stream = rt.connect(addr.to_string()).await?;
    outbound(rt, tls, stream, addr, limit).await
}

/// Makes a connection this side opened to `addr` usable: a TLS handshake
/// if `tls` is given, cut off after `limit`.
#[cfg_attr(not(feature = "tls"), allow(unused_variables))]
pub(crate) async fn outbound<R: Runtime>(
    rt: &R,
    tls: Option<&Tls>,
    stream: R::Stream,
    addr: &str,
    limit: Duration,
) -> io::Result<(Reader<R>, Writer<R>)> {
    match tls {
        None => Ok(plain::<R>(stream)),
        #[cfg(feature = "tls")]
        Some(tls) => Ok(halves(tls.connect(rt, stream, addr, limit).await?)),
        #[cfg(not(feature = "tls"))]
        Some(never) => match *never {},
    }
}

/// Makes an accepted connection usable: a TLS handshake if `tls` is given,
/// cut off after `limit`.
#[cfg_attr(not(feature = "tls"), allow(unused_variables))]
pub(crate) async fn accepted<R: Runtime>(
    rt: &R,
    tls: Option<&Tls>,
    stream: R::Stream,
    limit: Duration,
) -> io::Result<(Reader<R>, Writer<R>)> {
    match tls {
        None => Ok(plain::<R>(stream)),
        #[cfg(feature = "tls")]
        Some(tls) => Ok(halves(tls.accept(rt, stream, limit).await?)),
        #[cfg(not(feature = "tls"))]
        Some(never) => match *never {},
    }
}

/// A plaintext connection's halves.
pub(crate) fn plain<R: Runtime>(stream: R::Stream) -> (Reader<R>, Writer<R>) {
    let (r, w) = R::split(stream);
    (Reader::Plain(r), Writer::Plain(w))
}

#[cfg(feature = "tls")]
fn halves<R: Runtime>(s: TlsStream<R::Stream>) -> (Reader<R>, Writer<R>) {
    let (r, w) = futures_lite::io::split(s);
    (Reader::Tls(r), Writer::Tls(w))
}

impl<R: Runtime> AsyncRead for Reader<R> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Reader::Plain(r) => Pin::new(r).poll_read(cx, buf),
            #[cfg(feature = "tls")]
            Reader::Tls(r) => Pin::new(r).poll_read(cx, buf),
        }
    }
}

impl<R: Runtime> AsyncWrite for Writer<R> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Writer::Plain(w) => Pin::new(w).poll_write(cx, buf),
            #[cfg(feature = "tls")]
            Writer::Tls(w) => Pin::new(w).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Writer::Plain(w) => Pin::new(w).poll_write_vectored(cx, bufs),
            #[cfg(feature = "tls")]
            Writer::Tls(w) => Pin::new(w).poll_write_vectored(cx, bufs),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Writer::Plain(w) => Pin::new(w).poll_flush(cx),
            #[cfg(feature = "tls")]
            Writer::Tls(w) => Pin::new(w).poll_flush(cx),
        }
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Writer::Plain(w) => Pin::new(w).poll_close(cx),
            #[cfg(feature = "tls")]
            Writer::Tls(w) => Pin::new(w).poll_close(cx),
        }
    }
}
