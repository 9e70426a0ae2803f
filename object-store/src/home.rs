//! The tokio runtime the stores run on, whatever runtime awaits them.
//!
//! One runtime for the process, started on first use: two worker threads
//! (the work is waiting on the network), never shut down, so no runtime is
//! ever dropped inside another's task.

use std::future::Future;
use std::pin::Pin;
use std::sync::OnceLock;
use std::task::{Context, Poll};

use groupcache_driver::LoadError;
use tokio::runtime::{Builder, Handle, Runtime};
use tokio::task::JoinHandle;

static HOME: OnceLock<Result<Runtime, String>> = OnceLock::new();

fn handle() -> Result<&'static Handle, LoadError> {
    let rt = HOME.get_or_init(|| {
        Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("groupcache-object-store")
            .enable_all()
            .build()
            .map_err(|e| e.to_string())
    });
    match rt {
        Ok(rt) => Ok(rt.handle()),
        Err(e) => Err(LoadError::Failed(format!("object store runtime: {e}"))),
    }
}

/// Runs `fut` on the stores' runtime; dropping the returned future
/// cancels it there.
pub(crate) fn run<T: Send + 'static>(
    fut: impl Future<Output = Result<T, LoadError>> + Send + 'static,
) -> impl Future<Output = Result<T, LoadError>> + Send + 'static {
    let task = handle().map(|h| Abort(h.spawn(fut)));
    async move {
        match task?.await {
            Ok(out) => out,
            Err(e) if e.is_panic() => {
                Err(LoadError::Failed("object store request panicked".into()))
            }
            Err(_) => Err(LoadError::Failed("object store request cancelled".into())),
        }
    }
}

/// A task that is aborted when its handle is dropped unfinished.
struct Abort<T>(JoinHandle<T>);

impl<T> Drop for Abort<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl<T> Future for Abort<T> {
    type Output = Result<T, tokio::task::JoinError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.0).poll(cx)
    }
}
