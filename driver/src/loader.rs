//! Loaders: how a group fetches a value it does not have.

use std::future::Future;
use std::pin::Pin;

use bytes::Bytes;
pub use groupcache_core::node::LoadError;

/// A boxed loader future.
pub type LoadFuture = Pin<Box<dyn Future<Output = Result<Bytes, LoadError>> + Send + 'static>>;

/// Fetches the value of a key from the origin (a database, files, a
/// service). It runs at most once at a time per key in the whole cluster;
/// if it panics, that key's waiters get an error and the next get retries.
///
/// Any `Fn(String) -> impl Future<Output = Result<V, LoadError>>` is a
/// loader, where `V` converts into `Bytes` (`Vec<u8>`, `String`,
/// `&'static str`, `Bytes`):
///
/// ```
/// use groupcache_driver::{Loader, LoadError};
///
/// fn assert_loader(_: impl Loader) {}
/// assert_loader(|key: String| async move {
///     match key.as_str() {
///         "Tom" => Ok("630"),
///         _ => Err(LoadError::NotFound(format!("{key} not exist"))),
///     }
/// });
/// ```
pub trait Loader: Send + Sync + 'static {
    /// Loads `key`.
    fn load(&self, key: String) -> LoadFuture;
}

impl<F, Fut, V> Loader for F
where
    F: Fn(String) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<V, LoadError>> + Send + 'static,
    V: Into<Bytes>,
{
    fn load(&self, key: String) -> LoadFuture {
        let fut = self(key);
        Box::pin(async move { fut.await.map(Into::into) })
    }
}
