//! `Range` requests on `/api`: one byte range, answered 206 with
//! `Content-Range`, or 416 when it starts past the end. A paged group's
//! object is streamed a few pages at a time, every page at the version
//! its first HEAD named.

use std::ops::Range;

use axum::body::Body;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use futures_util::stream::{self, StreamExt};
use groupcache_tokio::{Bytes, Group, RangeError};

use super::error_response;

/// Pages fetched (in parallel, from their owners) per piece of a streamed
/// answer: what one answer holds in memory at most.
pub const CHUNK_PAGES: u64 = 8;

/// Tries of an answer's first piece when the object changes under it.
const MAX_TRIES: usize = 3;

/// One byte range as a `Range` header writes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ByteRange {
    /// `bytes=a-b` (`Some(b)`, inclusive) or `bytes=a-` (`None`).
    From(u64, Option<u64>),
    /// `bytes=-n`: the last `n` bytes.
    Suffix(u64),
}

impl ByteRange {
    /// Parses a `Range` header. `None` for anything but one well-formed
    /// byte range: such a header is ignored and the whole value sent, as
    /// HTTP allows.
    ///
    /// ```
    /// use groupcache_cli::http::range::ByteRange;
    /// assert_eq!(ByteRange::parse("bytes=0-99"), Some(ByteRange::From(0, Some(99))));
    /// assert_eq!(ByteRange::parse("bytes=100-"), Some(ByteRange::From(100, None)));
    /// assert_eq!(ByteRange::parse("bytes=-5"), Some(ByteRange::Suffix(5)));
    /// assert_eq!(ByteRange::parse("bytes=5-1"), None);
    /// assert_eq!(ByteRange::parse("bytes=0-1,5-6"), None);
    /// assert_eq!(ByteRange::parse("items=0-1"), None);
    /// ```
    pub fn parse(header: &str) -> Option<Self> {
        let spec = header.trim().strip_prefix("bytes=")?.trim();
        let (a, b) = spec.split_once('-')?;
        let num = |s: &str| -> Option<u64> {
            (!s.is_empty() && s.bytes().all(|c| c.is_ascii_digit())).then(|| s.parse().ok())?
        };
        match (a.trim(), b.trim()) {
            ("", n) => num(n).map(ByteRange::Suffix),
            (a, "") => num(a).map(|a| ByteRange::From(a, None)),
            (a, b) => {
                let (a, b) = (num(a)?, num(b)?);
                (a <= b).then_some(ByteRange::From(a, Some(b)))
            }
        }
    }

    /// The bytes this range names in a value of `len` bytes; `None` when
    /// none can be sent (416).
    ///
    /// ```
    /// use groupcache_cli::http::range::ByteRange;
    /// assert_eq!(ByteRange::From(8, Some(100)).within(10), Some(8..10));
    /// assert_eq!(ByteRange::From(10, None).within(10), None);
    /// assert_eq!(ByteRange::Suffix(3).within(10), Some(7..10));
    /// assert_eq!(ByteRange::Suffix(30).within(10), Some(0..10));
    /// assert_eq!(ByteRange::Suffix(0).within(10), None);
    /// assert_eq!(ByteRange::Suffix(3).within(0), None);
    /// ```
    pub fn within(self, len: u64) -> Option<Range<u64>> {
        match self {
            ByteRange::From(a, _) if a >= len => None,
            ByteRange::From(a, b) => Some(a..b.map_or(len, |b| b.saturating_add(1).min(len))),
            ByteRange::Suffix(0) => None,
            ByteRange::Suffix(_) if len == 0 => None,
            ByteRange::Suffix(n) => Some(len - n.min(len)..len),
        }
    }
}

/// 416, saying the value's length.
fn unsatisfiable(len: u64) -> Response {
    (
        StatusCode::RANGE_NOT_SATISFIABLE,
        [(header::CONTENT_RANGE, format!("bytes */{len}"))],
        "range not satisfiable\n",
    )
        .into_response()
}

fn range_error(e: RangeError) -> Response {
    match e {
        RangeError::Get(e) => error_response(e),
        RangeError::Unsatisfiable { len, .. } => unsatisfiable(len),
        e => (StatusCode::SERVICE_UNAVAILABLE, format!("{e}\n")).into_response(),
    }
}

/// An answer of `body` for bytes `r` of `len`: 206 with `Content-Range`
/// when a range was asked, else 200.
fn answer(ranged: bool, r: &Range<u64>, len: u64, body: Body) -> Response {
    let mut resp = Response::new(body);
    let h = resp.headers_mut();
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    h.insert(header::CONTENT_LENGTH, (r.end - r.start).into());
    if ranged {
        let cr = format!("bytes {}-{}/{len}", r.start, r.end.saturating_sub(1));
        h.insert(
            header::CONTENT_RANGE,
            HeaderValue::from_str(&cr).expect("ASCII"),
        );
        *resp.status_mut() = StatusCode::PARTIAL_CONTENT;
    }
    resp
}

/// The answer for a group that is not paged: the whole value, sliced.
pub async fn whole(g: &Group, key: &str, range: Option<ByteRange>) -> Response {
    let value = match g.get(key).await {
        Ok(v) => v,
        Err(e) => return error_response(e),
    };
    let len = value.len() as u64;
    let r = match range.map(|r| r.within(len)) {
        None => 0..len,
        Some(Some(r)) => r,
        Some(None) => return unsatisfiable(len),
    };
    let body = value.slice(r.start as usize..r.end as usize);
    answer(range.is_some(), &r, len, Body::from(body))
}

/// The answer for a paged group: the first piece fetched before the
/// status is sent (so a missing object is a 404, and a change is retried),
/// the rest streamed, each piece at the first's version. Should the object
/// change after the status is sent, the answer is cut short, never mixed.
pub async fn paged(g: Group, key: String, range: Option<ByteRange>) -> Response {
    let page_size = g.pages().map_or(1, |p| p.page_size);
    let chunk = CHUNK_PAGES * page_size;
    for _ in 0..MAX_TRIES {
        let info = match g.stat(&key).await {
            Ok(info) => info,
            Err(e) => return range_error(e),
        };
        let want = match range.map(|r| r.within(info.len)) {
            None => 0..info.len,
            Some(Some(r)) => r,
            Some(None) => return unsatisfiable(info.len),
        };
        // Pieces end on page boundaries, so no page is fetched twice.
        let first_end = ((want.start / page_size + CHUNK_PAGES) * page_size).min(want.end);
        let first = match g.read_range(&key, &info, want.start..first_end).await {
            Ok(b) => b,
            Err(RangeError::Changed) => continue,
            Err(e) => return range_error(e),
        };
        let len = info.len;
        let version = info.version.clone();
        let rest = stream::unfold(
            Some((g.clone(), key.clone(), info, first_end)),
            move |state| {
                let end = want.end;
                async move {
                    let (g, key, info, pos) = state?;
                    if pos >= end {
                        return None;
                    }
                    let next = (pos + chunk).min(end);
                    match g.read_range(&key, &info, pos..next).await {
                        Ok(b) => Some((Ok(b), Some((g, key, info, next)))),
                        Err(e) => {
                            tracing::warn!(key, "ranged answer cut short: {e}");
                            Some((Err(std::io::Error::other(e.to_string())), None))
                        }
                    }
                }
            },
        );
        let body = stream::once(async move { Ok::<Bytes, std::io::Error>(first) }).chain(rest);
        let mut resp = answer(range.is_some(), &want, len, Body::from_stream(body));
        let etag = match version.starts_with('"') || version.starts_with("W/") {
            true => version.to_string(),
            false => format!("\"{version}\""),
        };
        if let Ok(v) = HeaderValue::from_str(&etag) {
            resp.headers_mut().insert(header::ETAG, v);
        }
        return resp;
    }
    range_error(RangeError::Changed)
}
