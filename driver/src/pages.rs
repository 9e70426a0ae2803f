//! Objects read in pages: a group whose origin holds large objects (object
//! storage, files, HTTP) caches each object as fixed-size pages, one key
//! per page, so a byte range costs the pages it touches and no value is
//! larger than a page.
//!
//! A page's key names the object's version (an ETag, say), taken from a
//! HEAD of the object that each node caches for a short time
//! ([`PageConfig::head_ttl`]). Every page of one read is asked for under
//! the same version, and the origin refuses a read of a version it no
//! longer holds, so one read never stitches two versions together; a read
//! that meets a new version starts again under it
//! ([`crate::Group::get_range`]).

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::ops::Range;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::loader::{LoadFuture, Loader};
use crate::LoadError;

/// What a HEAD of an object says: its length and its version.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ObjectInfo {
    /// Length in bytes.
    pub len: u64,
    /// The version the origin gives this content (an ETag, an object
    /// version, a file's modification time); it changes whenever the
    /// content does. Never contains a NUL.
    pub version: Arc<str>,
}

impl ObjectInfo {
    /// An object of `len` bytes at `version`.
    pub fn new(len: u64, version: impl Into<Arc<str>>) -> Self {
        Self {
            len,
            version: version.into(),
        }
    }
}

/// A boxed [`PageSource::head`] future.
pub type InfoFuture = Pin<Box<dyn Future<Output = Result<ObjectInfo, LoadError>> + Send + 'static>>;

/// An origin whose objects can be read by byte range, at a version.
///
/// ```
/// use std::ops::Range;
/// use groupcache_driver::{LoadError, LoadFuture, ObjectInfo, InfoFuture, PageSource};
///
/// /// One fixed object, "blob", whose content never changes.
/// struct Fixed(&'static [u8]);
///
/// impl PageSource for Fixed {
///     fn head(&self, key: String) -> InfoFuture {
///         let len = self.0.len() as u64;
///         Box::pin(async move {
///             match key.as_str() {
///                 "blob" => Ok(ObjectInfo::new(len, "v1")),
///                 _ => Err(LoadError::NotFound(format!("{key} not exist"))),
///             }
///         })
///     }
///     fn read(&self, _key: String, info: ObjectInfo, range: Range<u64>) -> LoadFuture {
///         let data = self.0;
///         Box::pin(async move {
///             if &*info.version != "v1" {
///                 return Err(LoadError::Failed("the object changed".into()));
///             }
///             Ok(data[range.start as usize..range.end as usize].into())
///         })
///     }
/// }
/// ```
pub trait PageSource: Send + Sync + 'static {
    /// The length and version of `key`; [`LoadError::NotFound`] when it
    /// does not exist.
    fn head(&self, key: String) -> InfoFuture;

    /// Exactly the bytes `range` of `key` (within `info.len`), at
    /// `info.version`. It must fail rather than return bytes of another
    /// version: a failure makes the reader look again
    /// ([`crate::Group::get_range`]).
    fn read(&self, key: String, info: ObjectInfo, range: Range<u64>) -> LoadFuture;
}

/// How a group reads its objects in pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct PageConfig {
    /// Bytes per page (the last page of an object may be shorter); each
    /// page is one cache key, loaded with one ranged read.
    pub page_size: u64,
    /// How long a node trusts a HEAD of an object: a replaced object is
    /// seen by new reads within this time.
    pub head_ttl: Duration,
    /// Objects whose HEAD a node keeps at most.
    pub max_heads: usize,
}

impl PageConfig {
    /// The default page size: 1 MiB.
    pub const DEFAULT_PAGE_SIZE: u64 = 1 << 20;
    /// The default time a HEAD is trusted: 1 s.
    pub const DEFAULT_HEAD_TTL: Duration = Duration::from_secs(1);

    /// Pages of `page_size` bytes (at least 1), with the default HEAD
    /// settings.
    pub fn new(page_size: u64) -> Self {
        Self {
            page_size: page_size.max(1),
            head_ttl: Self::DEFAULT_HEAD_TTL,
            max_heads: 4096,
        }
    }
}

impl Default for PageConfig {
    fn default() -> Self {
        Self::new(Self::DEFAULT_PAGE_SIZE)
    }
}

/// The key of page `page` of `object` at `info`: the object, the page
/// number, the length and the version, NUL-separated. Neither an object
/// name nor a version may hold a NUL, so the parts never run together.
pub(crate) fn page_key(object: &str, info: &ObjectInfo, page: u64) -> String {
    format!("{object}\0{page}\0{}\0{}", info.len, info.version)
}

/// The parts of a [`page_key`]; `None` for any other key.
pub(crate) fn parse_page_key(key: &str) -> Option<(&str, u64, ObjectInfo)> {
    let mut parts = key.splitn(4, '\0');
    let object = parts.next()?;
    let page = parts.next()?.parse().ok()?;
    let len = parts.next()?.parse().ok()?;
    let version = parts.next()?;
    Some((object, page, ObjectInfo::new(len, version)))
}

/// The byte range of page `page` of an object of `len` bytes.
pub(crate) fn page_range(page: u64, page_size: u64, len: u64) -> Range<u64> {
    let start = page.saturating_mul(page_size).min(len);
    start..start.saturating_add(page_size).min(len)
}

/// The loader of a paged group: a page key is one ranged read; a plain
/// key is the whole object, if it fits in one page.
pub(crate) struct PageLoader {
    pub(crate) source: Arc<dyn PageSource>,
    pub(crate) page_size: u64,
}

impl Loader for PageLoader {
    fn load(&self, key: String) -> LoadFuture {
        let source = self.source.clone();
        let page_size = self.page_size;
        Box::pin(async move {
            let (object, range, info) = match parse_page_key(&key) {
                Some((object, page, info)) => {
                    let range = page_range(page, page_size, info.len);
                    (object.to_string(), range, info)
                }
                None if key.contains('\0') => {
                    return Err(LoadError::NotFound(format!("{key:?}: not a valid key")))
                }
                None => {
                    let info = source.head(key.clone()).await?;
                    if info.len > page_size {
                        return Err(LoadError::Failed(format!(
                            "{key}: an object of {} bytes is larger than a page ({page_size}): read it by range",
                            info.len
                        )));
                    }
                    (key, 0..info.len, info)
                }
            };
            let want = range.end - range.start;
            let loaded = source.read(object.clone(), info, range).await?;
            if loaded.value.len() as u64 != want {
                return Err(LoadError::Failed(format!(
                    "{object}: the origin returned {} bytes of a {want}-byte page",
                    loaded.value.len()
                )));
            }
            Ok(loaded)
        })
    }
}

/// A paged group's settings, source and HEAD cache, shared by its handles.
pub(crate) struct Paged {
    pub(crate) cfg: PageConfig,
    pub(crate) source: Arc<dyn PageSource>,
    /// The group's load timeout, which bounds a HEAD too.
    pub(crate) load_timeout: Duration,
    heads: Mutex<Heads>,
}

/// HEADs of recent objects, each trusted until its deadline; at most
/// `max` of them, the oldest dropped first.
#[derive(Default)]
struct Heads {
    map: HashMap<String, (ObjectInfo, Instant)>,
    order: VecDeque<String>,
}

impl Paged {
    pub(crate) fn new(
        cfg: PageConfig,
        source: Arc<dyn PageSource>,
        load_timeout: Duration,
    ) -> Self {
        Self {
            cfg,
            source,
            load_timeout,
            heads: Mutex::default(),
        }
    }

    /// The HEAD of `key` cached before `now`, if still trusted.
    pub(crate) fn cached(&self, key: &str, now: Instant) -> Option<ObjectInfo> {
        let heads = self.heads.lock().unwrap_or_else(|e| e.into_inner());
        match heads.map.get(key) {
            Some((info, until)) if *until > now => Some(info.clone()),
            _ => None,
        }
    }

    /// Remembers a HEAD of `key` taken at `now`.
    pub(crate) fn remember(&self, key: &str, info: &ObjectInfo, now: Instant) {
        if self.cfg.max_heads == 0 || self.cfg.head_ttl.is_zero() {
            return;
        }
        let mut heads = self.heads.lock().unwrap_or_else(|e| e.into_inner());
        let until = now + self.cfg.head_ttl;
        if let Some(slot) = heads.map.get_mut(key) {
            *slot = (info.clone(), until);
            return;
        }
        while heads.map.len() >= self.cfg.max_heads {
            let Some(old) = heads.order.pop_front() else {
                break;
            };
            heads.map.remove(&old);
        }
        heads.map.insert(key.to_string(), (info.clone(), until));
        heads.order.push_back(key.to_string());
    }

    /// The keys of the pages that hold `range` of `object` at `info`, and
    /// where `range` starts in the first.
    pub(crate) fn pages(
        &self,
        object: &str,
        info: &ObjectInfo,
        range: &Range<u64>,
    ) -> (Vec<String>, usize) {
        let ps = self.cfg.page_size;
        if range.start >= range.end {
            return (Vec::new(), 0);
        }
        let first = range.start / ps;
        let last = (range.end - 1) / ps;
        let keys = (first..=last).map(|p| page_key(object, info, p)).collect();
        (keys, (range.start - first * ps) as usize)
    }
}

/// Joins pages into the `len` bytes that start `skip` bytes into the
/// first: one copy, or none when one page holds the whole range. `None`
/// when the pages hold fewer bytes than that (a page of the wrong length,
/// which no loader of this crate caches, but a peer could send).
pub(crate) fn assemble(pages: Vec<Bytes>, skip: usize, len: usize) -> Option<Bytes> {
    if let [only] = &pages[..] {
        return (only.len() >= skip + len).then(|| only.slice(skip..skip + len));
    }
    let mut out = Vec::with_capacity(len);
    let mut skip = skip;
    for p in &pages {
        let from = skip.min(p.len());
        let take = (p.len() - from).min(len - out.len());
        out.extend_from_slice(&p[from..from + take]);
        skip -= from;
    }
    (out.len() == len).then(|| out.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_keys_round_trip_whatever_the_object_name() {
        let info = ObjectInfo::new(5 << 20, "\"etag:1\"");
        for object in ["a", "dir/with space/ü", "x:1:2", "a%2fb", ""] {
            let key = page_key(object, &info, 3);
            let (o, p, i) = parse_page_key(&key).unwrap();
            assert_eq!((o, p, &i), (object, 3, &info));
        }
        assert_eq!(parse_page_key("plain"), None);
        assert_eq!(parse_page_key("a\0x\u{0}1\0v"), None);
    }

    #[test]
    fn pages_cover_exactly_the_range() {
        let ps = 10;
        assert_eq!(page_range(0, ps, 25), 0..10);
        assert_eq!(page_range(2, ps, 25), 20..25);
        assert_eq!(page_range(3, ps, 25), 25..25);
        let paged = Paged::new(PageConfig::new(ps), Arc::new(Never), Duration::MAX);
        let info = ObjectInfo::new(25, "v");
        for (range, pages, skip) in [
            (0..25, 3, 0),
            (9..11, 2, 9),
            (10..20, 1, 0),
            (24..25, 1, 4),
            (5..5, 0, 0),
        ] {
            let (keys, s) = paged.pages("o", &info, &range);
            assert_eq!((keys.len(), s), (pages, skip), "{range:?}");
        }
        let data: Vec<u8> = (0..25).collect();
        let pages: Vec<Bytes> = data.chunks(10).map(Bytes::copy_from_slice).collect();
        assert_eq!(
            &assemble(pages[0..2].to_vec(), 9, 2).unwrap()[..],
            &data[9..11]
        );
        assert_eq!(&assemble(pages.clone(), 0, 25).unwrap()[..], &data[..]);
        assert_eq!(
            &assemble(pages[2..].to_vec(), 4, 1).unwrap()[..],
            &data[24..25]
        );
        // Pages shorter than they should be give no bytes, not wrong ones.
        assert_eq!(assemble(pages[2..].to_vec(), 6, 1), None);
        let short = vec![Bytes::from_static(b"ab"), Bytes::from_static(b"c")];
        assert_eq!(assemble(short, 1, 5), None);
    }

    #[test]
    fn heads_are_bounded_and_expire() {
        let mut cfg = PageConfig::new(10);
        cfg.max_heads = 2;
        let paged = Paged::new(cfg, Arc::new(Never), Duration::MAX);
        let t0 = Instant::now();
        let info = ObjectInfo::new(1, "v");
        for k in ["a", "b", "c"] {
            paged.remember(k, &info, t0);
        }
        assert_eq!(paged.cached("a", t0), None, "the oldest made room");
        assert_eq!(paged.cached("c", t0), Some(info.clone()));
        assert_eq!(paged.cached("c", t0 + cfg.head_ttl), None, "expired");
    }

    struct Never;
    impl PageSource for Never {
        fn head(&self, _: String) -> InfoFuture {
            Box::pin(std::future::pending())
        }
        fn read(&self, _: String, _: ObjectInfo, _: Range<u64>) -> LoadFuture {
            Box::pin(std::future::pending())
        }
    }
}
