//! Where a group's loader fetches values: a directory, an HTTP URL
//! template, or the original README's sample data.

use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use groupcache_tokio::{sample, Bytes, LoadError, LoadFuture, Loader};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

/// Characters kept as they are in a key put into a URL path segment.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// A group's origin.
#[derive(Debug, Clone)]
pub enum Origin {
    /// One of the original README's sample tables.
    Sample(&'static [(&'static str, &'static str)]),
    /// Files under a directory; the key is the relative path.
    Dir(PathBuf),
    /// An HTTP URL with `{key}` where the key goes.
    Http(String),
    /// Made-up values of a fixed size (the key, repeated): for load tests.
    Synthetic(usize),
}

impl Origin {
    /// Parses `sample`, `dir:PATH` or `http://host/path/{key}` for the
    /// group `group`.
    ///
    /// ```
    /// use groupcache_cli::origin::Origin;
    /// assert!(Origin::parse("score", "sample").is_ok());
    /// assert!(Origin::parse("x", "sample").is_err()); // no sample table "x"
    /// assert!(Origin::parse("x", "http://origin/{key}").is_ok());
    /// assert!(Origin::parse("x", "http://origin/fixed").is_err()); // no {key}
    /// assert!(Origin::parse("x", "synthetic:100").is_ok());
    /// ```
    pub fn parse(group: &str, spec: &str) -> Result<Self, String> {
        if spec == "sample" {
            return sample::GROUPS
                .iter()
                .find(|(g, _)| *g == group)
                .map(|(_, t)| Origin::Sample(t))
                .ok_or_else(|| {
                    format!("origin \"sample\" exists for the groups score and age, not {group:?}")
                });
        }
        if let Some(dir) = spec.strip_prefix("dir:") {
            let root = Path::new(dir)
                .canonicalize()
                .map_err(|e| format!("origin directory {dir:?}: {e}"))?;
            if !root.is_dir() {
                return Err(format!("origin {dir:?} is not a directory"));
            }
            return Ok(Origin::Dir(root));
        }
        if let Some(size) = spec.strip_prefix("synthetic:") {
            let size = size
                .parse()
                .map_err(|e| format!("origin {spec:?}: value size: {e}"))?;
            return Ok(Origin::Synthetic(size));
        }
        if spec.starts_with("http://") || spec.starts_with("https://") {
            if !spec.contains("{key}") {
                return Err(format!("origin URL {spec:?} has no {{key}} placeholder"));
            }
            return Ok(Origin::Http(spec.to_string()));
        }
        Err(format!(
            "unknown origin {spec:?}: use sample, dir:PATH, http://host/path/{{key}} or synthetic:SIZE"
        ))
    }

    /// The loader that fetches from this origin for `group`, reading at
    /// most `max_value` bytes of any value. Errors it returns name the group
    /// and key and what went wrong, never an origin URL or path; the log
    /// keeps the detail.
    pub fn loader(self, group: &str, max_value: usize) -> OriginLoader {
        let group: Arc<str> = group.into();
        OriginLoader(match self {
            Origin::Sample(table) => Box::new(sample::loader(table, |_| {})),
            Origin::Dir(root) => {
                let root = Arc::new(root);
                Box::new(move |key: String| {
                    let (root, group) = (root.clone(), group.clone());
                    async move { read_file(&root, &group, &key, max_value).await }
                })
            }
            Origin::Synthetic(size) => Box::new(move |key: String| {
                let value: Vec<u8> = key
                    .bytes()
                    .chain(std::iter::repeat(b'.'))
                    .take(size)
                    .collect();
                async move { Ok::<_, LoadError>(value) }
            }),
            Origin::Http(template) => {
                // No overall timeout here: the group's load timeout bounds
                // (and cancels) every fetch.
                let client = reqwest::Client::builder()
                    .connect_timeout(Duration::from_secs(5))
                    .build()
                    .expect("HTTP client without TLS builds");
                Box::new(move |key: String| {
                    let encoded = utf8_percent_encode(&key, SEGMENT).to_string();
                    let url = template.replace("{key}", &encoded);
                    let (client, group) = (client.clone(), group.clone());
                    async move { fetch(&client, &url, &group, &key, max_value).await }
                })
            }
        })
    }
}

/// A [`Loader`] over an [`Origin`].
pub struct OriginLoader(Box<dyn Loader>);

impl Loader for OriginLoader {
    fn load(&self, key: String) -> LoadFuture {
        self.0.load(key)
    }
}

/// The file for `key` under `root`, refusing any key that would leave it.
pub fn resolve(root: &Path, key: &str) -> Result<PathBuf, LoadError> {
    let escapes = || LoadError::NotFound(format!("key {key:?} is outside the directory: refused"));
    let rel = Path::new(key);
    if key.is_empty() || !rel.components().all(|c| matches!(c, Component::Normal(_))) {
        return Err(escapes());
    }
    let path = root.join(rel);
    // Follow symlinks, then check the real path is still inside.
    let real = path
        .canonicalize()
        .map_err(|_| LoadError::NotFound(format!("{key} not exist")))?;
    if !real.starts_with(root) {
        return Err(escapes());
    }
    Ok(real)
}

async fn read_file(root: &Path, group: &str, key: &str, max: usize) -> Result<Bytes, LoadError> {
    let path = resolve(root, key)?;
    let failed = |e: std::io::Error| {
        tracing::warn!(path = %path.display(), "origin read failed: {e}");
        LoadError::Failed(format!("{group}/{key}: origin read failed"))
    };
    let size = match tokio::fs::metadata(&path).await {
        Ok(m) => m.len(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(LoadError::NotFound(format!("{key} not exist")))
        }
        Err(e) => return Err(failed(e)),
    };
    if size > max as u64 {
        return Err(too_large(group, key, size, max));
    }
    match tokio::fs::read(&path).await {
        // The file may have grown since its size was read.
        Ok(data) if data.len() > max => Err(too_large(group, key, data.len() as u64, max)),
        Ok(data) => Ok(data.into()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Err(LoadError::NotFound(format!("{key} not exist")))
        }
        Err(e) => Err(failed(e)),
    }
}

fn too_large(group: &str, key: &str, size: u64, max: usize) -> LoadError {
    LoadError::Failed(format!(
        "{group}/{key}: value of {size} bytes exceeds the limit of {max}"
    ))
}

/// Fetches `url`, reading at most `max` bytes of its body.
async fn fetch(
    client: &reqwest::Client,
    url: &str,
    group: &str,
    key: &str,
    max: usize,
) -> Result<Bytes, LoadError> {
    let failed = |what: &str, detail: &dyn std::fmt::Display| {
        tracing::warn!(url, "origin {what}: {detail}");
        LoadError::Failed(format!("{group}/{key}: origin {what}"))
    };
    let mut resp = client
        .get(url)
        .send()
        .await
        .map_err(|e| failed("request failed", &e))?;
    match resp.status() {
        s if s.is_success() => {}
        reqwest::StatusCode::NOT_FOUND => {
            return Err(LoadError::NotFound(format!("{key} not exist")))
        }
        s => return Err(failed(&format!("answered {}", s.as_u16()), &s)),
    }
    if let Some(len) = resp.content_length().filter(|&l| l > max as u64) {
        return Err(too_large(group, key, len, max));
    }
    // The declared length may be absent or wrong: count what arrives.
    let mut body = BytesMut::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| failed("body failed", &e))? {
        if body.len() + chunk.len() > max {
            return Err(LoadError::Failed(format!(
                "{group}/{key}: value exceeds the limit of {max} bytes"
            )));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_that_leave_the_directory_are_refused() {
        let dir = std::env::temp_dir().join(format!("gc-origin-{}", std::process::id()));
        let root = dir.join("root");
        std::fs::create_dir_all(root.join("sub")).unwrap();
        std::fs::write(root.join("sub/a.txt"), "A").unwrap();
        std::fs::write(dir.join("secret"), "S").unwrap();
        #[cfg(unix)]
        std::os::unix::fs::symlink(dir.join("secret"), root.join("link")).unwrap();
        let root = root.canonicalize().unwrap();
        assert!(resolve(&root, "sub/a.txt").is_ok());
        for bad in [
            "../secret",
            "/etc/passwd",
            "sub/../../secret",
            "",
            ".",
            "./..",
            "link",
        ] {
            match resolve(&root, bad) {
                Err(LoadError::NotFound(m)) => assert!(m.contains("outside"), "{bad}: {m}"),
                other => panic!("{bad:?} gave {other:?}"),
            }
        }
        assert!(
            matches!(resolve(&root, "missing"), Err(LoadError::NotFound(m)) if m.contains("not exist"))
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
