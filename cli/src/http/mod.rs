//! The HTTP front:
//!
//! - `GET /api?group=G&key=K`: the value; with `Range: bytes=a-b`,
//!   `a-` or `-n`, those bytes (206, or 416), see [`range`].
//! - `POST /api/batch?group=G` with a JSON array of keys: their values or
//!   errors, see [`batch`].
//! - `PUT /api?group=G&key=K[&ttl=SECS]` with the value as the body: a set.
//! - `DELETE /api?group=G&key=K`: a remove.
//! - `POST /api/purge?group=G`: a purge.
//! - `GET /metrics`, `GET /healthz`.
//!
//! A write answers 200 with `{"not_reached":[...]}`: the peers that could
//! not be told. Writes can be turned off ([`HttpLimits::read_only`]): they
//! are answered 405.
//!
//! Served with hyper directly rather than `axum::serve`, so that every
//! connection is bounded: a time limit to send request headers (which also
//! closes keep-alive connections idle that long), a cap on connections, and
//! a cap on request bodies.

pub mod batch;
pub mod range;

use std::collections::HashMap;
use std::future::Future;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use groupcache_tokio::{Error, Node, Tls, WriteOp, WriteReport};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use serde::Deserialize;
use tokio_rustls::TlsAcceptor;

#[derive(Clone)]
pub(crate) struct Front {
    /// The node that answers `/api`.
    api: Node,
    /// Every node whose stats `/metrics` exports.
    all: Vec<Node>,
    /// Writes are refused.
    read_only: bool,
}

#[derive(Deserialize)]
struct ApiQuery {
    group: Option<String>,
    key: Option<String>,
    ttl: Option<u64>,
}

impl ApiQuery {
    /// The group, key and TTL; `None` if the group or key is missing.
    fn group_key(self) -> Option<(String, String, Option<u64>)> {
        Some((self.group?, self.key?, self.ttl))
    }
}

fn missing() -> Response {
    (
        StatusCode::BAD_REQUEST,
        "missing query parameter: use /api?group=G&key=K\n",
    )
        .into_response()
}

/// The status `/api` answers for `e`.
pub(crate) fn status_of(e: &Error) -> StatusCode {
    match e {
        Error::NoGroup(_) | Error::NotFound(_) => StatusCode::NOT_FOUND,
        Error::Load(_) | Error::Unreachable(_) | Error::Write(_) => StatusCode::BAD_GATEWAY,
        Error::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
        Error::Shutdown => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

pub(crate) fn error_response(e: Error) -> Response {
    (status_of(&e), format!("{e}\n")).into_response()
}

async fn api(State(f): State<Front>, Query(q): Query<ApiQuery>, headers: HeaderMap) -> Response {
    let Some((group, key, _)) = q.group_key() else {
        return missing();
    };
    let Some(g) = f.api.group(&group) else {
        return error_response(Error::NoGroup(group.into()));
    };
    let range = headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .and_then(range::ByteRange::parse);
    match g.pages() {
        Some(_) => range::paged(g, key, range).await,
        None => range::whole(&g, &key, range).await,
    }
}

/// Carries out a write unless the front is read-only.
async fn write(f: &Front, group: &str, op: WriteOp) -> Response {
    if f.read_only {
        return (
            StatusCode::METHOD_NOT_ALLOWED,
            "writes are turned off on this front\n",
        )
            .into_response();
    }
    match f.api.write(group, op).await {
        Ok(r) => report(&r),
        Err(e) => error_response(e),
    }
}

fn report(r: &WriteReport) -> Response {
    let body = serde_json::json!({ "not_reached": r.not_reached.iter().map(|p| &**p).collect::<Vec<_>>() });
    (
        [(header::CONTENT_TYPE, "application/json")],
        format!("{body}\n"),
    )
        .into_response()
}

async fn put(State(f): State<Front>, Query(q): Query<ApiQuery>, body: Bytes) -> Response {
    let Some((group, key, ttl)) = q.group_key() else {
        return missing();
    };
    let op = WriteOp::set(&key, body, ttl.map(Duration::from_secs));
    write(&f, &group, op).await
}

async fn delete(State(f): State<Front>, Query(q): Query<ApiQuery>) -> Response {
    let Some((group, key, _)) = q.group_key() else {
        return missing();
    };
    write(&f, &group, WriteOp::remove(&key)).await
}

async fn purge(State(f): State<Front>, Query(q): Query<ApiQuery>) -> Response {
    let Some(group) = q.group else {
        return (
            StatusCode::BAD_REQUEST,
            "missing query parameter: use /api/purge?group=G\n",
        )
            .into_response();
    };
    write(&f, &group, WriteOp::Purge).await
}

async fn metrics(State(f): State<Front>) -> Response {
    let text = groupcache_driver::metrics::prometheus_text(&f.all);
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

async fn healthz() -> &'static str {
    "ok\n"
}

/// Connections per client address, each held by a [`AddrSlot`].
#[derive(Clone)]
struct PerAddr {
    counts: Arc<Mutex<HashMap<IpAddr, usize>>>,
    max: usize,
}

impl PerAddr {
    fn new(max: usize) -> Self {
        Self {
            counts: Arc::default(),
            max,
        }
    }

    /// A slot for one more connection from `ip`, if it has not used its
    /// share.
    fn take(&self, ip: IpAddr) -> Option<AddrSlot> {
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        let n = counts.entry(ip).or_default();
        if *n >= self.max {
            return None;
        }
        *n += 1;
        Some(AddrSlot {
            owner: self.clone(),
            ip,
        })
    }
}

/// One connection's place in its address's share; given back on drop.
struct AddrSlot {
    owner: PerAddr,
    ip: IpAddr,
}

impl Drop for AddrSlot {
    fn drop(&mut self) {
        let mut counts = self.owner.counts.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = counts.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                counts.remove(&self.ip);
            }
        }
    }
}

/// Limits of the HTTP front, and whether it speaks HTTPS.
#[derive(Debug, Clone)]
pub struct HttpLimits {
    /// Time a client has to send a request's headers, counted from when the
    /// connection opens or the previous answer was sent.
    pub header_timeout: Duration,
    /// Connections at most; further ones are closed at once.
    pub max_connections: usize,
    /// Connections at most from one client address, so one address cannot
    /// take every slot.
    pub max_connections_per_addr: usize,
    /// Largest request body in bytes.
    pub max_body: usize,
    /// Refuse writes (PUT, DELETE, POST /api/purge) with 405.
    pub read_only: bool,
    /// Serve HTTPS with this certificate and key (clients need none).
    pub https: Option<Tls>,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            header_timeout: Duration::from_secs(5),
            max_connections: 512,
            max_connections_per_addr: 64,
            max_body: 1 << 20,
            read_only: false,
            https: None,
        }
    }
}

/// Serves the front on `listener` until `shutdown` completes: `/api` asks
/// `api`, `/metrics` reports every node of `all`. Connections still open
/// then get at most 5 s to finish.
pub async fn serve(
    listener: tokio::net::TcpListener,
    api_node: Node,
    all: Vec<Node>,
    limits: HttpLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = Router::new()
        .route("/api", get(api).put(put).delete(delete))
        .route("/api/purge", post(purge))
        .route("/api/batch", post(batch::batch))
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .layer(DefaultBodyLimit::max(limits.max_body))
        .with_state(Front {
            api: api_node,
            all,
            read_only: limits.read_only,
        });
    let slots = Arc::new(tokio::sync::Semaphore::new(limits.max_connections));
    let per_addr = PerAddr::new(limits.max_connections_per_addr);
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            () = &mut shutdown => break,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of descriptors or similar: back off rather than spin.
                tracing::warn!("HTTP accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Some(addr_slot) = per_addr.take(peer.ip()) else {
            tracing::debug!(%peer, "HTTP front: too many connections from this address");
            continue;
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::debug!(%peer, "HTTP front full: connection refused");
            continue;
        };
        let http = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_timeout)
            .clone();
        let service = TowerToHyperService::new(app.clone());
        let Some(tls) = &limits.https else {
            let conn = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
            tokio::spawn(async move {
                if let Err(e) = conn.await {
                    tracing::debug!(%peer, "HTTP connection ended: {e}");
                }
                drop((slot, addr_slot));
            });
            continue;
        };
        let (acceptor, watcher) = (TlsAcceptor::from(tls.https_config()), graceful.watcher());
        let handshake_limit = limits.header_timeout;
        tokio::spawn(async move {
            // The handshake counts against the header timeout, in this
            // connection's task: a silent client cannot stop accepting.
            match tokio::time::timeout(handshake_limit, acceptor.accept(stream)).await {
                Ok(Ok(tls_stream)) => {
                    let conn = http.serve_connection(TokioIo::new(tls_stream), service);
                    if let Err(e) = watcher.watch(conn).await {
                        tracing::debug!(%peer, "HTTPS connection ended: {e}");
                    }
                }
                Ok(Err(e)) => tracing::debug!(%peer, "HTTPS handshake failed: {e}"),
                Err(_) => tracing::debug!(%peer, "HTTPS handshake timed out"),
            }
            drop((slot, addr_slot));
        });
    }
    let _ = tokio::time::timeout(Duration::from_secs(5), graceful.shutdown()).await;
    Ok(())
}
