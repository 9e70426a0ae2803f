//! Loaders: how a group fetches a value it does not have.

use std::future::Future;
use std::pin::Pin;

pub use groupcache_core::node::{LoadError, Loaded};

/// A boxed loader future.
pub type LoadFuture = Pin<Box<dyn Future<Output = Result<Loaded, LoadError>> + Send + 'static>>;

/// Fetches the value of a key from the origin (a database, files, a
/// service). It runs at most once at a time per key in the whole cluster;
/// if it panics, that key's waiters get an error and the next get retries.
///
/// Where it runs: the driver polls a load once in the task that asked for
/// the key (a caller's get, or the connection a peer asked on), in the
/// runtime's context. A loader that answers then, from memory or a local
/// computation, costs no hand-off between threads. One that must wait is
/// moved to a task of its own on the runtime, so it goes on whatever
/// becomes of the get that started it. Either way, a loader that blocks
/// its thread for long (reading a file without async IO, say) holds that
/// task's thread: hand such work to a blocking pool.
///
/// Any `Fn(String) -> impl Future<Output = Result<V, LoadError>>` is a
/// loader, where `V` converts into [`Loaded`] (`Vec<u8>`, `String`,
/// `&'static str`, `Bytes`, or a `Loaded` with a time to live of its own,
/// capped by the group's):
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
/// // A value with its own expiry: a session token good for five minutes.
/// use std::time::Duration;
/// use groupcache_driver::core::node::Loaded;
/// assert_loader(|key: String| async move {
///     Ok::<_, LoadError>(Loaded::new(format!("token for {key}")).ttl(Duration::from_secs(300)))
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
    V: Into<Loaded>,
{
    fn load(&self, key: String) -> LoadFuture {
        let fut = self(key);
        Box::pin(async move { fut.await.map(Into::into) })
    }
}
