//! `POST /api/batch?group=G`: many keys in one request. The body is a
//! JSON array of keys; the answer a JSON array, in the same order, of
//! `{"key": K, "value": V}` (a UTF-8 value), `{"key": K, "value_base64":
//! B}` (any other value) or `{"key": K, "error": E, "status": S}` (S is
//! the status `/api` would answer for that key alone).
//!
//! Keys are asked for in waves of [`WAVE`], each wave pipelined per
//! owner. A batch holds at most [`MAX_BATCH_KEYS`] keys (more: 413), and
//! answers at most [`MAX_BATCH_BYTES`] bytes of values: keys past that get
//! an error of status 413, and keys not yet asked for are not fetched.

use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{error_response, status_of, Front};
use groupcache_tokio::Error;

/// Keys in one batch at most.
pub const MAX_BATCH_KEYS: usize = 1000;
/// Bytes of values one batch answers at most.
pub const MAX_BATCH_BYTES: usize = 32 << 20;
/// Keys asked for at once.
pub const WAVE: usize = 16;

#[derive(Deserialize)]
pub(super) struct BatchQuery {
    group: Option<String>,
}

fn bad(status: StatusCode, msg: String) -> Response {
    (status, msg + "\n").into_response()
}

pub(super) async fn batch(
    State(f): State<Front>,
    Query(q): Query<BatchQuery>,
    body: axum::body::Bytes,
) -> Response {
    let Some(group) = q.group else {
        return bad(
            StatusCode::BAD_REQUEST,
            "missing query parameter: use /api/batch?group=G".into(),
        );
    };
    let keys: Vec<String> = match serde_json::from_slice(&body) {
        Ok(k) => k,
        Err(e) => {
            return bad(
                StatusCode::BAD_REQUEST,
                format!("the body must be a JSON array of keys: {e}"),
            )
        }
    };
    if keys.len() > MAX_BATCH_KEYS {
        let msg = format!(
            "{} keys: a batch holds at most {MAX_BATCH_KEYS}",
            keys.len()
        );
        return bad(StatusCode::PAYLOAD_TOO_LARGE, msg);
    }
    let Some(g) = f.api.group(&group) else {
        return error_response(Error::NoGroup(group.into()));
    };
    let mut out: Vec<Value> = Vec::with_capacity(keys.len());
    let mut bytes = 0usize;
    let over = |key: &str| json!({"key": key, "error": format!("batch answer limit of {MAX_BATCH_BYTES} bytes reached"), "status": 413});
    for wave in keys.chunks(WAVE) {
        if bytes > MAX_BATCH_BYTES {
            out.extend(wave.iter().map(|k| over(k)));
            continue;
        }
        for (key, r) in wave.iter().zip(g.get_many(wave).await) {
            out.push(match r {
                Ok(v) => {
                    bytes += v.len();
                    if bytes > MAX_BATCH_BYTES {
                        over(key)
                    } else {
                        match std::str::from_utf8(&v) {
                            Ok(s) => json!({"key": key, "value": s}),
                            Err(_) => {
                                let b = base64::engine::general_purpose::STANDARD.encode(&v);
                                json!({"key": key, "value_base64": b})
                            }
                        }
                    }
                }
                Err(e) => {
                    json!({"key": key, "error": e.to_string(), "status": status_of(&e).as_u16()})
                }
            });
        }
    }
    (
        [(header::CONTENT_TYPE, "application/json")],
        format!("{}\n", Value::Array(out)),
    )
        .into_response()
}
