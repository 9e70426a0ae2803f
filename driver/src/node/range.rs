//! Byte ranges of a group's values: pages fetched from their owners in
//! parallel and joined, under one version of the object.

use std::ops::{Bound, Range, RangeBounds};

use bytes::Bytes;

use super::Group;
use crate::pages::{assemble, ObjectInfo, PageConfig, Paged};
use crate::runtime::{timeout, Runtime};
use crate::{Error, LoadError};

/// Reads of one range that meet a new version before [`Group::get_range`]
/// gives up.
const MAX_TRIES: usize = 3;

/// Why a byte range could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RangeError {
    /// Getting the object, or one of its pages, failed.
    #[error(transparent)]
    Get(#[from] Error),
    /// The range starts past the object's end.
    #[error("range starts at byte {start}, past the end of a {len}-byte object")]
    Unsatisfiable {
        /// Where the range starts.
        start: u64,
        /// The object's length.
        len: u64,
    },
    /// The object was replaced while it was being read, every time it was
    /// tried (or, for [`Group::read_range`], once).
    #[error("the object changed while it was being read")]
    Changed,
}

impl RangeError {
    /// True when the object does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, RangeError::Get(e) if e.is_not_found())
    }
}

/// `range` within an object of `len` bytes: the end is cut at `len`; a
/// start past `len` is unsatisfiable.
pub(crate) fn resolve(range: impl RangeBounds<u64>, len: u64) -> Result<Range<u64>, RangeError> {
    let start = match range.start_bound() {
        Bound::Included(&s) => s,
        Bound::Excluded(&s) => s.saturating_add(1),
        Bound::Unbounded => 0,
    };
    let end = match range.end_bound() {
        Bound::Included(&e) => e.saturating_add(1),
        Bound::Excluded(&e) => e,
        Bound::Unbounded => len,
    }
    .min(len);
    if start > len {
        return Err(RangeError::Unsatisfiable { start, len });
    }
    Ok(start..end.max(start))
}

impl<R: Runtime> Group<R> {
    /// The group's page settings, if its values are objects read in pages
    /// ([`crate::Builder::paged_group`]).
    pub fn pages(&self) -> Option<PageConfig> {
        self.paged.as_ref().map(|p| p.cfg)
    }

    /// The length and version of `key`. A paged group asks the origin
    /// (a HEAD, trusted for [`PageConfig::head_ttl`]); any other group gets
    /// the value, whose version is then empty.
    pub async fn stat(&self, key: &str) -> Result<ObjectInfo, RangeError> {
        match &self.paged {
            Some(p) => self.head(p, key, false).await,
            None => Ok(ObjectInfo::new(self.get(key).await?.len() as u64, "")),
        }
    }

    /// Bytes `range` of `key` (the end is cut at the object's end). A
    /// paged group gets the pages that hold them from their owners in
    /// parallel, all at one version: if the object is replaced meanwhile,
    /// the read starts again under the new version (up to three times), so
    /// the bytes returned always come from one version. Any other group
    /// gets the whole value and slices it.
    ///
    /// ```no_run
    /// # async fn demo<R: groupcache_driver::Runtime>(g: groupcache_driver::Group<R>) -> Result<(), groupcache_driver::RangeError> {
    /// let head = g.get_range("videos/a.mp4", 0..4096).await?;
    /// let tail = g.get_range("videos/a.mp4", 1 << 20..).await?;
    /// # Ok(()) }
    /// ```
    pub async fn get_range(
        &self,
        key: &str,
        range: impl RangeBounds<u64>,
    ) -> Result<Bytes, RangeError> {
        let Some(paged) = &self.paged else {
            let value = self.get(key).await?;
            let r = resolve(range, value.len() as u64)?;
            return Ok(value.slice(r.start as usize..r.end as usize));
        };
        let mut fresh = false;
        for _ in 0..MAX_TRIES {
            let info = self.head(paged, key, fresh).await?;
            let r = resolve((range.start_bound(), range.end_bound()), info.len)?;
            match self.read_range(key, &info, r).await {
                Err(RangeError::Changed) => fresh = true,
                other => return other,
            }
        }
        Err(RangeError::Changed)
    }

    /// Bytes `range` of `key` at exactly the version `info` names (from
    /// [`Group::stat`]), or [`RangeError::Changed`] if the origin no longer
    /// holds that version: for a reader that reads one object in several
    /// calls and must not mix versions. `range` must lie within
    /// `info.len`. A group that is not paged reads the current value.
    pub async fn read_range(
        &self,
        key: &str,
        info: &ObjectInfo,
        range: Range<u64>,
    ) -> Result<Bytes, RangeError> {
        let r = resolve(range, info.len)?;
        let Some(paged) = &self.paged else {
            let value = self.get(key).await?;
            let r = resolve(r, value.len() as u64)?;
            return Ok(value.slice(r.start as usize..r.end as usize));
        };
        if key.contains('\0') {
            return Err(Error::NotFound(format!("{key:?}: not a valid key").into()).into());
        }
        let (keys, skip) = paged.pages(key, info, &r);
        let mut pages = Vec::with_capacity(keys.len());
        for got in self.get_many(&keys).await {
            match got {
                Ok(page) => pages.push(page),
                Err(e) => {
                    // A page fails when the object changed under it; look
                    // again to tell that from any other failure.
                    return match self.head(paged, key, true).await {
                        Ok(now) if now.version != info.version => Err(RangeError::Changed),
                        Err(RangeError::Get(head)) if head.is_not_found() => Err(head.into()),
                        _ => Err(e.into()),
                    };
                }
            }
        }
        assemble(pages, skip, (r.end - r.start) as usize).ok_or_else(|| {
            let msg = format!("{}/{key}: a page of the wrong length", self.name);
            Error::Load(msg.into()).into()
        })
    }

    /// The HEAD of `key`: the cached one unless `fresh`, else the
    /// origin's (bounded by the group's load timeout), then cached.
    async fn head(&self, paged: &Paged, key: &str, fresh: bool) -> Result<ObjectInfo, RangeError> {
        let rt = &self.node.shared.rt;
        if !fresh {
            if let Some(info) = paged.cached(key, rt.now()) {
                return Ok(info);
            }
        }
        if key.contains('\0') {
            return Err(Error::NotFound(format!("{key:?}: not a valid key").into()).into());
        }
        let limit = paged.load_timeout;
        let head = paged.source.head(key.to_string());
        let info = match timeout(rt, limit, head).await {
            Some(Ok(info)) => info,
            Some(Err(LoadError::NotFound(m))) => return Err(Error::NotFound(m.into()).into()),
            Some(Err(LoadError::Failed(m))) => return Err(Error::Load(m.into()).into()),
            None => {
                let msg = format!("{}/{key}: HEAD took longer than {limit:?}", self.name);
                return Err(Error::Load(msg.into()).into());
            }
        };
        if info.version.contains('\0') {
            let msg = format!("{}/{key}: the origin's version holds a NUL", self.name);
            return Err(Error::Load(msg.into()).into());
        }
        paged.remember(key, &info, rt.now());
        Ok(info)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_resolve_as_slices_do_with_the_end_cut() {
        assert_eq!(resolve(.., 10), Ok(0..10));
        assert_eq!(resolve(3..=5, 10), Ok(3..6));
        assert_eq!(resolve(8..100, 10), Ok(8..10));
        assert_eq!(resolve(10.., 10), Ok(10..10));
        assert_eq!(
            resolve((Bound::Included(5), Bound::Excluded(2)), 10),
            Ok(5..5)
        );
        assert_eq!(
            resolve(11.., 10),
            Err(RangeError::Unsatisfiable { start: 11, len: 10 })
        );
    }
}
