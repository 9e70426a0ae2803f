//! A connection's `Send` halves over tasks on a compio thread that carry
//! out their reads and writes as io_uring operations ([`read`](crate::read)
//! and [`write`](crate::write) say how each half works).
//!
//! The tasks start on the first use of either half, on the compio thread
//! using it (or the runtime's home), and each ends when its half is
//! dropped, cancelling what it has in flight; the socket closes when both
//! have ended.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};

use async_channel::Receiver;
use compio::net::TcpStream;
use futures_lite::{AsyncRead, AsyncWrite};

use crate::home::{stopped, Home};
use crate::read::{read_task, ReadDone, Reader};
use crate::write::{self, write_task, Writer};

/// A socket that becomes compio's on first use: compio takes a socket
/// over on the thread that will run its operations, so one adopted from
/// the standard library (a listener, a stream the caller set up) waits as
/// it is until then. Listeners and streams are adopted alike.
#[derive(Debug)]
pub(crate) struct Bridge<C, S> {
    std: Mutex<Option<S>>,
    compio: OnceLock<C>,
}

impl<C, S> Bridge<C, S> {
    /// A standard-library socket, to be made compio's on first use.
    pub(crate) fn new(std: S) -> Self {
        Self {
            std: Mutex::new(Some(std)),
            compio: OnceLock::new(),
        }
    }

    /// A socket that is compio's already (connected or accepted on a
    /// compio thread).
    pub(crate) fn ready(compio: C) -> Self {
        Self {
            std: Mutex::new(None),
            compio: OnceLock::from(compio),
        }
    }

    /// The compio value, made `from` the standard one on the first call
    /// (which must be on a compio thread).
    pub(crate) fn get(&self, from: impl FnOnce(S) -> io::Result<C>) -> io::Result<&C> {
        if let Some(c) = self.compio.get() {
            return Ok(c);
        }
        let std = self.std.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(std) = std {
            let _ = self.compio.set(from(std)?);
        }
        self.compio.get().ok_or_else(stopped)
    }

    /// The compio value itself, made `from` the standard one if needed (on
    /// a compio thread).
    pub(crate) fn into_compio(self, from: impl FnOnce(S) -> io::Result<C>) -> io::Result<C> {
        match self.compio.into_inner() {
            Some(c) => Ok(c),
            None => match self.std.into_inner().unwrap_or_else(|e| e.into_inner()) {
                Some(std) => from(std),
                None => Err(stopped()),
            },
        }
    }
}

/// A connection's socket, as [`Stream::new`] takes it.
pub(crate) type Source = Bridge<TcpStream, std::net::TcpStream>;

/// The task ends of a connection's channels, handed to whichever compio
/// thread starts its tasks.
struct Tasks {
    source: Source,
    asks: Receiver<Vec<u8>>,
    read_done: async_channel::Sender<ReadDone>,
    queue: write::Shared,
    kick: Receiver<()>,
}

/// Starts a connection's tasks once, from whichever half is used first.
pub(crate) struct Start {
    home: Home,
    /// Set once the tasks are handed over: every read and write asks, and
    /// after the first none needs the lock.
    started: AtomicBool,
    tasks: Mutex<Option<Tasks>>,
}

impl Start {
    pub(crate) fn ensure(&self) {
        if self.started.load(Ordering::Acquire) {
            return;
        }
        let tasks = self.tasks.lock().unwrap_or_else(|e| e.into_inner()).take();
        self.started.store(true, Ordering::Release);
        if let Some(tasks) = tasks {
            self.home.run(move || start_tasks(tasks));
        }
    }
}

fn start_tasks(t: Tasks) {
    match t.source.into_compio(TcpStream::from_std) {
        Ok(s) => {
            let s = Rc::new(s);
            compio::runtime::spawn(read_task(s.clone(), t.asks, t.read_done)).detach();
            compio::runtime::spawn(write_task(s, t.queue, t.kick)).detach();
        }
        Err(e) => {
            // Both halves see the error on their next operation.
            let _ = t.read_done.try_send((Err(copy_error(&e)), Vec::new()));
            t.queue.lock().unwrap_or_else(|e| e.into_inner()).fail(e);
        }
    }
}

/// An `io::Error` again, for a second caller (it is not `Clone`).
pub(crate) fn copy_error(e: &io::Error) -> io::Error {
    io::Error::new(e.kind(), e.to_string())
}

/// A TCP connection on compio, whole (what TLS wraps); see the module docs.
#[derive(Debug)]
pub struct Stream {
    reader: Reader,
    writer: Writer,
}

impl Stream {
    pub(crate) fn new(home: Home, source: Source) -> Self {
        let (ask, asks) = async_channel::bounded(1);
        let (read_done, done) = async_channel::bounded(1);
        let (kick_tx, kick) = async_channel::bounded(1);
        let queue = write::Shared::default();
        let start = Arc::new(Start {
            home,
            started: AtomicBool::new(false),
            tasks: Mutex::new(Some(Tasks {
                source,
                asks,
                read_done,
                queue: queue.clone(),
                kick,
            })),
        });
        Self {
            reader: Reader {
                start: start.clone(),
                ask,
                done: Box::pin(done),
                asked: false,
                buf: Vec::new(),
                pos: 0,
            },
            writer: Writer {
                start,
                queue,
                kick: kick_tx,
            },
        }
    }

    pub(crate) fn into_split(self) -> (Reader, Writer) {
        (self.reader, self.writer)
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().reader).poll_read(cx, buf)
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().writer).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().writer).poll_write_vectored(cx, bufs)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().writer).poll_flush(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().writer).poll_close(cx)
    }
}
