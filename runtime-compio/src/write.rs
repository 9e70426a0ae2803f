//! The write half: bytes queued for a task on a compio thread that writes
//! them with io_uring operations.
//!
//! A write copies the caller's bytes into the connection's queue and
//! returns at once, as a socket's write does once the kernel has them; the
//! task takes everything queued at each turn, so the answers of a batch go
//! out in one operation. A write waits only while [`MAX_QUEUED`] bytes are
//! queued (a peer that does not read). A flush returns at once; a close
//! waits for everything queued to be written, then shuts the sending side
//! down. An error comes back from the next write or close.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use async_channel::{Receiver, Sender};
use compio::buf::BufResult;
use compio::io::{AsyncWrite as _, AsyncWriteExt as _};
use compio::net::TcpStream;
use futures_lite::{AsyncWrite, FutureExt};

use crate::home::closed;
use crate::stream::{copy_error, Start};

/// Bytes a connection may have queued and not yet taken by its task: far
/// above one batch of answers; a peer that does not read stalls writes
/// here, where the driver's write timeout sees it.
pub(crate) const MAX_QUEUED: usize = 1 << 20;

/// What a write half and its task share.
#[derive(Default)]
pub(crate) struct Queue {
    /// Bytes not yet taken by the task.
    data: Vec<u8>,
    /// The task is writing (or shutting down).
    busy: bool,
    /// The write half asked for a shutdown once the queue is empty.
    shutdown: bool,
    /// The shutdown finished.
    shut: Option<io::Result<()>>,
    /// The first error: every later write and close returns it.
    error: Option<io::Error>,
    /// The write half waiting for room, for the queue to empty, or for the
    /// shutdown.
    waiter: Option<Waker>,
}

pub(crate) type Shared = Arc<Mutex<Queue>>;

fn lock(q: &Shared) -> MutexGuard<'_, Queue> {
    q.lock().unwrap_or_else(|e| e.into_inner())
}

impl Queue {
    /// Records the first error and wakes the write half.
    pub(crate) fn fail(&mut self, e: io::Error) {
        self.error.get_or_insert(e);
        self.busy = false;
        self.wake();
    }

    fn wake(&mut self) {
        if let Some(w) = self.waiter.take() {
            w.wake();
        }
    }
}

/// The write half of a [`Stream`](crate::Stream).
pub struct Writer {
    pub(crate) start: Arc<Start>,
    pub(crate) queue: Shared,
    /// Wakes the task when bytes are queued; dropping it ends the task.
    pub(crate) kick: Sender<()>,
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let q = lock(&self.queue);
        f.debug_struct("Writer")
            .field("queued", &q.data.len())
            .field("busy", &q.busy)
            .finish()
    }
}

impl AsyncWrite for Writer {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.poll_write_vectored(cx, &[IoSlice::new(buf)])
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let me = self.get_mut();
        let mut q = lock(&me.queue);
        if let Some(e) = &q.error {
            return Poll::Ready(Err(copy_error(e)));
        }
        let room = MAX_QUEUED.saturating_sub(q.data.len());
        if room == 0 {
            q.waiter = Some(cx.waker().clone());
            return Poll::Pending;
        }
        let mut n = 0;
        for b in bufs {
            let take = b.len().min(room - n);
            q.data.extend_from_slice(&b[..take]);
            n += take;
            if n == room {
                break;
            }
        }
        if n > 0 && !q.busy {
            drop(q);
            me.start.ensure();
            // Full means the task is already told.
            let _ = me.kick.try_send(());
        }
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        // Queued bytes are the task's to write, whoever polls: waiting here
        // would make every answer wait a turn of the runtime (see the
        // module docs).
        Poll::Ready(Ok(()))
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let me = self.get_mut();
        let mut q = lock(&me.queue);
        if let Some(e) = &q.error {
            return Poll::Ready(Err(copy_error(e)));
        }
        if let Some(done) = &q.shut {
            return Poll::Ready(done.as_ref().map(|_| ()).map_err(copy_error));
        }
        q.waiter = Some(cx.waker().clone());
        if !q.shutdown {
            q.shutdown = true;
            drop(q);
            me.start.ensure();
            let _ = me.kick.try_send(());
        }
        Poll::Pending
    }
}

/// What the task does next.
enum Job {
    Write(Vec<u8>),
    Shutdown,
    Wait,
}

/// Writes what the write half queues, until it is dropped (cancelling a
/// write in flight: a peer that never reads must not hold the socket).
pub(crate) async fn write_task(stream: Rc<TcpStream>, queue: Shared, kick: Receiver<()>) {
    let mut spare = Vec::new();
    loop {
        let job = {
            let mut q = lock(&queue);
            if !q.data.is_empty() {
                q.busy = true;
                // Room again for a writer waiting on a full queue.
                q.wake();
                Job::Write(std::mem::replace(&mut q.data, std::mem::take(&mut spare)))
            } else if q.shutdown && q.shut.is_none() {
                q.busy = true;
                Job::Shutdown
            } else {
                q.busy = false;
                Job::Wait
            }
        };
        match job {
            Job::Wait => {
                if kick.recv().await.is_err() {
                    return;
                }
            }
            Job::Write(buf) => {
                let write = async { Some((&*stream).write_all(buf).await) };
                let Some(BufResult(res, mut buf)) = write.or(closed(&kick)).await else {
                    return;
                };
                buf.clear();
                spare = buf;
                if let Err(e) = res {
                    lock(&queue).fail(e);
                    return;
                }
            }
            Job::Shutdown => {
                let Some(res) = async { Some((&*stream).shutdown().await) }
                    .or(closed(&kick))
                    .await
                else {
                    return;
                };
                let mut q = lock(&queue);
                q.shut = Some(res);
                q.busy = false;
                q.wake();
                return;
            }
        }
    }
}
