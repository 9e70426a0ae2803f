//! The read half: each read an io_uring operation of a task on a compio
//! thread, asked for when the caller reads and nothing is left over.

use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll};

use async_channel::{Receiver, Sender};
use compio::buf::BufResult;
use compio::io::AsyncRead as _;
use compio::net::TcpStream;
use futures_lite::{AsyncRead, FutureExt, Stream as _};

use crate::home::{closed, stopped};
use crate::stream::Start;

/// What a read brings back: its result and the buffer it filled.
pub(crate) type ReadDone = (io::Result<usize>, Vec<u8>);

/// The read half of a [`Stream`](crate::Stream).
pub struct Reader {
    pub(crate) start: Arc<Start>,
    /// Asks the task for a read into this buffer (up to its capacity);
    /// dropping it ends the task.
    pub(crate) ask: Sender<Vec<u8>>,
    pub(crate) done: Pin<Box<Receiver<ReadDone>>>,
    pub(crate) asked: bool,
    /// Bytes read and not yet handed out, from `pos`.
    pub(crate) buf: Vec<u8>,
    pub(crate) pos: usize,
}

impl std::fmt::Debug for Reader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reader")
            .field("asked", &self.asked)
            .field("buffered", &(self.buf.len() - self.pos))
            .finish()
    }
}

impl AsyncRead for Reader {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let me = self.get_mut();
        if out.is_empty() {
            return Poll::Ready(Ok(0));
        }
        loop {
            if me.pos < me.buf.len() {
                let n = out.len().min(me.buf.len() - me.pos);
                out[..n].copy_from_slice(&me.buf[me.pos..me.pos + n]);
                me.pos += n;
                return Poll::Ready(Ok(n));
            }
            if !me.asked {
                me.start.ensure();
                let mut buf = std::mem::take(&mut me.buf);
                buf.clear();
                // A read fills the buffer's spare capacity, never more.
                buf.reserve(out.len());
                me.ask.try_send(buf).map_err(|_| stopped())?;
                me.asked = true;
            }
            match me.done.as_mut().poll_next(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(None) => return Poll::Ready(Err(stopped())),
                Poll::Ready(Some((res, buf))) => {
                    me.asked = false;
                    me.buf = buf;
                    me.pos = 0;
                    match res {
                        Ok(0) => return Poll::Ready(Ok(0)),
                        Ok(_) => {}
                        Err(e) => return Poll::Ready(Err(e)),
                    }
                }
            }
        }
    }
}

/// Reads when asked, until the read half is dropped (cancelling a read in
/// flight).
pub(crate) async fn read_task(
    stream: Rc<TcpStream>,
    asks: Receiver<Vec<u8>>,
    done: Sender<ReadDone>,
) {
    while let Ok(buf) = asks.recv().await {
        let read = async {
            let BufResult(res, buf) = (&*stream).read(buf).await;
            Some((res, buf))
        };
        let Some(out) = read.or(closed(&asks)).await else {
            return;
        };
        if done.send(out).await.is_err() {
            return;
        }
    }
}
