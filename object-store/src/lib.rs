//! Object-store origins for groupcache-rs: a group in front of S3, Google
//! Cloud Storage or Azure Blob Storage, reading objects in pages.
//!
//! [`ObjectStoreSource`] is a [`PageSource`]: give it to
//! `Builder::paged_group` and every page of an object becomes one cache
//! key, loaded once in the whole cluster with one ranged GET. Each read
//! names the object's ETag (`If-Match`), so a replaced object is never
//! stitched from two versions.
//!
//! The stores come from the [`object_store`] crate, which runs on tokio.
//! So that one source serves a node on tokio, smol, async-std or compio
//! alike, every request runs on a small tokio runtime of this crate's own
//! (two threads, started with the first source and shared by all), and
//! its result is awaited over a handle any runtime can poll. A request
//! whose reader gives up (the group's load timeout) is cancelled there
//! too.
//!
//! # Features
//!
//! Each store is a feature, all off by default: `s3` (`s3://`), `gcs`
//! (`gs://`), `azure` (`az://`). The `groupcache` command turns on `s3`.
//!
//! # Credentials
//!
//! Read from the store's usual environment, as its own tools do: for S3
//! `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`,
//! `AWS_ENDPOINT_URL` (an S3-compatible server) and `AWS_ALLOW_HTTP=true`
//! (plain http); `GOOGLE_*` for GCS; `AZURE_*` for Azure. The `options` of
//! [`ObjectStoreSource::from_url`] set the same keys (`aws_region`,
//! `aws_endpoint`, ...) and win over the environment.

use std::ops::Range;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use groupcache_driver::{Bytes, InfoFuture, LoadError, LoadFuture, ObjectInfo, PageSource};
use object_store::path::Path;
use object_store::{GetOptions, GetRange, ObjectStore, ObjectStoreExt};

mod home;
#[cfg(feature = "testing")]
pub mod testing;

pub use object_store;

/// Why a source could not be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SourceError {
    /// The URL is not one this build can read.
    #[error("{url:?}: {why}")]
    Url {
        /// The URL given.
        url: String,
        /// What is wrong with it.
        why: String,
    },
    /// An option is not one the store knows.
    #[error("{url:?}: unknown option {key:?}")]
    Option {
        /// The URL given.
        url: String,
        /// The option's name.
        key: String,
    },
    /// The store's client could not be built (bad settings).
    #[error("{url:?}: {source}")]
    Store {
        /// The URL given.
        url: String,
        /// The store's message.
        source: object_store::Error,
    },
    /// The runtime the store runs on could not start.
    #[error("object store runtime: {0}")]
    Runtime(#[from] std::io::Error),
}

/// The objects under a prefix of a bucket, as a [`PageSource`]: a key is
/// an object's path under the prefix.
///
/// Keys that would leave the prefix are refused as not found: an empty
/// key, a leading or trailing `/`, an empty, `.` or `..` segment, or a
/// control character. Anything else is the object's name as it is:
/// spaces, UTF-8 and `%2f` included.
///
/// ```no_run
/// use groupcache_object_store::ObjectStoreSource;
///
/// // Credentials and endpoint from AWS_* in the environment.
/// let source = ObjectStoreSource::from_url("s3://my-bucket/data", [("aws_region", "eu-west-1")])?;
/// // Builder::paged_group(GroupConfig::new("objects", 1 << 30), PageConfig::default(), source)
/// # Ok::<(), groupcache_object_store::SourceError>(())
/// ```
#[derive(Clone)]
pub struct ObjectStoreSource {
    store: Arc<dyn ObjectStore>,
    prefix: Path,
    /// What the source reads, for messages: the URL without credentials.
    name: Arc<str>,
    /// When the bucket was last seen to exist: a HEAD's 404 has no body
    /// to tell a missing object from a missing bucket, so the bucket is
    /// checked then, at most once per [`BUCKET_CHECK_TTL`].
    bucket_seen: Arc<Mutex<Option<Instant>>>,
}

/// How long a bucket seen to exist is trusted to.
const BUCKET_CHECK_TTL: Duration = Duration::from_secs(10);

impl std::fmt::Debug for ObjectStoreSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectStoreSource")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl ObjectStoreSource {
    /// The objects under `url` (`s3://BUCKET/PREFIX`, `gs://...`,
    /// `az://CONTAINER/PREFIX`), configured from the environment and then
    /// `options` (the store's configuration keys, such as `aws_endpoint`).
    pub fn from_url<I, K, V>(url: &str, options: I) -> Result<Self, SourceError>
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: Into<String>,
    {
        let parsed = url::Url::parse(url).map_err(|e| SourceError::Url {
            url: url.into(),
            why: e.to_string(),
        })?;
        let bad_option = |key: &str| SourceError::Option {
            url: url.into(),
            key: key.into(),
        };
        let built = |r: Result<Arc<dyn ObjectStore>, object_store::Error>| {
            r.map_err(|source| SourceError::Store {
                url: url.into(),
                source,
            })
        };
        let options: Vec<(String, String)> = options
            .into_iter()
            .map(|(k, v)| (k.as_ref().to_ascii_lowercase(), v.into()))
            .collect();
        let store: Arc<dyn ObjectStore> = match parsed.scheme() {
            #[cfg(feature = "s3")]
            "s3" | "s3a" => {
                use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
                let mut b = AmazonS3Builder::from_env().with_url(url);
                for (k, v) in options {
                    let key: AmazonS3ConfigKey = k.parse().map_err(|_| bad_option(&k))?;
                    b = b.with_config(key, v);
                }
                built(b.build().map(|s| Arc::new(s) as _))?
            }
            #[cfg(feature = "gcs")]
            "gs" => {
                use object_store::gcp::{GoogleCloudStorageBuilder, GoogleConfigKey};
                let mut b = GoogleCloudStorageBuilder::from_env().with_url(url);
                for (k, v) in options {
                    let key: GoogleConfigKey = k.parse().map_err(|_| bad_option(&k))?;
                    b = b.with_config(key, v);
                }
                built(b.build().map(|s| Arc::new(s) as _))?
            }
            #[cfg(feature = "azure")]
            "az" | "azure" | "abfs" | "abfss" => {
                use object_store::azure::{AzureConfigKey, MicrosoftAzureBuilder};
                let mut b = MicrosoftAzureBuilder::from_env().with_url(url);
                for (k, v) in options {
                    let key: AzureConfigKey = k.parse().map_err(|_| bad_option(&k))?;
                    b = b.with_config(key, v);
                }
                built(b.build().map(|s| Arc::new(s) as _))?
            }
            other => {
                let _ = (bad_option, built, options);
                return Err(SourceError::Url {
                    url: url.into(),
                    why: format!(
                        "scheme {other:?} is not built in (features: {})",
                        built_in().join(", ")
                    ),
                });
            }
        };
        let prefix = Path::parse(parsed.path()).map_err(|e| SourceError::Url {
            url: url.into(),
            why: e.to_string(),
        })?;
        let name = format!(
            "{}://{}/{}",
            parsed.scheme(),
            parsed.host_str().unwrap_or(""),
            prefix
        );
        Ok(Self::new(store, prefix, name))
    }

    /// The objects under `prefix` of any `store`; `name` is what messages
    /// call it.
    pub fn new(store: Arc<dyn ObjectStore>, prefix: Path, name: impl Into<Arc<str>>) -> Self {
        Self {
            store,
            prefix,
            name: name.into(),
            bucket_seen: Arc::default(),
        }
    }

    /// What messages call this source.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Checks that the bucket can be reached and read: lists at most one
    /// object under the prefix. The error is the store's message.
    pub async fn check(&self) -> Result<(), LoadError> {
        let name = self.name.clone();
        home::run(self.check_bucket()).await.map_err(|e| match e {
            LoadError::Failed(m) => LoadError::Failed(format!("{name}: {m}")),
            e => e,
        })
    }

    /// Lists at most one object under the prefix (on the stores' runtime).
    fn check_bucket(
        &self,
    ) -> impl std::future::Future<Output = Result<(), LoadError>> + Send + 'static {
        let (store, prefix) = (self.store.clone(), self.prefix.clone());
        let (name, seen) = (self.name.clone(), self.bucket_seen.clone());
        async move {
            use futures_lite::StreamExt;
            let mut list = store.list(Some(&prefix));
            match list.next().await {
                Some(Err(e)) => {
                    tracing::warn!(store = &*name, "list failed: {e}");
                    let msg = format!("the bucket cannot be listed: {}", redact(&e.to_string()));
                    Err(LoadError::Failed(msg))
                }
                _ => {
                    *seen.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
                    Ok(())
                }
            }
        }
    }

    /// A HEAD's not found, told apart from a missing bucket.
    fn not_found(
        &self,
        key: String,
    ) -> impl std::future::Future<Output = LoadError> + Send + 'static {
        let seen = *self.bucket_seen.lock().unwrap_or_else(|e| e.into_inner());
        let fresh = seen.is_some_and(|t| t.elapsed() < BUCKET_CHECK_TTL);
        let check = (!fresh).then(|| self.check_bucket());
        async move {
            match check {
                Some(check) => match check.await {
                    Err(e) => e,
                    Ok(()) => LoadError::NotFound(format!("{key} not exist")),
                },
                None => LoadError::NotFound(format!("{key} not exist")),
            }
        }
    }

    /// The store path of `key`, or not found when `key` would leave the
    /// prefix.
    fn path(&self, key: &str) -> Result<Path, LoadError> {
        let refused = || LoadError::NotFound(format!("key {key:?} is outside the prefix: refused"));
        let ok_segment =
            |s: &str| !s.is_empty() && s != "." && s != ".." && !s.chars().any(char::is_control);
        if !key.split('/').all(ok_segment) {
            return Err(refused());
        }
        let full = match self.prefix.as_ref() {
            "" => key.to_string(),
            p => format!("{p}/{key}"),
        };
        Path::parse(full).map_err(|_| refused())
    }
}

/// The stores this build can read.
fn built_in() -> Vec<&'static str> {
    [
        (cfg!(feature = "s3"), "s3"),
        (cfg!(feature = "gcs"), "gcs"),
        (cfg!(feature = "azure"), "azure"),
    ]
    .into_iter()
    .filter_map(|(on, name)| on.then_some(name))
    .collect()
}

/// A store error as a load error: a missing object is not found (which
/// stops fallback); anything else is a failure with the store's message.
fn failed(name: &str, key: &str, what: &str, e: &object_store::Error) -> LoadError {
    match e {
        object_store::Error::NotFound { .. } if !names_missing_bucket(e) => {
            LoadError::NotFound(format!("{key} not exist"))
        }
        _ => {
            tracing::warn!(store = name, key, "{what} failed: {e}");
            LoadError::Failed(format!("{key}: {what} failed: {}", redact(&e.to_string())))
        }
    }
}

/// The store's message without the URLs it names: errors reach clients,
/// which are not told where the origin is (the log keeps the detail).
fn redact(message: &str) -> String {
    message
        .split(' ')
        .map(
            |word| match word.starts_with("http://") || word.starts_with("https://") {
                true => "<endpoint>",
                false => word,
            },
        )
        .collect::<Vec<_>>()
        .join(" ")
}

/// True when a not-found error is about the bucket, not the object: a
/// missing bucket is a broken origin, not a missing key.
fn names_missing_bucket(e: &object_store::Error) -> bool {
    let text = format!("{e:?}");
    text.contains("NoSuchBucket") || text.contains("ContainerNotFound")
}

impl PageSource for ObjectStoreSource {
    fn head(&self, key: String) -> InfoFuture {
        let path = self.path(&key);
        let (store, name) = (self.store.clone(), self.name.clone());
        let not_found = self.not_found(key.clone());
        Box::pin(home::run(async move {
            let meta = match store.head(&path?).await {
                Ok(meta) => meta,
                Err(object_store::Error::NotFound { .. }) => return Err(not_found.await),
                Err(e) => return Err(failed(&name, &key, "HEAD", &e)),
            };
            // An ETag where the store gives one; else the version id; a
            // store with neither could change an object unseen, so refuse.
            let version = meta.e_tag.or(meta.version).ok_or_else(|| {
                LoadError::Failed(format!("{key}: the store gives no ETag or version"))
            })?;
            Ok(ObjectInfo::new(meta.size, version))
        }))
    }

    fn read(&self, key: String, info: ObjectInfo, range: Range<u64>) -> LoadFuture {
        let path = self.path(&key);
        let (store, name) = (self.store.clone(), self.name.clone());
        Box::pin(home::run(async move {
            let path = path?;
            if range.is_empty() {
                return Ok(Bytes::new().into());
            }
            let opts = GetOptions {
                if_match: Some(info.version.to_string()),
                range: Some(GetRange::Bounded(range.clone())),
                ..Default::default()
            };
            let changed = || {
                LoadError::Failed(format!(
                    "{key}: the object changed since version {}",
                    info.version
                ))
            };
            let got = match store.get_opts(&path, opts).await {
                Ok(got) => got,
                Err(object_store::Error::Precondition { .. }) => return Err(changed()),
                Err(e) => return Err(failed(&name, &key, "GET", &e)),
            };
            // A store that ignores If-Match still names what it sent.
            if got
                .meta
                .e_tag
                .as_deref()
                .is_some_and(|t| t != &*info.version)
            {
                return Err(changed());
            }
            let bytes = got
                .bytes()
                .await
                .map_err(|e| failed(&name, &key, "GET body", &e))?;
            Ok(bytes.into())
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_no_endpoint() {
        let m = "Error performing HEAD http://10.0.0.5:9000/bkt/k in 1s - 403 Forbidden";
        assert_eq!(
            redact(m),
            "Error performing HEAD <endpoint> in 1s - 403 Forbidden"
        );
    }

    #[test]
    fn keys_that_leave_the_prefix_are_refused() {
        let store = Arc::new(object_store::memory::InMemory::new());
        let s = ObjectStoreSource::new(store, Path::parse("data").unwrap(), "mem://data");
        for good in ["a", "dir/with space/ü.bin", "a%2fb", "x..y", ".hidden"] {
            assert!(s.path(good).is_ok(), "{good}");
        }
        assert_eq!(s.path("a%2fb").unwrap().as_ref(), "data/a%2fb");
        for bad in [
            "",
            "/etc/passwd",
            "..",
            "../b",
            "a/../../b",
            "a//b",
            "a/",
            "./a",
            "a\0b",
            "a\nb",
        ] {
            match s.path(bad) {
                Err(LoadError::NotFound(m)) => assert!(m.contains("outside"), "{bad:?}: {m}"),
                other => panic!("{bad:?} gave {other:?}"),
            }
        }
    }
}
