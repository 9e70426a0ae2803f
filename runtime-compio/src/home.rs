//! Where work runs: on the compio thread asking for it, or sent to a
//! runtime value's home thread from anywhere else.

use std::future::Future;
use std::io;
use std::sync::Arc;

use async_channel::{Receiver, Sender};
use futures_lite::FutureExt;

use crate::timer::Timers;
use crate::Compio;

/// Work sent to a compio thread from outside it.
type Job = Box<dyn FnOnce() + Send>;

/// A compio thread that takes jobs from other threads: the thread a
/// [`Compio`] value spawns on when used outside compio.
#[derive(Clone, Debug)]
pub(crate) struct Home {
    jobs: Sender<Job>,
    /// The sleeps of callers using this home, kept by one task there.
    pub(crate) timers: Arc<Timers>,
}

impl Home {
    /// The compio runtime running the caller, which takes jobs until it
    /// stops. One task per runtime takes them, started by the first call
    /// on its thread; later calls share it.
    ///
    /// # Panics
    /// Outside a compio runtime.
    pub(crate) fn current() -> Self {
        thread_local! {
            static HOME: std::cell::RefCell<Option<Home>> = const { std::cell::RefCell::new(None) };
        }
        HOME.with_borrow_mut(|home| {
            // A runtime that stopped dropped its task, and with it the
            // receiver: a later runtime on this thread needs its own.
            if let Some(h) = home.as_ref().filter(|h| !h.jobs.is_closed()) {
                return h.clone();
            }
            let (jobs, rx) = async_channel::unbounded();
            compio::runtime::spawn(take_jobs(rx)).detach();
            let h = Self {
                jobs,
                timers: Arc::default(),
            };
            *home = Some(h.clone());
            h
        })
    }

    /// Runs `job` now if the caller is on a compio thread, else on the home
    /// thread. Dropped if the home thread has stopped, as a stopped
    /// runtime's tasks are.
    pub(crate) fn run(&self, job: impl FnOnce() + Send + 'static) {
        if on_compio() {
            job();
        } else {
            let _ = self.jobs.try_send(Box::new(job));
        }
    }

    /// Runs `job` on the home thread, wherever the caller is.
    pub(crate) fn run_at_home(&self, job: impl FnOnce() + Send + 'static) {
        let _ = self.jobs.try_send(Box::new(job));
    }

    /// Spawns `fut` on the caller's compio thread, or the home thread.
    pub(crate) fn spawn(&self, fut: impl Future<Output = ()> + Send + 'static) {
        self.run(move || compio::runtime::spawn(fut).detach());
    }

    /// Runs the future `make` builds (one that must stay on a compio
    /// thread, such as an io_uring operation) on the caller's compio thread
    /// or the home thread, and gives its output to the caller, wherever that
    /// is. Dropping the returned future cancels the work.
    pub(crate) fn run_io<T, F, M>(
        &self,
        make: M,
    ) -> impl Future<Output = io::Result<T>> + Send + 'static
    where
        T: Send + 'static,
        F: Future<Output = io::Result<T>> + 'static,
        M: FnOnce() -> F + Send + 'static,
    {
        let (tx, rx) = async_channel::bounded(1);
        let (cancel, cancelled) = async_channel::bounded::<()>(1);
        self.run(move || {
            compio::runtime::spawn(async move {
                // `cancel` is only ever dropped: the caller gave up.
                let out = async { Some(make().await) }.or(closed(&cancelled)).await;
                if let Some(out) = out {
                    let _ = tx.try_send(out);
                }
            })
            .detach();
        });
        async move {
            let _cancel_on_drop = cancel;
            rx.recv().await.unwrap_or_else(|_| Err(stopped()))
        }
    }
}

/// The error of work whose compio thread stopped before it finished.
pub(crate) fn stopped() -> io::Error {
    io::Error::other("the compio runtime has stopped")
}

/// Completes when the half sending on `rx` is dropped; what it sends
/// meanwhile (nothing, or wake-ups) is dropped.
pub(crate) async fn closed<T, X>(rx: &Receiver<T>) -> Option<X> {
    while rx.recv().await.is_ok() {}
    None
}

fn on_compio() -> bool {
    compio::runtime::Runtime::try_with_current(|_| ()).is_ok()
}

async fn take_jobs(jobs: Receiver<Job>) {
    while let Ok(job) = jobs.recv().await {
        job();
    }
}

/// Threads each running a compio runtime: the runtimes
/// [`Builder::accept_on`](groupcache_driver::Builder::accept_on) takes for
/// thread-per-core serving, and homes for work started outside compio.
/// Dropping it stops the threads and the tasks on them, so keep it until
/// the nodes on it have shut down.
#[derive(Debug)]
pub struct CompioThreads(groupcache_driver::ServingThreads<Compio>);

impl CompioThreads {
    /// Starts `n` threads (at least one), each running a compio runtime.
    pub fn start(n: usize) -> io::Result<Self> {
        let threads =
            groupcache_driver::ServingThreads::start(n, "groupcache-compio", |ready, stopped| {
                let rt = match runtime() {
                    Ok(rt) => rt,
                    Err(e) => return ready.fail(e),
                };
                let (jobs, rx) = async_channel::unbounded::<Job>();
                ready.ok(Compio {
                    home: Home {
                        jobs,
                        timers: Arc::default(),
                    },
                });
                rt.block_on(take_jobs(rx).or(stopped.wait()));
            })?;
        Ok(Self(threads))
    }

    /// A runtime value per thread, each with its thread as home.
    pub fn runtimes(&self) -> Vec<Compio> {
        self.0.runtimes()
    }
}

/// A compio runtime whose io_uring runs completions' kernel work when the
/// thread next enters the kernel, rather than interrupting it for each
/// (`IORING_SETUP_COOP_TASKRUN`): this thread is the ring's only user.
pub fn runtime() -> io::Result<compio::runtime::Runtime> {
    let mut proactor = compio::driver::ProactorBuilder::new();
    proactor.coop_taskrun(true).taskrun_flag(true);
    compio::runtime::RuntimeBuilder::new()
        .with_proactor(proactor)
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_on_one_runtime_share_its_home_and_a_new_runtime_gets_its_own() {
        let (first, second) = runtime().unwrap().block_on(async {
            let (a, b) = (Home::current(), Home::current());
            assert!(a.jobs.same_channel(&b.jobs), "one task takes the jobs");
            // Work sent from another thread runs on this one.
            let (tx, rx) = async_channel::bounded(1);
            let here = std::thread::current().id();
            let b2 = b.clone();
            std::thread::spawn(move || {
                b2.run(move || tx.try_send(std::thread::current().id()).unwrap())
            })
            .join()
            .unwrap();
            assert_eq!(rx.recv().await.unwrap(), here);
            (a, b)
        });
        drop(second);
        // That runtime is gone, and its task with it.
        assert!(first.jobs.is_closed());
        let fresh = runtime().unwrap().block_on(async { Home::current() });
        assert!(!fresh.jobs.same_channel(&first.jobs));
    }
}
