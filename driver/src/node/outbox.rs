//! What the core sends on a connection, queued for its task to write.

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use atomic_waker::AtomicWaker;
use bytes::Bytes;
use futures_lite::{AsyncWrite, AsyncWriteExt};
use groupcache_core::wire::{Response, SHARE_VALUE_MIN};

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

    /// Writes everything, in order, the shared buffers and the tail
    /// gathered into as few `writev` calls as the socket takes: the answers
    /// to a pipelined batch go out together, large values included.
    pub(super) async fn write_to<W: AsyncWrite + Unpin>(&self, w: &mut W) -> io::Result<()> {
        if self.bufs.is_empty() {
            w.write_all(&self.tail).await?;
            return w.flush().await;
        }
        let mut pending: Vec<&[u8]> = self
            .bufs
            .iter()
            .map(|b| &b[..])
            .chain([&self.tail[..]])
            .filter(|p| !p.is_empty())
            .collect();
        let mut first = 0;
        while first < pending.len() {
            let mut iov = [IoSlice::new(&[]); MAX_IOV];
            let k = (pending.len() - first).min(MAX_IOV);
            for (slot, p) in iov.iter_mut().zip(&pending[first..first + k]) {
                *slot = IoSlice::new(p);
            }
            let mut n = w.write_vectored(&iov[..k]).await?;
            if n == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            while n > 0 {
                let p = pending[first];
                if n >= p.len() {
                    n -= p.len();
                    first += 1;
                } else {
                    pending[first] = &p[n..];
                    n = 0;
                }
            }
        }
        w.flush().await
    }
}

/// Buffers handed to one `writev` at most: far below every system's
/// `IOV_MAX` (1024 on Linux), and enough to cover a pipelined batch.
const MAX_IOV: usize = 64;

/// What the core sends on one connection, waiting for its task: bytes to
/// write, or (for an inbound connection, whose task keeps its state)
/// answers to encode. A mutex-guarded queue and a waker: small answers
/// allocate nothing.
#[derive(Default)]
pub(super) struct Outbox {
    pub(super) state: Mutex<Queued>,
    pub(super) waker: AtomicWaker,
}

/// An outbox's contents.
#[derive(Default)]
pub(super) struct Queued {
    pub(super) chunks: Chunks,
    /// Answers to requests the node served, by their sequence numbers.
    pub(super) answers: Vec<(u64, Response)>,
    /// The core has dropped the connection.
    pub(super) closed: bool,
}

impl Outbox {
    pub(super) fn lock(&self) -> MutexGuard<'_, Queued> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn push(&self, data: Bytes) {
        self.lock().chunks.push(data);
        self.waker.wake();
    }

    pub(super) fn push_answer(&self, seq: u64, response: Response) {
        self.lock().answers.push((seq, response));
        self.waker.wake();
    }

    pub(super) fn close(&self) {
        self.lock().closed = true;
        self.waker.wake();
    }

    /// Moves the pending bytes to the end of `out`, keeping both buffers'
    /// capacity; returns whether the connection is closed.
    pub(super) fn take(&self, out: &mut Chunks) -> bool {
        let mut s = self.lock();
        out.append(&mut s.chunks);
        s.closed
    }

    /// Moves the answers waiting to the end of `out`; returns whether the
    /// connection is closed.
    pub(super) fn take_answers(&self, out: &mut Vec<(u64, Response)>) -> bool {
        let mut s = self.lock();
        out.append(&mut s.answers);
        s.closed
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

    /// Ready when there are answers (moved into `out`) or the connection
    /// is closed, which it returns.
    pub(super) fn poll_answers(
        &self,
        cx: &mut Context<'_>,
        out: &mut Vec<(u64, Response)>,
    ) -> Poll<bool> {
        self.waker.register(cx.waker());
        let closed = self.take_answers(out);
        if closed || !out.is_empty() {
            Poll::Ready(closed)
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

#[cfg(test)]
mod tests {
    use std::pin::Pin;

    use super::*;

    /// Takes at most `limit` bytes per call, across the slices it is given,
    /// and counts its calls.
    struct Trickle {
        got: Vec<u8>,
        limit: usize,
        calls: usize,
    }

    impl AsyncWrite for Trickle {
        fn poll_write(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            self.poll_write_vectored_inner(&[IoSlice::new(buf)])
        }

        fn poll_write_vectored(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            bufs: &[IoSlice<'_>],
        ) -> Poll<io::Result<usize>> {
            self.poll_write_vectored_inner(bufs)
        }

        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }

        fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    impl Trickle {
        fn poll_write_vectored_inner(&mut self, bufs: &[IoSlice<'_>]) -> Poll<io::Result<usize>> {
            self.calls += 1;
            let mut n = 0;
            for b in bufs {
                let take = b.len().min(self.limit - n);
                self.got.extend_from_slice(&b[..take]);
                n += take;
            }
            Poll::Ready(Ok(n))
        }
    }

    fn chunks() -> (Chunks, Vec<u8>) {
        let mut c = Chunks::default();
        let mut want = Vec::new();
        for i in 0..100u8 {
            // Small answers go to the tail, large ones stay shared buffers.
            let len = if i % 3 == 0 {
                SHARE_VALUE_MIN + usize::from(i)
            } else {
                5
            };
            let piece = Bytes::from(vec![i; len]);
            want.extend_from_slice(&piece);
            c.push(piece);
        }
        (c, want)
    }

    #[test]
    fn write_to_sends_every_byte_in_order_across_partial_writes() {
        for limit in [1, 7, 4096, SHARE_VALUE_MIN + 3, usize::MAX / 2] {
            let (c, want) = chunks();
            let mut w = Trickle {
                got: Vec::new(),
                limit,
                calls: 0,
            };
            futures_lite::future::block_on(c.write_to(&mut w)).unwrap();
            assert_eq!(w.got, want, "limit {limit}");
        }
    }

    #[test]
    fn write_to_gathers_a_batch_into_one_call_per_max_iov_buffers() {
        let (c, want) = chunks();
        let pieces = c.bufs.len() + 1;
        let mut w = Trickle {
            got: Vec::new(),
            limit: usize::MAX / 2,
            calls: 0,
        };
        futures_lite::future::block_on(c.write_to(&mut w)).unwrap();
        assert_eq!(w.got, want);
        assert_eq!(w.calls, pieces.div_ceil(MAX_IOV));
    }

    #[test]
    fn write_to_reports_a_writer_that_takes_nothing() {
        let (c, _) = chunks();
        let mut w = Trickle {
            got: Vec::new(),
            limit: 0,
            calls: 0,
        };
        let err = futures_lite::future::block_on(c.write_to(&mut w)).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::WriteZero);
    }
}
