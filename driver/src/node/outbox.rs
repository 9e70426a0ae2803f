//! What the core sends on a connection, queued for its task to write.

use std::collections::VecDeque;
use std::io;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use atomic_waker::AtomicWaker;
use bytes::Bytes;
use futures_lite::{AsyncWrite, AsyncWriteExt};
use groupcache_core::wire::SHARE_VALUE_MIN;

/// Bytes queued for one connection, in order: small pieces copied into one
/// buffer, large values kept as the cache's shared buffers (never copied).
#[derive(Default)]
pub(super) struct Chunks {
    pub(super) bufs: VecDeque<Bytes>,
    /// Bytes after the last of `bufs`.
    pub(super) tail: Vec<u8>,
}

impl Chunks {
    pub(super) fn is_empty(&self) -> bool {
        self.bufs.is_empty() && self.tail.is_empty()
    }

    pub(super) fn len(&self) -> usize {
        self.bufs.iter().map(Bytes::len).sum::<usize>() + self.tail.len()
    }

    pub(super) fn push(&mut self, data: Bytes) {
        if data.len() >= SHARE_VALUE_MIN {
            self.seal();
            self.bufs.push_back(data);
        } else {
            self.tail.extend_from_slice(&data);
        }
    }

    pub(super) fn seal(&mut self) {
        if !self.tail.is_empty() {
            self.bufs
                .push_back(Bytes::from(std::mem::take(&mut self.tail)));
        }
    }

    /// Moves everything of `other` to the end of `self`. The common case,
    /// small answers only, swaps buffers and allocates nothing.
    pub(super) fn append(&mut self, other: &mut Chunks) {
        if !other.bufs.is_empty() {
            self.seal();
            self.bufs.append(&mut other.bufs);
        }
        if self.tail.is_empty() {
            std::mem::swap(&mut self.tail, &mut other.tail);
        } else {
            self.tail.extend_from_slice(&other.tail);
            other.tail.clear();
        }
    }

    pub(super) fn clear(&mut self) {
        self.bufs.clear();
        self.tail.clear();
    }

    pub(super) async fn write_to<W: AsyncWrite + Unpin>(&self, w: &mut W) -> io::Result<()> {
        for b in &self.bufs {
            w.write_all(b).await?;
        }
        w.write_all(&self.tail).await?;
        w.flush().await
    }
}

/// Bytes the core sends on one connection, waiting for its task to write
/// them. A mutex-guarded queue and a waker: small answers allocate nothing.
#[derive(Default)]
pub(super) struct Outbox {
    /// Pending bytes, and whether the core has dropped the connection.
    pub(super) state: Mutex<(Chunks, bool)>,
    pub(super) waker: AtomicWaker,
}

impl Outbox {
    pub(super) fn lock(&self) -> MutexGuard<'_, (Chunks, bool)> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn push(&self, data: Bytes) {
        self.lock().0.push(data);
        self.waker.wake();
    }

    pub(super) fn close(&self) {
        self.lock().1 = true;
        self.waker.wake();
    }

    /// Moves the pending bytes to the end of `out`, keeping both buffers'
    /// capacity; returns whether the connection is closed.
    pub(super) fn take(&self, out: &mut Chunks) -> bool {
        let mut s = self.lock();
        out.append(&mut s.0);
        s.1
    }

    /// Ready when there are bytes to write (moved into `out`) or the
    /// connection is closed.
    pub(super) fn poll_ready(&self, cx: &mut Context<'_>, out: &mut Chunks) -> Poll<()> {
        self.waker.register(cx.waker());
        let closed = self.take(out);
        if closed || !out.is_empty() {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

/// The core's hold on a connection: dropping it closes the connection once
/// its pending bytes are written (or abandons a connect in progress).
pub(super) struct ConnHandle(pub(super) Arc<Outbox>);

impl Drop for ConnHandle {
    fn drop(&mut self) {
        self.0.close();
    }
}
