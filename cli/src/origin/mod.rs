//! Where a group's loader fetches values: object storage, a directory,
//! an HTTP URL template, or the original README's sample data. Object
//! storage is always read in pages; a directory or a URL can be.

mod dir;
mod http;

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use groupcache_object_store::ObjectStoreSource;
use groupcache_tokio::{
    sample, InfoFuture, LoadError, LoadFuture, Loader, ObjectInfo, PageConfig, PageSource,
};

pub use dir::{resolve, DirPages};
pub use http::HttpOrigin;

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
    /// Objects under `s3://BUCKET/PREFIX`, `gs://...` or `az://...`.
    Store(String),
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
    /// assert!(Origin::parse("x", "s3://bucket/prefix").is_ok());
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
        if ["s3://", "s3a://", "gs://", "az://", "azure://"]
            .iter()
            .any(|p| spec.starts_with(p))
        {
            return Ok(Origin::Store(spec.to_string()));
        }
        if spec.starts_with("http://") || spec.starts_with("https://") {
            if !spec.contains("{key}") {
                return Err(format!("origin URL {spec:?} has no {{key}} placeholder"));
            }
            return Ok(Origin::Http(spec.to_string()));
        }
        Err(format!(
            "unknown origin {spec:?}: use sample, dir:PATH, http://host/path/{{key}}, s3://BUCKET/PREFIX, gs://..., az://... or synthetic:SIZE"
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
                    async move { dir::read_file(&root, &group, &key, max_value).await }
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
                let origin = HttpOrigin::new(&template, &group);
                Box::new(move |key: String| {
                    let origin = origin.clone();
                    async move { origin.fetch(&key, max_value).await }
                })
            }
            Origin::Store(url) => {
                // Whole objects from a store go through pages instead
                // (`Origin::pages`); this is only reached when asked for.
                Box::new(move |key: String| {
                    let msg = format!("{group}/{key}: {url} is read in pages");
                    async move { Err::<&str, _>(LoadError::Failed(msg)) }
                })
            }
        })
    }
}

impl Origin {
    /// The page size a group of this origin gets when its settings name
    /// none: object storage is read in pages of 1 MiB; the others whole.
    pub fn default_page_size(&self) -> Option<u64> {
        matches!(self, Origin::Store(_)).then_some(PageConfig::DEFAULT_PAGE_SIZE)
    }

    /// This origin as a source of pages for `group`; `store` holds the
    /// object store's options (over its environment).
    pub fn pages(
        self,
        group: &str,
        store: &BTreeMap<String, String>,
    ) -> Result<OriginPages, String> {
        match self {
            Origin::Dir(root) => Ok(OriginPages::Dir(DirPages::new(root, group))),
            Origin::Http(template) => Ok(OriginPages::Http(HttpOrigin::new(&template, group))),
            Origin::Store(url) => ObjectStoreSource::from_url(&url, store)
                .map(OriginPages::Store)
                .map_err(|e| format!("group {group}: {e}")),
            Origin::Sample(_) | Origin::Synthetic(_) => Err(format!(
                "group {group}: only dir:, http:// and object-store origins can be read in pages"
            )),
        }
    }
}

/// An origin read in pages.
#[derive(Debug, Clone)]
pub enum OriginPages {
    /// Files, read at an offset.
    Dir(DirPages),
    /// A URL, read with `Range`.
    Http(HttpOrigin),
    /// An object store, read with ranged GETs.
    Store(ObjectStoreSource),
}

impl PageSource for OriginPages {
    fn head(&self, key: String) -> InfoFuture {
        match self {
            OriginPages::Dir(d) => d.head(key),
            OriginPages::Http(h) => h.head(key),
            OriginPages::Store(s) => s.head(key),
        }
    }

    fn read(&self, key: String, info: ObjectInfo, range: Range<u64>) -> LoadFuture {
        match self {
            OriginPages::Dir(d) => d.read(key, info, range),
            OriginPages::Http(h) => h.read(key, info, range),
            OriginPages::Store(s) => s.read(key, info, range),
        }
    }
}

/// A [`Loader`] over an [`Origin`].
pub struct OriginLoader(Box<dyn Loader>);

impl Loader for OriginLoader {
    fn load(&self, key: String) -> LoadFuture {
        self.0.load(key)
    }
}

pub(crate) fn too_large(group: &str, key: &str, size: u64, max: usize) -> LoadError {
    LoadError::Failed(format!(
        "{group}/{key}: value of {size} bytes exceeds the limit of {max}"
    ))
}
