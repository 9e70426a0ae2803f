//! A client for processes that are not members of the cluster (the
//! original's `NewBttcpClient`): it asks one node for group/key and lets that
//! node route the request.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use groupcache_core::frame::{FrameDecoder, DEFAULT_MAX_FRAME};
use groupcache_core::wire::{encode_frame, Request, Response};

use crate::runtime::{timeout, Runtime};
use crate::Error;

/// Why a [`Client::get`] failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The node answered with an error (no such group, not found, load
    /// failure).
    #[error(transparent)]
    Remote(#[from] Error),
    /// The connection failed.
    #[error("connection to {addr} failed: {source}")]
    Io {
        /// The node's address.
        addr: String,
        /// The cause.
        source: std::io::Error,
    },
    /// Connecting or waiting for the answer took too long.
    #[error("{addr} did not answer in time")]
    Timeout {
        /// The node's address.
        addr: String,
    },
    /// The node sent something that is not a valid answer.
    #[error("protocol error from {addr}: {reason}")]
    Protocol {
        /// The node's address.
        addr: String,
        /// What was wrong.
        reason: String,
    },
}

impl ClientError {
    /// True when the node's loader says the key does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, Self::Remote(Error::NotFound(_)))
    }
}

struct Conn<R: Runtime> {
    r: R::Reader,
    w: R::Writer,
    buf: BytesMut,
    dec: FrameDecoder,
}

/// Asks a node for values over the peer protocol.
///
/// Connections are pooled and reused only after a clean answer; any error
/// drops the connection. Works against Go nodes too.
///
/// ```no_run
/// # async fn demo<R: groupcache_driver::Runtime>(rt: R) {
/// let client = groupcache_driver::Client::with_runtime(rt, "127.0.0.1:8001");
/// match client.get("score", "Tom").await {
///     Ok(v) => println!("{}", String::from_utf8_lossy(&v)),
///     Err(e) if e.is_not_found() => println!("no such key"),
///     Err(e) => eprintln!("{e}"),
/// }
/// # }
/// ```
pub struct Client<R: Runtime> {
    rt: R,
    addr: String,
    pool: Arc<Mutex<Vec<Conn<R>>>>,
    connect_timeout: Duration,
    request_timeout: Duration,
    max_wait: Duration,
    max_frame: usize,
}

impl<R: Runtime> Clone for Client<R> {
    fn clone(&self) -> Self {
        Self {
            rt: self.rt.clone(),
            addr: self.addr.clone(),
            pool: self.pool.clone(),
            connect_timeout: self.connect_timeout,
            request_timeout: self.request_timeout,
            max_wait: self.max_wait,
            max_frame: self.max_frame,
        }
    }
}

impl<R: Runtime + Default> Client<R> {
    /// A client of the node at `addr` on the runtime `R::default()` picks.
    pub fn new(addr: impl Into<String>) -> Self {
        Self::with_runtime(R::default(), addr)
    }
}

impl<R: Runtime> Client<R> {
    /// A client of the node at `addr` (`host:port`), with 1 s to connect,
    /// 3 s to answer, and at most 33 s for a slow load (see
    /// [`Client::max_wait`]).
    pub fn with_runtime(rt: R, addr: impl Into<String>) -> Self {
        Self {
            rt,
            addr: addr.into(),
            pool: Arc::default(),
            connect_timeout: Duration::from_secs(1),
            request_timeout: Duration::from_secs(3),
            max_wait: Duration::from_secs(33),
            max_frame: DEFAULT_MAX_FRAME,
        }
    }

    /// Sets the connect and request timeouts.
    pub fn timeouts(mut self, connect: Duration, request: Duration) -> Self {
        self.connect_timeout = connect;
        self.request_timeout = request;
        self
    }

    /// Longest a get may wait in all while the node keeps saying it is still
    /// loading (keepalives); the default, 33 s, is a group's default load
    /// timeout plus a request timeout. Silence longer than the request
    /// timeout still ends a get at once.
    pub fn max_wait(mut self, d: Duration) -> Self {
        self.max_wait = d;
        self
    }

    /// Gets `key` of `group` from the node.
    pub async fn get(&self, group: &str, key: &str) -> Result<Bytes, ClientError> {
        let pooled = self.pool.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let mut conn = match pooled {
            Some(c) => c,
            None => self.connect().await?,
        };
        let req = Request {
            group: group.into(),
            key: key.into(),
            from_peer: false,
            ext: true,
            progress: true,
        };
        let resp = self.exchange(&mut conn, &req).await?;
        // Only a connection that completed a clean exchange is reused.
        self.pool
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(conn);
        Error::from_response(group, resp).map_err(ClientError::Remote)
    }

    async fn connect(&self) -> Result<Conn<R>, ClientError> {
        let (r, w) = timeout(
            &self.rt,
            self.connect_timeout,
            self.rt.connect(self.addr.clone()),
        )
        .await
        .ok_or_else(|| ClientError::Timeout {
            addr: self.addr.clone(),
        })?
        .map_err(|source| self.io(source))?;
        Ok(Conn {
            r,
            w,
            buf: BytesMut::new(),
            dec: FrameDecoder::new(self.max_frame),
        })
    }

    fn io(&self, source: std::io::Error) -> ClientError {
        ClientError::Io {
            addr: self.addr.clone(),
            source,
        }
    }

    /// Sends `req` and reads its answer. Each wait for bytes is bounded by
    /// the request timeout; keepalives from a node that is still loading
    /// extend it, up to the maximum wait.
    async fn exchange(&self, c: &mut Conn<R>, req: &Request) -> Result<Response, ClientError> {
        let mut out = BytesMut::new();
        encode_frame(req, &mut out);
        let start = self.rt.now();
        let send = async {
            c.w.write_all(&out).await?;
            c.w.flush().await
        };
        timeout(&self.rt, self.request_timeout, send)
            .await
            .ok_or_else(|| self.timed_out())?
            .map_err(|e| self.io(e))?;
        let mut deadline = start + self.request_timeout;
        let mut chunk = [0u8; 8192];
        loop {
            let frame = c.dec.decode(&mut c.buf).map_err(|e| self.protocol(e))?;
            if let Some(payload) = frame {
                let resp = Response::decode_payload(&payload).map_err(|e| self.protocol(e))?;
                if resp.keepalive {
                    let now = self.rt.now();
                    deadline = (now + self.request_timeout).min(start + self.max_wait);
                    continue;
                }
                if !c.buf.is_empty() {
                    return Err(self.protocol("answer followed by unexpected bytes"));
                }
                return Ok(resp);
            }
            let left = deadline.saturating_duration_since(self.rt.now());
            let n = timeout(&self.rt, left, c.r.read(&mut chunk))
                .await
                .ok_or_else(|| self.timed_out())?
                .map_err(|e| self.io(e))?;
            if n == 0 {
                return Err(self.io(std::io::ErrorKind::UnexpectedEof.into()));
            }
            c.buf.extend_from_slice(&chunk[..n]);
        }
    }

    fn timed_out(&self) -> ClientError {
        ClientError::Timeout {
            addr: self.addr.clone(),
        }
    }

    fn protocol(&self, reason: impl ToString) -> ClientError {
        ClientError::Protocol {
            addr: self.addr.clone(),
            reason: reason.to_string(),
        }
    }
}
