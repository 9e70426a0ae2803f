//! Sleeps for callers on any thread, kept by one task on a home thread.
//!
//! compio's timers belong to the thread whose runtime registered them, and
//! their futures cannot move, while the driver's sleeps must be `Send`.
//! Rather than a task and channels per sleep, every sleep of a home is a
//! deadline in one ordered map with its waker; one task on the home thread
//! sleeps until the earliest and wakes those that are due. A sleep that
//! comes due before the one the task waits for nudges it.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use async_channel::{Receiver, Sender};
use futures_lite::FutureExt;

use crate::home::Home;

/// The sleeps of one home thread.
#[derive(Debug, Default)]
pub(crate) struct Timers {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// Pending sleeps by deadline, then by id.
    due: BTreeMap<(Instant, u64), Waker>,
    next_id: u64,
    /// Nudges the task; `None` until it is started.
    nudge: Option<Sender<()>>,
    /// The deadline the task waits for, if any.
    armed: Option<Instant>,
}

impl Timers {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A sleep until `at`, woken by its home's timer task.
pub(crate) struct Sleep {
    home: Home,
    at: Instant,
    id: Option<u64>,
}

impl Sleep {
    pub(crate) fn new(home: Home, at: Instant) -> Self {
        Self { home, at, id: None }
    }

    fn forget(&mut self) {
        if let Some(id) = self.id.take() {
            self.home.timers.state().due.remove(&(self.at, id));
        }
    }
}

impl Future for Sleep {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let me = self.get_mut();
        if Instant::now() >= me.at {
            me.forget();
            return Poll::Ready(());
        }
        let timers = me.home.timers.clone();
        let mut st = timers.state();
        let id = *me.id.get_or_insert_with(|| {
            st.next_id += 1;
            st.next_id
        });
        st.due.insert((me.at, id), cx.waker().clone());
        if st.armed.is_some_and(|a| a <= me.at) {
            return Poll::Pending;
        }
        // The task waits for a later deadline, or for nothing: nudge it,
        // or start it on the first sleep.
        st.armed = Some(me.at);
        match &st.nudge {
            Some(nudge) => {
                // Full means a nudge is pending already; closed means the
                // home stopped, whose timers never fire.
                let _ = nudge.try_send(());
            }
            None => {
                let (nudge, nudged) = async_channel::bounded(1);
                st.nudge = Some(nudge);
                drop(st);
                me.home.run_at_home(move || {
                    compio::runtime::spawn(timer_task(timers, nudged)).detach();
                });
            }
        }
        Poll::Pending
    }
}

impl Drop for Sleep {
    fn drop(&mut self) {
        self.forget();
    }
}

/// Wakes the sleeps that are due, then waits for the next deadline or a
/// nudge; ends when the runtime stops (with it) or nothing can nudge it.
async fn timer_task(timers: Arc<Timers>, nudged: Receiver<()>) {
    loop {
        let next = {
            let mut st = timers.state();
            let now = Instant::now();
            while let Some(entry) = st.due.first_entry() {
                if entry.key().0 > now {
                    break;
                }
                entry.remove().wake();
            }
            st.armed = st.due.keys().next().map(|&(at, _)| at);
            st.armed
        };
        let nudge = async { nudged.recv().await.is_ok() };
        let go_on = match next {
            Some(at) => {
                async {
                    compio::time::sleep_until(at).await;
                    true
                }
                .or(nudge)
                .await
            }
            None => nudge.await,
        };
        if !go_on {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use groupcache_driver::Runtime;

    use crate::CompioThreads;

    fn pending(f: &mut std::pin::Pin<Box<impl std::future::Future<Output = ()>>>) -> bool {
        futures_lite::future::block_on(futures_lite::future::poll_once(f)).is_none()
    }

    #[test]
    fn a_sooner_sleep_from_another_thread_fires_first_and_dropped_ones_leave() {
        let threads = CompioThreads::start(1).unwrap();
        let rt = threads.runtimes().remove(0);
        // The task now waits a minute for this one.
        let mut long = Box::pin(rt.sleep(Duration::from_secs(60)));
        assert!(pending(&mut long));
        // A sooner one, asked from a thread outside compio, nudges it.
        let (tx, rx) = std::sync::mpsc::channel();
        let short = rt.sleep(Duration::from_millis(20));
        let start = std::time::Instant::now();
        std::thread::spawn(move || {
            futures_lite::future::block_on(short);
            let _ = tx.send(());
        });
        rx.recv_timeout(Duration::from_secs(30))
            .expect("the sooner sleep fired without waiting for the later one");
        assert!(start.elapsed() >= Duration::from_millis(20));
        assert!(pending(&mut long));
        assert_eq!(rt.home.timers.state().due.len(), 1, "only the long one");
        drop(long);
        assert!(rt.home.timers.state().due.is_empty());
    }
}
