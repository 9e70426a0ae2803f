//! Threads that each run one runtime of an adapter, for thread-per-core
//! serving ([`Builder::accept_on`](crate::Builder::accept_on)): started
//! together, stopped and joined together. Each adapter says only how its
//! runtime is built and run on such a thread.

use std::io;
use std::thread::JoinHandle;

use async_channel::{Receiver, Sender};

use crate::runtime::Runtime;

/// Threads each running one runtime; dropping the value stops them (once
/// their current task yields) and joins them, so keep it until the nodes
/// on them have shut down. The adapters wrap it (`CoreThreads` on tokio,
/// `CompioThreads` on compio).
#[derive(Debug)]
pub struct ServingThreads<R: Runtime> {
    runtimes: Vec<R>,
    stop: Option<Sender<()>>,
    threads: Vec<JoinHandle<()>>,
}

/// Given to a serving thread's body: completes when the threads are to
/// stop.
#[derive(Debug)]
pub struct Stopped(Receiver<()>);

impl Stopped {
    /// Completes when the [`ServingThreads`] is dropped.
    pub async fn wait(self) {
        while self.0.recv().await.is_ok() {}
    }
}

/// Given to a serving thread's body: where it hands back its runtime value
/// once the runtime runs, or the error that kept it from starting.
#[derive(Debug)]
pub struct Ready<R>(std::sync::mpsc::Sender<io::Result<R>>);

impl<R> Ready<R> {
    /// The runtime is up: the driver may use `rt`.
    pub fn ok(self, rt: R) {
        let _ = self.0.send(Ok(rt));
    }

    /// The runtime could not start.
    pub fn fail(self, e: io::Error) {
        let _ = self.0.send(Err(e));
    }
}

impl<R: Runtime> ServingThreads<R> {
    /// Starts `n` threads (at least one), named `{name}-0`, `{name}-1`, ….
    /// Each runs `body`, which builds its runtime on that thread, hands its
    /// value to [`Ready`], then runs the runtime until [`Stopped`]
    /// completes. Returns once every runtime is up, or with the first
    /// error.
    pub fn start<B>(n: usize, name: &str, body: B) -> io::Result<Self>
    where
        B: Fn(Ready<R>, Stopped) + Clone + Send + 'static,
    {
        let (stop, stopped) = async_channel::bounded::<()>(1);
        let mut me = Self {
            runtimes: Vec::with_capacity(n),
            stop: Some(stop),
            threads: Vec::with_capacity(n),
        };
        for i in 0..n.max(1) {
            let (ready, started) = std::sync::mpsc::channel();
            let (body, stopped) = (body.clone(), Stopped(stopped.clone()));
            let thread = std::thread::Builder::new()
                .name(format!("{name}-{i}"))
                .spawn(move || body(Ready(ready), stopped))?;
            me.threads.push(thread);
            // A body that ends without a word dropped its `Ready`.
            let rt = started
                .recv()
                .map_err(|_| io::Error::other("a serving thread ended while starting"))??;
            me.runtimes.push(rt);
        }
        Ok(me)
    }

    /// The runtime value of each thread, for
    /// [`Builder::accept_on`](crate::Builder::accept_on).
    pub fn runtimes(&self) -> Vec<R> {
        self.runtimes.clone()
    }
}

impl<R: Runtime> Drop for ServingThreads<R> {
    fn drop(&mut self) {
        drop(self.stop.take());
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}
