//! A client for processes that are not members of the cluster (the
//! original's `NewBttcpClient`): it asks one node, which routes gets and
//! carries out writes. It runs the core's own requester (a node with no
//! group and no peer list), so it shares every rule of the protocol with
//! the members: pooled and pipelined connections, keepalives, timeouts,
//! back-off, and writes only to a node that announced it understands them.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use groupcache_core::node::{self as core, Config, WriteOp, WriteReport};

use crate::node::Shared;
use crate::runtime::Runtime;
use crate::transport::Tls;
use crate::Error;

/// Asks a node for values, and to write, over the peer protocol.
///
/// Cloning is cheap: clones share connections. Gets work against Go nodes
/// too; writes need a node that understands them (a Go node is refused
/// with [`Error::Write`] before anything is sent). A node that cannot be
/// reached is [`Error::Unreachable`].
///
/// ```no_run
/// # async fn demo<R: groupcache_driver::Runtime>(rt: R) {
/// let client = groupcache_driver::Client::with_runtime(rt, "127.0.0.1:8001");
/// match client.get("score", "Tom").await {
///     Ok(v) => println!("{}", String::from_utf8_lossy(&v)),
///     Err(e) if e.is_not_found() => println!("no such key"),
///     Err(e) => eprintln!("{e}"),
/// }
/// client.set("score", "Tom", "631", None).await.expect("stored");
/// client.remove("score", "Tom").await.expect("removed");
/// # }
/// ```
pub struct Client<R: Runtime> {
    rt: R,
    addr: Arc<str>,
    cfg: Config,
    tls: Option<Tls>,
    /// Started on first use, stopped when the last clone is dropped.
    engine: Arc<OnceLock<Engine<R>>>,
}

/// The core's requester behind its lock, and the tasks that drive it.
struct Engine<R: Runtime>(Arc<Shared<R>>);

impl<R: Runtime> Drop for Engine<R> {
    fn drop(&mut self) {
        self.0.stop();
        self.0.end();
    }
}

impl<R: Runtime> Clone for Client<R> {
    fn clone(&self) -> Self {
        Self {
            rt: self.rt.clone(),
            addr: self.addr.clone(),
            cfg: self.cfg.clone(),
            tls: self.tls.clone(),
            engine: self.engine.clone(),
        }
    }
}

impl<R: Runtime + Default> Client<R> {
    /// A client of the node at `addr` on the runtime `R::default()` picks.
    pub fn new(addr: impl Into<String>) -> Self {
        Self::with_runtime(R::default(), addr)
    }
}

impl<R: Runtime> Client<R> {
    /// A client of the node at `addr` (`host:port`), with 1 s to connect,
    /// 3 s to answer, and at most 33 s for a slow load (see
    /// [`Client::max_wait`]).
    pub fn with_runtime(rt: R, addr: impl Into<String>) -> Self {
        Self {
            rt,
            addr: addr.into().into(),
            // Not a member: its name is in no peer list.
            cfg: Config::new(""),
            tls: None,
            engine: Arc::default(),
        }
    }

    /// Sets the connect and request timeouts.
    pub fn timeouts(mut self, connect: Duration, request: Duration) -> Self {
        self.cfg.connect_timeout = connect;
        self.cfg.request_timeout = request;
        self.engine = Arc::default();
        self
    }

    /// Speaks mutual TLS with the node (its certificate verified against
    /// the CA, this client's presented). Set it before the first request.
    #[cfg(feature = "tls")]
    pub fn tls(mut self, tls: Tls) -> Self {
        self.tls = Some(tls);
        self.engine = Arc::default();
        self
    }

    /// Longest a request may wait in all while the node keeps saying it is
    /// still working (keepalives); the default, 33 s, is a group's default
    /// load timeout plus a request timeout. Silence longer than the request
    /// timeout still ends a request at once.
    pub fn max_wait(mut self, d: Duration) -> Self {
        self.cfg.max_wait = d;
        self.engine = Arc::default();
        self
    }

    fn shared(&self) -> &Arc<Shared<R>> {
        &self
            .engine
            .get_or_init(|| {
                let node = core::Node::new(self.cfg.clone());
                let (shared, _idle) =
                    Shared::start(self.rt.clone(), self.tls.clone(), node, Default::default());
                Engine(shared)
            })
            .0
    }

    /// Gets `key` of `group` through the node.
    pub async fn get(&self, group: &str, key: &str) -> Result<Bytes, Error> {
        let addr = &self.addr;
        let start = |n: &mut core::Node, now| core::Get::Pending(n.get_via(now, addr, group, key));
        self.shared().get(start).await
    }

    /// Gets many keys of `group` through the node, pipelined on one
    /// connection; the results are in the order of `keys`, each key with
    /// its own (see [`crate::Group::get_many`]).
    pub async fn get_many<S: AsRef<str>>(
        &self,
        group: &str,
        keys: &[S],
    ) -> Vec<Result<Bytes, Error>> {
        let addr = &self.addr;
        self.shared()
            .get_many(keys.len(), |n, now, i| {
                core::Get::Pending(n.get_via(now, addr, group, keys[i].as_ref()))
            })
            .await
    }

    /// Asks the node to carry out a write across the cluster (see
    /// [`crate::Node::write`]).
    pub async fn write(&self, group: &str, op: WriteOp) -> Result<WriteReport, Error> {
        let addr = &self.addr;
        let start =
            |n: &mut core::Node, now| core::Written::Pending(n.write_via(now, addr, group, op));
        self.shared().write(start).await
    }

    /// Sets `key` of `group` (see [`crate::Group::set`]).
    pub async fn set(
        &self,
        group: &str,
        key: &str,
        value: impl Into<Bytes>,
        ttl: Option<Duration>,
    ) -> Result<WriteReport, Error> {
        let op = WriteOp::set(key, value, ttl);
        self.write(group, op).await
    }

    /// Removes `key` of `group` from every node (see
    /// [`crate::Group::remove`]).
    pub async fn remove(&self, group: &str, key: &str) -> Result<WriteReport, Error> {
        self.write(group, WriteOp::remove(key)).await
    }

    /// Forgets every key of `group` on every node.
    pub async fn purge(&self, group: &str) -> Result<WriteReport, Error> {
        self.write(group, WriteOp::Purge).await
    }
}
