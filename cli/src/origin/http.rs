//! The `http://` origin: a URL template with `{key}`, whole or by page.

use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use groupcache_tokio::{Bytes, InfoFuture, LoadError, LoadFuture, ObjectInfo, PageSource};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use reqwest::{header, StatusCode};

use super::too_large;

/// Characters kept as they are in a key put into a URL path segment.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// An HTTP origin: a client and the URL template.
#[derive(Debug, Clone)]
pub struct HttpOrigin {
    client: reqwest::Client,
    template: Arc<str>,
    group: Arc<str>,
}

impl HttpOrigin {
    /// Fetches from `template` (with `{key}`) for `group`.
    pub fn new(template: &str, group: &str) -> Self {
        // No overall timeout here: the group's load timeout bounds (and
        // cancels) every fetch.
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .build()
            .expect("HTTP client without TLS builds");
        Self {
            client,
            template: template.into(),
            group: group.into(),
        }
    }

    fn url(&self, key: &str) -> String {
        let encoded = utf8_percent_encode(key, SEGMENT).to_string();
        self.template.replace("{key}", &encoded)
    }

    fn failed(
        &self,
        key: &str,
        url: &str,
        what: &str,
        detail: &dyn std::fmt::Display,
    ) -> LoadError {
        tracing::warn!(url, "origin {what}: {detail}");
        LoadError::Failed(format!("{}/{key}: origin {what}", self.group))
    }

    /// The whole value of `key`, at most `max` bytes.
    pub(super) async fn fetch(&self, key: &str, max: usize) -> Result<Bytes, LoadError> {
        let url = self.url(key);
        let resp = self
            .client
            .get(&url)
            .send()
            .await
            .map_err(|e| self.failed(key, &url, "request failed", &e))?;
        match resp.status() {
            s if s.is_success() => {}
            StatusCode::NOT_FOUND => return Err(LoadError::NotFound(format!("{key} not exist"))),
            s => return Err(self.failed(key, &url, &format!("answered {}", s.as_u16()), &s)),
        }
        if let Some(len) = resp.content_length().filter(|&l| l > max as u64) {
            return Err(too_large(&self.group, key, len, max));
        }
        let body = self.body(key, &url, resp, 0, max, false).await?;
        body.ok_or_else(|| {
            LoadError::Failed(format!(
                "{}/{key}: value exceeds the limit of {max} bytes",
                self.group
            ))
        })
    }

    /// `resp`'s body after skipping `skip` bytes: exactly `len` bytes when
    /// `exact` (`None` if fewer came), else at most `len` (`None` if more
    /// came).
    async fn body(
        &self,
        key: &str,
        url: &str,
        mut resp: reqwest::Response,
        mut skip: usize,
        len: usize,
        exact: bool,
    ) -> Result<Option<Bytes>, LoadError> {
        let mut body = BytesMut::new();
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| self.failed(key, url, "body failed", &e))?
        {
            let mut chunk = &chunk[..];
            let n = skip.min(chunk.len());
            chunk = &chunk[n..];
            skip -= n;
            if body.len() + chunk.len() > len {
                if !exact {
                    return Ok(None);
                }
                // A server that ignored the range: stop at the page's end.
                body.extend_from_slice(&chunk[..len - body.len()]);
                return Ok(Some(body.freeze()));
            }
            body.extend_from_slice(chunk);
        }
        Ok((!exact || body.len() == len).then(|| body.freeze()))
    }
}

/// The version an HTTP response names: its ETag, else its
/// Last-Modified date.
fn version_of(resp: &reqwest::Response) -> Option<String> {
    let h = resp.headers();
    let value = h
        .get(header::ETAG)
        .or_else(|| h.get(header::LAST_MODIFIED))?;
    Some(value.to_str().ok()?.to_string())
}

impl PageSource for HttpOrigin {
    fn head(&self, key: String) -> InfoFuture {
        let this = self.clone();
        Box::pin(async move {
            let url = this.url(&key);
            let resp = this
                .client
                .head(&url)
                .send()
                .await
                .map_err(|e| this.failed(&key, &url, "HEAD failed", &e))?;
            match resp.status() {
                s if s.is_success() => {}
                StatusCode::NOT_FOUND => {
                    return Err(LoadError::NotFound(format!("{key} not exist")))
                }
                s => return Err(this.failed(&key, &url, &format!("answered {}", s.as_u16()), &s)),
            }
            let len = resp
                .headers()
                .get(header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok()?.parse().ok())
                .ok_or_else(|| this.failed(&key, &url, "HEAD gave no Content-Length", &"paged"))?;
            let version = version_of(&resp).ok_or_else(|| {
                this.failed(&key, &url, "HEAD gave no ETag or Last-Modified", &"paged")
            })?;
            Ok(ObjectInfo::new(len, version))
        })
    }

    fn read(&self, key: String, info: ObjectInfo, range: Range<u64>) -> LoadFuture {
        let this = self.clone();
        Box::pin(async move {
            let url = this.url(&key);
            let want = (range.end - range.start) as usize;
            if want == 0 {
                return Ok(Bytes::new().into());
            }
            let changed = || {
                LoadError::Failed(format!(
                    "{}/{key}: the object changed since version {}",
                    this.group, info.version
                ))
            };
            // A strong ETag is matched with If-Match, a date with
            // If-Unmodified-Since. A weak ETag never passes If-Match (it
            // asks for strong comparison): the answer's own ETag is
            // compared below instead.
            let precondition = match &*info.version {
                v if v.starts_with("W/") => None,
                v if v.starts_with('"') => Some(header::IF_MATCH),
                _ => Some(header::IF_UNMODIFIED_SINCE),
            };
            let mut req = this.client.get(&url).header(
                header::RANGE,
                format!("bytes={}-{}", range.start, range.end - 1),
            );
            if let Some(p) = precondition {
                req = req.header(p, &*info.version);
            }
            let resp = req
                .send()
                .await
                .map_err(|e| this.failed(&key, &url, "request failed", &e))?;
            let skip = match resp.status() {
                StatusCode::PARTIAL_CONTENT => 0,
                // The whole object: the server does not do ranges.
                StatusCode::OK => range.start as usize,
                StatusCode::PRECONDITION_FAILED => return Err(changed()),
                StatusCode::NOT_FOUND => {
                    return Err(LoadError::NotFound(format!("{key} not exist")))
                }
                s => return Err(this.failed(&key, &url, &format!("answered {}", s.as_u16()), &s)),
            };
            if version_of(&resp).is_some_and(|v| v != *info.version) {
                return Err(changed());
            }
            match this.body(&key, &url, resp, skip, want, true).await? {
                Some(page) => Ok(page.into()),
                None => Err(changed()),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderMap;
    use axum::response::IntoResponse;

    /// An origin whose one object has a weak ETag, and which answers any
    /// If-Match with 412, as strong comparison of a weak ETag must.
    async fn weak_origin() -> String {
        async fn object(headers: HeaderMap) -> axum::response::Response {
            let etag = [(header::ETAG, "W/\"v1\"")];
            if headers.contains_key(header::IF_MATCH) {
                return (StatusCode::PRECONDITION_FAILED, etag).into_response();
            }
            let body = &b"0123456789"[..];
            let range = headers.get(header::RANGE).and_then(|v| v.to_str().ok());
            match range.and_then(|r| r.strip_prefix("bytes=")?.split_once('-')) {
                Some((a, b)) => {
                    let (a, b): (usize, usize) = (a.parse().unwrap(), b.parse().unwrap());
                    let cr = [(header::CONTENT_RANGE, format!("bytes {a}-{b}/10"))];
                    (StatusCode::PARTIAL_CONTENT, etag, cr, body[a..=b].to_vec()).into_response()
                }
                None => (etag, body.to_vec()).into_response(),
            }
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = axum::Router::new().route("/o/{key}", axum::routing::get(object));
        tokio::spawn(async move { axum::serve(listener, app).await });
        format!("http://{addr}/o/{{key}}")
    }

    #[tokio::test]
    async fn pages_of_an_object_with_a_weak_etag() {
        let origin = HttpOrigin::new(&weak_origin().await, "g");
        let info = origin.head("k".into()).await.unwrap();
        assert_eq!((info.len, &*info.version), (10, "W/\"v1\""));
        let page = origin.read("k".into(), info.clone(), 4..8).await.unwrap();
        assert_eq!(page.value, "4567");
        // Another version is refused: the answer's ETag is compared.
        let stale = ObjectInfo::new(10, "W/\"v0\"");
        let e = origin.read("k".into(), stale, 0..4).await.unwrap_err();
        assert!(matches!(e, LoadError::Failed(m) if m.contains("changed")));
    }
}
