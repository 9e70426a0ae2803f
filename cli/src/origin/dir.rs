//! The `dir:` origin: files under a directory, whole or by page.

use std::io::SeekFrom;
use std::ops::Range;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use groupcache_tokio::{Bytes, InfoFuture, LoadError, LoadFuture, ObjectInfo, PageSource};
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use super::too_large;

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

fn io_error(group: &str, key: &str, path: &Path, e: std::io::Error) -> LoadError {
    if e.kind() == std::io::ErrorKind::NotFound {
        return LoadError::NotFound(format!("{key} not exist"));
    }
    tracing::warn!(path = %path.display(), "origin read failed: {e}");
    LoadError::Failed(format!("{group}/{key}: origin read failed"))
}

/// The whole file of `key`, at most `max` bytes.
pub(super) async fn read_file(
    root: &Path,
    group: &str,
    key: &str,
    max: usize,
) -> Result<Bytes, LoadError> {
    let path = resolve(root, key)?;
    let size = tokio::fs::metadata(&path)
        .await
        .map_err(|e| io_error(group, key, &path, e))?
        .len();
    if size > max as u64 {
        return Err(too_large(group, key, size, max));
    }
    match tokio::fs::read(&path).await {
        // The file may have grown since its size was read.
        Ok(data) if data.len() > max => Err(too_large(group, key, data.len() as u64, max)),
        Ok(data) => Ok(data.into()),
        Err(e) => Err(io_error(group, key, &path, e)),
    }
}

/// A file's version: its length, modification time and inode, which a
/// write or a replacement changes.
fn version(m: &std::fs::Metadata) -> String {
    use std::os::unix::fs::MetadataExt;
    format!("{}-{}.{}-{}", m.len(), m.mtime(), m.mtime_nsec(), m.ino())
}

/// Files under a directory, read by page: a page is read with one seek
/// and one read of the file, whose version is checked before and after.
#[derive(Debug, Clone)]
pub struct DirPages {
    root: Arc<PathBuf>,
    group: Arc<str>,
}

impl DirPages {
    /// The files under `root` (canonical), for `group`.
    pub fn new(root: PathBuf, group: &str) -> Self {
        Self {
            root: Arc::new(root),
            group: group.into(),
        }
    }
}

impl PageSource for DirPages {
    fn head(&self, key: String) -> InfoFuture {
        let (root, group) = (self.root.clone(), self.group.clone());
        Box::pin(async move {
            let path = resolve(&root, &key)?;
            let m = tokio::fs::metadata(&path)
                .await
                .map_err(|e| io_error(&group, &key, &path, e))?;
            if !m.is_file() {
                return Err(LoadError::NotFound(format!("{key} not exist")));
            }
            Ok(ObjectInfo::new(m.len(), version(&m)))
        })
    }

    fn read(&self, key: String, info: ObjectInfo, range: Range<u64>) -> LoadFuture {
        let (root, group) = (self.root.clone(), self.group.clone());
        Box::pin(async move {
            let path = resolve(&root, &key)?;
            let fail = |e| io_error(&group, &key, &path, e);
            let changed =
                || LoadError::Failed(format!("{group}/{key}: the file changed while being read"));
            let mut file = tokio::fs::File::open(&path).await.map_err(fail)?;
            if version(&file.metadata().await.map_err(fail)?) != *info.version {
                return Err(changed());
            }
            file.seek(SeekFrom::Start(range.start))
                .await
                .map_err(fail)?;
            let mut page = vec![0; (range.end - range.start) as usize];
            file.read_exact(&mut page)
                .await
                .map_err(|e| match e.kind() {
                    std::io::ErrorKind::UnexpectedEof => changed(),
                    _ => fail(e),
                })?;
            // A write during the read changes the modification time.
            if version(&file.metadata().await.map_err(fail)?) != *info.version {
                return Err(changed());
            }
            Ok(Bytes::from(page).into())
        })
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

    #[tokio::test]
    async fn pages_read_only_their_range_and_refuse_a_changed_file() {
        let dir = std::env::temp_dir().join(format!("gc-pages-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("f"), "0123456789").unwrap();
        let src = DirPages::new(dir.canonicalize().unwrap(), "g");
        let info = src.head("f".into()).await.unwrap();
        assert_eq!(info.len, 10);
        let page = src.read("f".into(), info.clone(), 4..8).await.unwrap();
        assert_eq!(page.value, "4567");
        std::fs::write(dir.join("f"), "abcdefghijk").unwrap();
        let e = src.read("f".into(), info, 0..4).await.unwrap_err();
        assert!(matches!(e, LoadError::Failed(m) if m.contains("changed")));
        assert!(matches!(
            src.head("nope".into()).await,
            Err(LoadError::NotFound(_))
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
