//! The HTTP front: `GET /api?group=G&key=K`, `GET /metrics`, `GET /healthz`.

use std::future::Future;

use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use groupcache_tokio::{Error, Node};
use serde::Deserialize;

#[derive(Clone)]
struct Front {
    /// The node that answers `/api`.
    api: Node,
    /// Every node whose stats `/metrics` exports.
    all: Vec<Node>,
}

#[derive(Deserialize)]
struct ApiQuery {
    group: Option<String>,
    key: Option<String>,
}

async fn api(State(f): State<Front>, Query(q): Query<ApiQuery>) -> Response {
    let (Some(group), Some(key)) = (q.group, q.key) else {
        return (
            StatusCode::BAD_REQUEST,
            "missing query parameter: use /api?group=G&key=K\n",
        )
            .into_response();
    };
    match f.api.get(&group, &key).await {
        Ok(v) => ([(header::CONTENT_TYPE, "application/octet-stream")], v).into_response(),
        Err(e) => {
            let status = match e {
                Error::NoGroup(_) | Error::NotFound(_) => StatusCode::NOT_FOUND,
                Error::Load(_) => StatusCode::BAD_GATEWAY,
                Error::Shutdown => StatusCode::SERVICE_UNAVAILABLE,
                _ => StatusCode::INTERNAL_SERVER_ERROR,
            };
            (status, format!("{e}\n")).into_response()
        }
    }
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

/// Serves the front on `listener` until `shutdown` completes: `/api` asks
/// `api`, `/metrics` reports every node of `all`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    api_node: Node,
    all: Vec<Node>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = Router::new()
        .route("/api", get(api))
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .with_state(Front { api: api_node, all });
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}
