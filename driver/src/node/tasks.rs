//! The tasks of a node: timers, accepting, connecting, one per connection.

use std::future::Future;
use std::io;
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use async_channel::Receiver;
use futures_lite::future::{poll_fn, poll_once};
use futures_lite::{AsyncReadExt, AsyncWriteExt, FutureExt};
use groupcache_core::node::{ConnId, Inbound, InboundOutput};

use super::outbox::{Chunks, Outbox};
use super::shared::Shared;
use crate::runtime::{timeout, Runtime};
use crate::transport::{self, Reader, Writer};

/// Bytes read from a socket at a time. Frames larger than this arrive over
/// several reads; the claimed length of a frame is never allocated up front.
pub(super) const READ_CHUNK: usize = 16 * 1024;

/// A runtime's timer, kept across a connection task's turns.
type Sleep = Pin<Box<dyn Future<Output = ()> + Send>>;

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
                match st.node.accept_inbound(now, peer.ip()) {
                    Ok(inbound) => {
                        let outbox = st.open(inbound.id());
                        shared.drain(st);
                        if shared.tls.is_none() {
                            let (r, w) = transport::plain::<R>(stream);
                            rt.spawn(inbound_loop(shared.clone(), inbound, r, w, outbox));
                        } else {
                            // The handshake runs in the connection's own task:
                            // one that never finishes must not stop accepting.
                            rt.spawn(handshake(shared.clone(), inbound, stream, outbox));
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
    inbound: Inbound,
    stream: R::Stream,
    outbox: Arc<Outbox>,
) {
    let limit = shared.connect_timeout;
    match transport::accepted(&shared.rt, shared.tls.as_ref(), stream, limit).await {
        Ok((r, w)) => inbound_loop(shared, inbound, r, w, outbox).await,
        Err(_) => {
            let conn = inbound.id();
            shared.input(|n, now| n.handle_closed(now, conn));
        }
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

/// One task per inbound connection, which keeps the connection's state
/// ([`Inbound`]): it answers hits from the caches without the node's lock,
/// hands the other requests it reads to the node under one lock per read,
/// encodes and writes the answers in order, and keeps the connection's
/// deadlines. It reads nothing while the client leaves too many answers
/// unread (backpressure). Ends when the connection asks to close (after
/// writing what it sent), when the node drops it, on EOF, an IO error or a
/// stalled write.
pub(super) async fn inbound_loop<R: Runtime>(
    shared: Arc<Shared<R>>,
    mut inbound: Inbound,
    mut r: Reader<R>,
    mut w: Writer<R>,
    outbox: Arc<Outbox>,
) {
    enum Event {
        Read(io::Result<usize>),
        /// Answers arrived, or the node dropped the connection (true).
        Answers(bool),
        Timer,
    }
    let _live = shared.live.enter();
    let conn = inbound.id();
    let mut buf = vec![0u8; READ_CHUNK];
    let mut out = Chunks::default();
    let mut answers = Vec::new();
    let mut requests = Vec::new();
    let mut draining = false;
    let mut dropped = false;
    // One timer kept across turns and replaced only when the deadline
    // moves earlier: the idle deadline moves later with every request, and
    // arming a timer per request would cost more than the request.
    let mut timer: Option<(Instant, Sleep)> = None;
    // The time of the latest event: one clock read per turn.
    let mut now = shared.rt.now();
    loop {
        if !draining && shared.closing.load(Ordering::Relaxed) {
            draining = true;
            inbound.handle_shutdown(now);
        }
        // Carry out what the connection asks: what the caches could not
        // answer goes to the node, all of a read under one lock.
        let mut close = None;
        loop {
            for (seq, resp) in answers.drain(..) {
                inbound.handle_answer(now, seq, resp);
            }
            while let Some(o) = inbound.poll_output() {
                match o {
                    InboundOutput::Request { seq, request } => requests.push((seq, request)),
                    InboundOutput::Send(data) => out.push(data),
                    InboundOutput::Close(reason) => {
                        close = Some(reason);
                        break;
                    }
                    _ => {}
                }
            }
            if close.is_some() || requests.is_empty() {
                break;
            }
            // Answers to these are taken right below: pushing them need not
            // wake this task.
            drop(outbox.waker.take());
            shared.input(|n, now| {
                for (seq, request) in requests.drain(..) {
                    n.serve(now, conn, seq, request);
                }
            });
            dropped |= outbox.take_answers(&mut answers);
        }
        if !out.is_empty() {
            if !write_out(&shared, &out, &mut w).await {
                shared.input(|n, now| n.handle_closed(now, conn));
                return;
            }
            let paused = !inbound.wants_read();
            inbound.handle_written(now, out.len());
            out.clear();
            if paused && close.is_none() && !dropped {
                // Written answers resume a paused connection: its buffered
                // requests come next.
                continue;
            }
        }
        if let Some(reason) = &close {
            tracing::debug!(%conn, ?reason, "closing connection");
        }
        if close.is_some() || dropped {
            shared.input(|n, now| n.handle_closed(now, conn));
            let _ = w.close().await;
            return;
        }
        let deadline = inbound.poll_timeout();
        if deadline.is_some_and(|d| timer.as_ref().is_none_or(|(at, _)| d < *at)) {
            let d = deadline.expect("checked");
            let sleep = shared
                .rt
                .sleep(d.saturating_duration_since(shared.rt.now()));
            timer = Some((d, Box::pin(sleep)));
        }
        let answered = async {
            let dropped = poll_fn(|cx| match outbox.poll_answers(cx, &mut answers) {
                // Woken at shutdown: drain.
                Poll::Pending if !draining && shared.closing.load(Ordering::Relaxed) => {
                    Poll::Ready(false)
                }
                p => p,
            })
            .await;
            Event::Answers(dropped)
        };
        let fired = async {
            match timer.as_mut() {
                Some((_, sleep)) => sleep.await,
                None => std::future::pending().await,
            }
            Event::Timer
        };
        let event = if inbound.wants_read() {
            async { Event::Read(r.read(&mut buf).await) }
                .or(answered)
                .or(fired)
                .await
        } else {
            answered.or(fired).await
        };
        now = shared.rt.now();
        match event {
            Event::Read(Ok(0) | Err(_)) => {
                shared.input(|n, now| n.handle_closed(now, conn));
                return;
            }
            Event::Read(Ok(len)) => inbound.handle_data(now, &buf[..len]),
            Event::Answers(d) => dropped |= d,
            Event::Timer => {
                timer = None;
                inbound.handle_timeout(now);
            }
        }
    }
}

/// One task per outbound connection (to a peer). It feeds the answers it
/// reads to the core and writes the requests the core sends on this
/// connection. Ends when the core drops the connection (after its queued
/// bytes are written), or on EOF, an IO error or a stalled write.
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
    loop {
        let write = async {
            poll_fn(|cx| outbox.poll_ready(cx, &mut out)).await;
            Event::Write
        };
        let event = async { Event::Read(r.read(&mut buf).await) }
            .or(write)
            .await;
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
                    shared.input(|n, now| n.handle_data(now, conn, &buf[..len]));
                }
            }
        }
        // Whatever the core queued, requests sent on this read included.
        let closed = outbox.take(&mut out);
        if !out.is_empty() {
            if !write_out(&shared, &out, &mut w).await {
                shared.input(|n, now| n.handle_closed(now, conn));
                return;
            }
            out.clear();
        }
        if closed {
            let _ = w.close().await;
            return;
        }
    }
}

/// Writes `out` to `w` within the write timeout; false if that failed.
async fn write_out<R: Runtime>(shared: &Shared<R>, out: &Chunks, w: &mut Writer<R>) -> bool {
    let mut write = pin!(out.write_to(w));
    // Most writes complete at once: only arm a timer for one that has to
    // wait for the peer to read.
    let wrote = match poll_once(&mut write).await {
        Some(done) => Some(done),
        None => timeout(&shared.rt, shared.write_timeout, write).await,
    };
    matches!(wrote, Some(Ok(())))
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
