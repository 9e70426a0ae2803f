//! The tasks of a node: timers, accepting, connecting, one per connection.

use std::io;
use std::pin::pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_channel::Receiver;
use futures_lite::future::{poll_fn, poll_once};
use futures_lite::{AsyncReadExt, AsyncWriteExt, FutureExt};
use groupcache_core::node::ConnId;

use super::outbox::{Chunks, Outbox};
use super::shared::Shared;
use crate::runtime::{timeout, Runtime};
use crate::transport::{self, Reader, Writer};

/// Bytes read from a socket at a time. Frames larger than this arrive over
/// several reads; the claimed length of a frame is never allocated up front.
pub(super) const READ_CHUNK: usize = 16 * 1024;

pub(super) async fn timer_loop<R: Runtime>(shared: Arc<Shared<R>>, wake: Receiver<()>) {
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

/// Accepts on `listener` through `rt`, which also runs the connections'
/// tasks (the node's own runtime, or one of [`Builder::accept_on`]'s).
///
/// [`Builder::accept_on`]: super::Builder::accept_on
pub(super) async fn accept_loop<R: Runtime>(
    shared: Arc<Shared<R>>,
    rt: R,
    listener: R::Listener,
    stop: Receiver<()>,
) {
    loop {
        let accepted = async { Some(rt.accept(&listener).await) }
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
                rt.sleep(Duration::from_millis(50)).await;
            }
            Some(Ok((stream, peer))) => {
                let mut st = shared.lock();
                let now = shared.rt.now();
                match st.node.accept(now, peer.ip()) {
                    Ok(conn) => {
                        let outbox = st.open(conn);
                        shared.drain(st);
                        if shared.tls.is_none() {
                            let (r, w) = transport::plain::<R>(stream);
                            rt.spawn(conn_loop(shared.clone(), conn, r, w, outbox));
                        } else {
                            // The handshake runs in the connection's own task:
                            // one that never finishes must not stop accepting.
                            rt.spawn(handshake(shared.clone(), conn, stream, outbox));
                        }
                    }
                    Err(why) => tracing::debug!(%peer, "refused connection: {why}"),
                }
            }
        }
    }
}

/// The server side of a TLS handshake on an accepted connection, bounded by
/// the connect timeout; then the connection's loop.
async fn handshake<R: Runtime>(
    shared: Arc<Shared<R>>,
    conn: ConnId,
    stream: R::Stream,
    outbox: Arc<Outbox>,
) {
    let limit = shared.connect_timeout;
    match transport::accepted(&shared.rt, shared.tls.as_ref(), stream, limit).await {
        Ok((r, w)) => conn_loop(shared, conn, r, w, outbox).await,
        Err(_) => shared.input(|n, now| n.handle_closed(now, conn)),
    }
}

pub(super) async fn connect<R: Runtime>(
    shared: Arc<Shared<R>>,
    conn: ConnId,
    addr: String,
    outbox: Arc<Outbox>,
) {
    // The core enforces the connect timeout: when it gives up it drops the
    // handle, which closes the outbox and ends this attempt.
    let mut nothing = Chunks::default();
    let limit = shared.connect_timeout;
    let tls = shared.tls.as_ref();
    let attempt = async { Some(transport::connect(&shared.rt, tls, &addr, limit).await) }
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
pub(super) async fn conn_loop<R: Runtime>(
    shared: Arc<Shared<R>>,
    conn: ConnId,
    mut r: Reader<R>,
    mut w: Writer<R>,
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
pub(super) struct Live {
    pub(super) count: AtomicUsize,
    pub(super) ended: event_listener::Event,
}

impl Live {
    pub(super) fn enter(&self) -> LiveGuard<'_> {
        self.count.fetch_add(1, Ordering::SeqCst);
        LiveGuard(self)
    }

    pub(super) async fn all_ended(&self) {
        loop {
            let listener = self.ended.listen();
            if self.count.load(Ordering::SeqCst) == 0 {
                return;
            }
            listener.await;
        }
    }
}

pub(super) struct LiveGuard<'a>(pub(super) &'a Live);

impl Drop for LiveGuard<'_> {
    fn drop(&mut self) {
        self.0.count.fetch_sub(1, Ordering::SeqCst);
        self.0.ended.notify(usize::MAX);
    }
}
