//! The core behind its lock, and carrying out its outputs.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use parking_lot::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use async_channel::{Receiver, Sender};
use bytes::Bytes;
use crossbeam_utils::CachePadded;
use futures_lite::FutureExt;
// foldhash: the maps every miss writes under the node's lock, and the
// one every hit reads, hash small keys several times faster than SipHash.
use groupcache_core::node::{
    self as core, Claim, ConnId, GetId, GroupCaches, Landed, LoadError, LoadId, Loaded, Output,
    WriteId, WriteReport,
};
use hashbrown::HashMap;

use super::outbox::{ConnHandle, Outbox};
use super::tasks::{conn_loop, connect, timer_loop, Live};
use crate::loader::Loader;
use crate::runtime::Runtime;
use crate::transport::{Reader, Writer};
use crate::Error;

/// The core and the driver's bookkeeping of it, behind one lock.
pub(super) struct State {
    pub(super) node: core::Node,
    pub(super) conns: HashMap<ConnId, ConnHandle>,
    pub(super) gets: HashMap<GetId, Sender<Result<Bytes, Error>>>,
    pub(super) writes: HashMap<WriteId, Sender<Result<WriteReport, Error>>>,
    /// Loads running; dropping a sender cancels its load.
    pub(super) loads: HashMap<LoadId, Sender<()>>,
    pub(super) timer_at: Option<Instant>,
}

impl State {
    /// Hands a load's outcome to the core; its cancel handle goes.
    fn report_load(&mut self, now: Instant, id: LoadId, result: Result<Loaded, LoadError>) {
        self.loads.remove(&id);
        self.node.handle_load(now, id, result);
    }

    /// Gives a new connection its outbox; the core's hold on it is the
    /// handle kept here.
    pub(super) fn open(&mut self, conn: ConnId) -> Arc<Outbox> {
        let outbox = Arc::new(Outbox::default());
        self.conns.insert(conn, ConnHandle(outbox.clone()));
        outbox
    }
}

/// A loader's run on one key.
type Load = std::pin::Pin<Box<dyn Future<Output = Result<Loaded, LoadError>> + Send>>;

/// Work that must happen outside the lock: spawning tasks.
pub(super) enum Action {
    Load(LoadId, Arc<str>, Arc<str>, Receiver<()>),
    Connect(ConnId, Arc<str>, Arc<Outbox>),
}

pub(crate) struct Shared<R: Runtime> {
    pub(super) rt: R,
    /// Padded: every miss and every peer request writes this lock, and
    /// nothing a hit reads (`caches`, `closing`) may share its line.
    pub(super) state: CachePadded<Mutex<State>>,
    /// Each group's caches, which hits read without the node's lock.
    pub(super) caches: HashMap<String, Arc<GroupCaches>>,
    /// Set by [`Node::shutdown`](super::Node::shutdown): from then on, hits
    /// fail as the core fails every get, and drains check whether the node
    /// is idle. Set before the node's next lock, so every drain under that
    /// lock sees it.
    pub(super) closing: AtomicBool,
    pub(super) loaders: HashMap<String, Arc<dyn Loader>>,
    pub(super) wake: Sender<()>,
    pub(super) idle: Sender<()>,
    pub(super) write_timeout: Duration,
    /// Longest a TLS handshake may take, either side.
    pub(super) connect_timeout: Duration,
    /// Every connection accepted or opened speaks TLS with these, if set.
    pub(crate) tls: Option<crate::transport::Tls>,
    pub(super) live: Live,
    /// Discovery rounds run, failed, and that changed the members.
    pub(super) discovery: DiscoveryCounters,
}

/// Counters of a node's discovery rounds.
#[derive(Debug, Default)]
pub(super) struct DiscoveryCounters {
    pub(super) rounds: std::sync::atomic::AtomicU64,
    pub(super) failures: std::sync::atomic::AtomicU64,
    pub(super) changes: std::sync::atomic::AtomicU64,
}

impl<R: Runtime> Shared<R> {
    /// The core behind its lock, with the timer task running. The caller
    /// starts accepting if it serves a port; `idle` tells when a node that
    /// is shutting down has nothing left in flight.
    pub(crate) fn start(
        rt: R,
        tls: Option<crate::transport::Tls>,
        node: core::Node,
        loaders: HashMap<String, Arc<dyn Loader>>,
    ) -> (Arc<Self>, Receiver<()>) {
        let (wake_tx, wake_rx) = async_channel::bounded(1);
        let (idle_tx, idle_rx) = async_channel::bounded(1);
        let write_timeout = node.config().request_timeout;
        let connect_timeout = node.config().connect_timeout;
        let caches = (node.group_names())
            .filter_map(|g| Some((g.to_string(), node.caches(g)?)))
            .collect();
        let shared = Arc::new(Shared {
            rt: rt.clone(),
            caches,
            closing: AtomicBool::new(false),
            state: CachePadded::new(Mutex::new(State {
                node,
                conns: HashMap::new(),
                gets: HashMap::new(),
                writes: HashMap::new(),
                loads: HashMap::new(),
                timer_at: None,
            })),
            loaders,
            wake: wake_tx,
            idle: idle_tx,
            write_timeout,
            connect_timeout,
            tls,
            live: Live::default(),
            discovery: DiscoveryCounters::default(),
        });
        rt.spawn(timer_loop(shared.clone(), wake_rx));
        (shared, idle_rx)
    }

    /// Gets `key` of `group`, whose caches are `caches`: a hit takes the
    /// key's shard's lock alone, and so does a miss this node owns and may
    /// load at once (a claim, whose load answers at once); any other miss
    /// goes on under the node's lock.
    pub(crate) async fn get_key(
        self: &Arc<Self>,
        caches: Option<&GroupCaches>,
        group: &str,
        key: &str,
    ) -> Result<Bytes, Error> {
        let claim = match caches {
            Some(c) if !self.closing.load(Ordering::Relaxed) => {
                Some((c, c.claim(key, self.rt.now())))
            }
            _ => None,
        };
        match claim {
            Some((_, Claim::Hit(hit))) => Ok(hit.value),
            Some((c, Claim::Load(claimed))) => self.run_claim(c, key, claimed).await,
            _ => self.get(|n, now| n.get_missed(now, group, key)).await,
        }
    }

    /// Runs a claimed load of `key`: polled once here; landed in its shard
    /// if that was enough, else handed to the node, which times it.
    async fn run_claim(
        self: &Arc<Self>,
        caches: &GroupCaches,
        key: &str,
        claimed: core::Claimed,
    ) -> Result<Bytes, Error> {
        let group = caches.group();
        let result = match self.load_now(group, key) {
            Started::Done(result) => result,
            Started::Waits(load) => {
                let id = claimed.id;
                let (tx, rx) = async_channel::bounded(1);
                let (cancel, cancelled) = async_channel::bounded(1);
                let adopted = {
                    let mut st = self.lock();
                    let now = self.rt.now();
                    let get = st.node.adopt(now, group, key, claimed);
                    if let Some(get) = get {
                        st.gets.insert(get, tx);
                        st.loads.insert(id, cancel);
                    }
                    self.drain(st);
                    get.is_some()
                };
                if !adopted {
                    // Passed over (a write, a shutdown): the load goes.
                    drop(load);
                    return self.get(|n, now| n.get_missed(now, group, key)).await;
                }
                self.spawn_load(id, (group.clone(), key.into()), load, cancelled);
                return rx.recv().await.unwrap_or(Err(Error::Shutdown));
            }
        };
        match caches.land_claimed(key, claimed, self.rt.now(), result) {
            Landed::Done { result, wake } => {
                // Closing: the node's idle check must run again.
                if wake || self.closing.load(Ordering::Relaxed) {
                    self.input(|n, now| n.wake(now));
                }
                result
            }
            Landed::Node(claimed, result) => {
                self.get(|n, now| n.land_claimed(now, group, key, claimed, result))
                    .await
            }
        }
    }

    /// Gets `keys` of `group`: hits at once, then every miss started under
    /// one lock of the node, as [`Shared::get_many`].
    pub(crate) async fn get_keys<S: AsRef<str>>(
        self: &Arc<Self>,
        group: &str,
        keys: &[S],
    ) -> Vec<Result<Bytes, Error>> {
        let caches = self.caches.get(group).map(|c| &**c);
        let mut out: Vec<Option<Result<Bytes, Error>>> = (keys.iter())
            .map(|k| self.hit(caches, k.as_ref()).map(Ok))
            .collect();
        let missed: Vec<usize> = (0..keys.len()).filter(|&i| out[i].is_none()).collect();
        let got = self
            .get_many(missed.len(), |n, now, j| {
                n.get_missed(now, group, keys[missed[j]].as_ref())
            })
            .await;
        for (i, r) in missed.into_iter().zip(got) {
            out[i] = Some(r);
        }
        out.into_iter().map(|r| r.expect("every key")).collect()
    }

    /// A hit from the group's caches, unless the node is shutting down.
    #[inline]
    fn hit(&self, caches: Option<&GroupCaches>, key: &str) -> Option<Bytes> {
        if self.closing.load(Ordering::Relaxed) {
            return None;
        }
        Some(caches?.get(key, self.rt.now())?.value)
    }

    /// Starts a get through `start` and waits for its outcome.
    pub(crate) async fn get(
        self: &Arc<Self>,
        start: impl FnOnce(&mut core::Node, Instant) -> core::Get,
    ) -> Result<Bytes, Error> {
        // Made before the lock, which every miss waits on, not under it.
        let (tx, rx) = async_channel::bounded(1);
        {
            let mut st = self.lock();
            let now = self.rt.now();
            let got = start(&mut st.node, now);
            if let core::Get::Pending(id) = got {
                st.gets.insert(id, tx);
            }
            // Also after an answer at once: landing a claim that others
            // joined answers them too, and their answers wait in the
            // node's outputs.
            self.drain(st);
            if let core::Get::Ready(r) = got {
                return r;
            }
        }
        rx.recv().await.unwrap_or(Err(Error::Shutdown))
    }

    /// Starts `n` gets through `start` under one lock, sends what they
    /// need in one go, then waits for each in turn.
    pub(crate) async fn get_many(
        self: &Arc<Self>,
        n: usize,
        mut start: impl FnMut(&mut core::Node, Instant, usize) -> core::Get,
    ) -> Vec<Result<Bytes, Error>> {
        enum Slot {
            Done(Result<Bytes, Error>),
            Wait(async_channel::Receiver<Result<Bytes, Error>>),
        }
        let slots: Vec<Slot> = {
            let mut st = self.lock();
            let now = self.rt.now();
            let slots = (0..n)
                .map(|i| match start(&mut st.node, now, i) {
                    core::Get::Ready(r) => Slot::Done(r),
                    core::Get::Pending(id) => {
                        let (tx, rx) = async_channel::bounded(1);
                        st.gets.insert(id, tx);
                        Slot::Wait(rx)
                    }
                })
                .collect();
            self.drain(st);
            slots
        };
        let mut out = Vec::with_capacity(n);
        for slot in slots {
            out.push(match slot {
                Slot::Done(r) => r,
                Slot::Wait(rx) => rx.recv().await.unwrap_or(Err(Error::Shutdown)),
            });
        }
        out
    }

    /// Starts a write through `start` and waits for its outcome.
    pub(crate) async fn write(
        self: &Arc<Self>,
        start: impl FnOnce(&mut core::Node, Instant) -> core::Written,
    ) -> Result<WriteReport, Error> {
        let rx = {
            let mut st = self.lock();
            let now = self.rt.now();
            match start(&mut st.node, now) {
                core::Written::Ready(r) => {
                    self.drain(st);
                    return r;
                }
                core::Written::Pending(id) => {
                    let (tx, rx) = async_channel::bounded(1);
                    st.writes.insert(id, tx);
                    self.drain(st);
                    rx
                }
            }
        };
        rx.recv().await.unwrap_or(Err(Error::Shutdown))
    }

    /// Ends everything: open gets and writes fail, connections close after
    /// their last bytes, and the timer task stops.
    pub(crate) fn stop(self: &Arc<Self>) {
        self.input(|n, now| n.abort(now));
        let mut st = self.lock();
        st.conns.clear();
        for (_, tx) in st.gets.drain() {
            let _ = tx.try_send(Err(Error::Shutdown));
        }
        for (_, tx) in st.writes.drain() {
            let _ = tx.try_send(Err(Error::Shutdown));
        }
    }

    /// Stops the timer task, after [`Shared::stop`].
    pub(crate) fn end(&self) {
        self.wake.close();
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock()
    }

    /// Feeds one input to the core and carries out what it asks.
    pub(super) fn input<T>(self: &Arc<Self>, f: impl FnOnce(&mut core::Node, Instant) -> T) -> T {
        let mut st = self.lock();
        let out = f(&mut st.node, self.rt.now());
        self.drain(st);
        out
    }

    /// Carries out the core's outputs: cheap ones under the lock, loads
    /// and spawns after it is released. A load that finishes at once is
    /// reported here, under the lock again, and what that brings about is
    /// carried out in turn: a loop, not a recursion, however many loads
    /// (queued behind one another) finish so.
    pub(super) fn drain<'a>(self: &'a Arc<Self>, mut st: MutexGuard<'a, State>) {
        loop {
            let actions = self.take_outputs(&mut st);
            drop(st);
            let mut done = Vec::new();
            for a in actions {
                match a {
                    Action::Load(id, group, key, cancelled) => {
                        if let Some(result) = self.start_load(id, group, key, cancelled) {
                            done.push((id, result));
                        }
                    }
                    Action::Connect(conn, addr, outbox) => {
                        self.rt
                            .spawn(connect(self.clone(), conn, addr.to_string(), outbox));
                    }
                }
            }
            if done.is_empty() {
                return;
            }
            st = self.lock();
            let now = self.rt.now();
            for (id, result) in done {
                st.report_load(now, id, result);
            }
        }
    }

    /// Carries out the core's outputs that need no spawn, under the lock,
    /// and returns those that do.
    fn take_outputs(&self, st: &mut State) -> Vec<Action> {
        let mut actions = Vec::new();
        while let Some(o) = st.node.poll_output() {
            match o {
                Output::Send { conn, data } => {
                    if let Some(c) = st.conns.get(&conn) {
                        c.0.push(data);
                    }
                }
                Output::Answer {
                    conn,
                    seq,
                    response,
                } => {
                    if let Some(c) = st.conns.get(&conn) {
                        c.0.push_answer(seq, response);
                    }
                }
                Output::Close { conn, reason } => {
                    tracing::debug!(%conn, ?reason, "closing connection");
                    st.conns.remove(&conn);
                }
                Output::Done { get, result } => {
                    if let Some(tx) = st.gets.remove(&get) {
                        let _ = tx.try_send(result);
                    }
                }
                Output::Written { write, result } => {
                    if let Some(tx) = st.writes.remove(&write) {
                        let _ = tx.try_send(result);
                    }
                }
                Output::Load { id, group, key } => {
                    // Dropping the sender cancels the load.
                    let (cancel, cancelled) = async_channel::bounded(1);
                    st.loads.insert(id, cancel);
                    actions.push(Action::Load(id, group, key, cancelled));
                }
                Output::CancelLoad { id } => {
                    st.loads.remove(&id);
                }
                Output::Connect { conn, addr } => {
                    let outbox = st.open(conn);
                    actions.push(Action::Connect(conn, addr, outbox));
                }
            }
        }
        let next = st.node.poll_timeout();
        if next.is_some() && (st.timer_at.is_none() || next < st.timer_at) {
            st.timer_at = next;
            let _ = self.wake.try_send(());
        }
        if self.closing.load(Ordering::Relaxed) && st.node.is_idle() {
            let _ = self.idle.try_send(());
        }
        actions
    }

    /// Starts a load: polls it once, here, in the runtime's context, and
    /// returns its result if that was enough. A load that must wait goes to
    /// the runtime as a task of its own, so it never depends on the task
    /// that started it being polled again. So a loader that answers from
    /// memory costs no hand-off between threads, and one that waits on the
    /// origin costs the one it always did.
    fn start_load(
        self: &Arc<Self>,
        id: LoadId,
        group: Arc<str>,
        key: Arc<str>,
        cancelled: Receiver<()>,
    ) -> Option<Result<Loaded, LoadError>> {
        match self.load_now(&group, &key) {
            Started::Done(result) => Some(result),
            Started::Waits(load) => {
                self.spawn_load(id, (group, key), load, cancelled);
                None
            }
        }
    }

    /// Calls the group's loader on `key` and polls its future once, here,
    /// in the runtime's context. The loader and the group's name are
    /// borrowed, not cloned: reference counts that every caller's miss
    /// would write. A panic, in the call or the poll, is a failed load.
    fn load_now(&self, group: &str, key: &str) -> Started {
        let Some(loader) = self.loaders.get(group) else {
            let e = LoadError::Failed(format!("no loader for group {group:?}"));
            return Started::Done(Err(e));
        };
        let _context = self.rt.enter();
        let started = std::panic::catch_unwind(AssertUnwindSafe(|| {
            let mut load = loader.load(key.to_string());
            // No waker is needed: a load still pending is polled again by
            // the task it moves to, which registers that task's.
            match load.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
                Poll::Ready(result) => Started::Done(result),
                Poll::Pending => Started::Waits(load),
            }
        }));
        started.unwrap_or_else(|panic| Started::Done(Err(panicked(group, key, &*panic))))
    }

    /// Runs load `id` of `key` to its end in a task of its own, or until
    /// the core cancels it (`cancelled` closes), and reports it. Only a
    /// load that waits needs the cancel handle, so one that answers at
    /// once never makes it.
    fn spawn_load(
        self: &Arc<Self>,
        id: LoadId,
        (group, key): (Arc<str>, Arc<str>),
        load: Load,
        cancelled: Receiver<()>,
    ) {
        let mut guard = LoadGuard {
            shared: Some(self.clone()),
            id,
        };
        self.rt.spawn(async move {
            let ran = async { Some(AssertUnwindSafe(load).catch_unwind().await) }
                .or(async {
                    // Ends when the core cancels the load (sender dropped).
                    let _ = cancelled.recv().await;
                    None
                })
                .await;
            let result = match ran {
                Some(Ok(result)) => result,
                Some(Err(panic)) => Err(panicked(&group, &key, &*panic)),
                None => Err(LoadError::Failed(format!("{group}/{key}: load cancelled"))),
            };
            guard.finish(result);
        });
    }

    /// Reports a load's outcome to the core.
    pub(super) fn finish_load(self: &Arc<Self>, id: LoadId, result: Result<Loaded, LoadError>) {
        let mut st = self.lock();
        let now = self.rt.now();
        st.report_load(now, id, result);
        self.drain(st);
    }

    pub(super) fn spawn_io(
        self: &Arc<Self>,
        conn: ConnId,
        r: Reader<R>,
        w: Writer<R>,
        outbox: Arc<Outbox>,
    ) {
        self.rt.spawn(conn_loop(self.clone(), conn, r, w, outbox));
    }
}

/// Reports a load exactly once: with its result, or as failed if the task
/// is dropped first (runtime shutting down), so the key is never wedged.
pub(super) struct LoadGuard<R: Runtime> {
    pub(super) shared: Option<Arc<Shared<R>>>,
    pub(super) id: LoadId,
}

impl<R: Runtime> LoadGuard<R> {
    pub(super) fn finish(&mut self, result: Result<Loaded, LoadError>) {
        if let Some(s) = self.shared.take() {
            s.finish_load(self.id, result);
        }
    }
}

impl<R: Runtime> Drop for LoadGuard<R> {
    fn drop(&mut self) {
        self.finish(Err(LoadError::Failed("load cancelled".into())));
    }
}

/// A load after its first poll ([`Shared::load_now`]).
enum Started {
    /// It answered at once.
    Done(Result<Loaded, LoadError>),
    /// It waits: to be run to its end by a task of its own.
    Waits(Load),
}

/// A loader's panic as a failed load of `group`/`key`, logged.
fn panicked(group: &str, key: &str, panic: &(dyn std::any::Any + Send)) -> LoadError {
    let msg = panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-string panic".into());
    tracing::warn!(%group, %key, "loader panicked: {msg}");
    LoadError::Failed(format!("{group}/{key}: loader panicked: {msg}"))
}
