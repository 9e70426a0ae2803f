//! Where a group's loader fetches values: a directory, an HTTP URL
//! template, or the original README's sample data.

use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

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

    /// The loader that fetches from this origin.
    pub fn loader(self) -> OriginLoader {
        OriginLoader(match self {
            Origin::Sample(table) => Box::new(sample::loader(table, |_| {})),
            Origin::Dir(root) => {
                let root = Arc::new(root);
                Box::new(move |key: String| {
                    let root = root.clone();
                    async move { read_file(&root, &key).await }
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
                let client = reqwest::Client::builder()
                    .timeout(Duration::from_secs(10))
                    .build()
                    .expect("HTTP client without TLS builds");
                Box::new(move |key: String| {
                    let encoded = utf8_percent_encode(&key, SEGMENT).to_string();
                    let url = template.replace("{key}", &encoded);
                    let client = client.clone();
                    async move { fetch(&client, &url).await }
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

async fn read_file(root: &Path, key: &str) -> Result<Bytes, LoadError> {
    let path = resolve(root, key)?;
    match tokio::fs::read(&path).await {
        Ok(data) => Ok(data.into()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Err(LoadError::NotFound(format!("{key} not exist")))
        }
        Err(e) => Err(LoadError::Failed(format!("reading {key:?}: {e}"))),
    }
}

async fn fetch(client: &reqwest::Client, url: &str) -> Result<Bytes, LoadError> {
    let resp = client
        .get(url)
        .send()
        .await
        .map_err(|e| LoadError::Failed(format!("GET {url}: {e}")))?;
    match resp.status() {
        s if s.is_success() => resp
            .bytes()
            .await
            .map_err(|e| LoadError::Failed(format!("GET {url}: {e}"))),
        reqwest::StatusCode::NOT_FOUND => Err(LoadError::NotFound(format!("GET {url}: 404"))),
        s => Err(LoadError::Failed(format!("GET {url}: {s}"))),
    }
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
