//! A running node: the core state machine behind a mutex, driven by tasks
//! that move bytes, run loaders and keep time. Every decision is the core's;
//! this module only carries out its outputs.
//!
//! Its parts: `builder` (configuring and starting), `shared` (the core
//! behind its lock, carrying out outputs), `outbox` (bytes queued per
//! connection), `tasks` (timers, accepting, connecting, one task per
//! connection).

mod builder;
mod outbox;
mod range;
mod shared;
mod tasks;
mod watch;

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use async_channel::{Receiver, Sender};
use bytes::Bytes;
use groupcache_core::node::{GroupCaches, GroupExists, GroupStats, WriteOp, WriteReport};

use crate::pages::Paged;
use crate::runtime::{timeout, Runtime};
#[cfg(feature = "tls")]
use crate::tls::{Tls, TlsStats};
use crate::Error;

pub use builder::Builder;
pub use range::RangeError;

/// Counters of a node's discovery rounds ([`Node::discovery_stats`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct DiscoveryStats {
    /// Rounds run since the node started (not counting the one before).
    pub rounds: u64,
    /// Rounds that failed or found nobody; the members were kept.
    pub failures: u64,
    /// Rounds that changed the members.
    pub changes: u64,
}
pub(crate) use shared::Shared;

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        source: io::Error,
    },
    /// Two groups have the same name.
    #[error("invalid configuration: {0}")]
    Group(#[from] GroupExists),
}

/// A running groupcache node. Cloning it is cheap; every clone is the same
/// node.
#[derive(Clone)]
pub struct Node<R: Runtime> {
    shared: Arc<Shared<R>>,
    local: SocketAddr,
    stop: Sender<()>,
    idle: Receiver<()>,
    shutdown_timeout: Duration,
    /// The paged groups' settings, sources and HEAD caches, by group.
    paged: Arc<HashMap<String, Arc<Paged>>>,
}

impl<R: Runtime> std::fmt::Debug for Node<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node").field("local", &self.local).finish()
    }
}

impl<R: Runtime> Node<R> {
    /// The address the peer port is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// This node's name in peer lists.
    pub fn self_addr(&self) -> String {
        self.shared.lock().node.config().self_addr.clone()
    }

    /// Gets `key` of `group`: from this node's caches, from its owner, or by
    /// loading it. A hit takes one lock, of the key's cache shard, and
    /// threads that hit different keys rarely meet on one.
    pub async fn get(&self, group: &str, key: &str) -> Result<Bytes, Error> {
        let caches = self.shared.caches.get(group).map(|c| &**c);
        self.shared.get_key(caches, group, key).await
    }

    /// Gets many keys of `group` at once: every key is asked for before
    /// any answer is awaited, so the keys one peer owns travel pipelined
    /// on its connection. The results are in the order of `keys`, each
    /// key with its own.
    pub async fn get_many<S: AsRef<str>>(
        &self,
        group: &str,
        keys: &[S],
    ) -> Vec<Result<Bytes, Error>> {
        self.shared.get_keys(group, keys).await
    }

    /// Carries out a write across the cluster (see [`WriteOp`]): the key's
    /// owner applies it first, then every other node drops its copy. Nodes
    /// that could not be told are in [`WriteReport::not_reached`]; their
    /// copies live at most the group's hot TTL. Fails with
    /// [`Error::Write`] when the owner could not apply it.
    pub async fn write(&self, group: &str, op: WriteOp) -> Result<WriteReport, Error> {
        self.shared.write(|n, now| n.write(now, group, op)).await
    }

    /// A handle on one group, for repeated gets.
    pub fn group(&self, name: &str) -> Option<Group<R>> {
        Some(Group {
            node: self.clone(),
            name: name.into(),
            caches: self.shared.caches.get(name)?.clone(),
            paged: self.paged.get(name).cloned(),
        })
    }

    /// Replaces the cluster's members (this node included). Gets under way
    /// finish; new ones follow the new ring.
    pub fn set_peers<I, S>(&self, peers: I)
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        // Through `input`: the change may close connections and move
        // deadlines, which the node's outputs carry out.
        self.shared.input(|n, now| n.set_peers(now, peers));
    }

    /// The current members, this node included if it owns keys, in ring
    /// order: what the last [`Node::set_peers`] or discovery round gave.
    pub fn members(&self) -> Vec<String> {
        let st = self.shared.lock();
        st.node
            .ring()
            .peers()
            .iter()
            .map(|p| p.to_string())
            .collect()
    }

    /// Counters of this node's discovery rounds (all zero without
    /// [`Builder::discovery`]).
    pub fn discovery_stats(&self) -> DiscoveryStats {
        let c = &self.shared.discovery;
        DiscoveryStats {
            rounds: c.rounds.load(Ordering::Relaxed),
            failures: c.failures.load(Ordering::Relaxed),
            changes: c.changes.load(Ordering::Relaxed),
        }
    }

    /// This node's TLS settings, if it speaks TLS: the same certificate can
    /// serve an HTTPS front ([`Tls::https_config`]).
    #[cfg(feature = "tls")]
    pub fn tls(&self) -> Option<Tls> {
        self.shared.tls.clone()
    }

    /// Counters of this node's TLS handshakes, if it speaks TLS.
    #[cfg(feature = "tls")]
    pub fn tls_stats(&self) -> Option<TlsStats> {
        self.shared.tls.as_ref().map(Tls::stats)
    }

    /// The member that owns `key`.
    pub fn owner(&self, key: &str) -> Option<String> {
        self.shared.lock().node.owner(key).map(str::to_string)
    }

    /// Counters of a group.
    pub fn stats(&self, group: &str) -> Option<GroupStats> {
        self.shared.lock().node.stats(group)
    }

    /// Names of the groups.
    pub fn groups(&self) -> Vec<String> {
        let st = self.shared.lock();
        st.node.group_names().map(str::to_string).collect()
    }

    /// Stops accepting, lets requests in flight finish (at most the shutdown
    /// timeout), then answers every request still open with a shutdown
    /// error, cancels loads still running, and closes every connection once
    /// its answers are written (each write bounded by the request timeout).
    pub async fn shutdown(&self) {
        let _ = self.stop.try_send(());
        self.stop.close();
        self.shared.closing.store(true, Ordering::Relaxed);
        self.shared.input(|n, now| n.shutdown(now));
        // Inbound connections' tasks drain themselves: wake each to see it.
        for c in self.shared.lock().conns.values() {
            c.0.waker.wake();
        }
        let rt = self.shared.rt.clone();
        let idle = self.idle.clone();
        let shared = self.shared.clone();
        let drained = timeout(&rt, self.shutdown_timeout, async move {
            while !shared.lock().node.is_idle() {
                if idle.recv().await.is_err() {
                    break;
                }
            }
        })
        .await;
        if drained.is_none() {
            tracing::warn!(
                "shutdown timed out with requests in flight: answering them with errors"
            );
        }
        self.shared.stop();
        let flushed = timeout(&rt, self.shared.write_timeout, self.shared.live.all_ended()).await;
        if flushed.is_none() {
            tracing::warn!("shutdown: some connections did not take their last answers in time");
        }
        self.shared.end();
    }
}

/// A handle on one group of a node.
#[derive(Clone)]
pub struct Group<R: Runtime> {
    node: Node<R>,
    name: Arc<str>,
    caches: Arc<GroupCaches>,
    paged: Option<Arc<Paged>>,
}

impl<R: Runtime> std::fmt::Debug for Group<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Group")
            .field("name", &self.name)
            .field("node", &self.node)
            .field("pages", &self.paged.as_ref().map(|p| p.cfg))
            .finish()
    }
}

impl<R: Runtime> Group<R> {
    /// The group's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// How many shards the group's caches are split into on this node
    /// ([`Config::cache_shards`](crate::core::node::Config::cache_shards)).
    pub fn cache_shards(&self) -> usize {
        self.caches.shards()
    }

    /// Gets `key` (see [`Node::get`]).
    pub async fn get(&self, key: &str) -> Result<Bytes, Error> {
        (self.node.shared)
            .get_key(Some(&self.caches), &self.name, key)
            .await
    }

    /// Gets many keys at once (see [`Node::get_many`]).
    ///
    /// ```no_run
    /// # async fn demo<R: groupcache_driver::Runtime>(g: groupcache_driver::Group<R>) {
    /// for (key, value) in ["Tom", "Jack"].iter().zip(g.get_many(&["Tom", "Jack"]).await) {
    ///     println!("{key}: {value:?}");
    /// }
    /// # }
    /// ```
    pub async fn get_many<S: AsRef<str>>(&self, keys: &[S]) -> Vec<Result<Bytes, Error>> {
        self.node.get_many(&self.name, keys).await
    }

    /// Stores `value` under `key` at its owner, served for `ttl` (capped
    /// by the group's TTL; `None`: the group's); every other node drops
    /// its copy and fetches the new value on its next get. Concurrent sets
    /// of one key are applied in the order the owner receives them; none is
    /// dropped. See [`Node::write`].
    ///
    /// ```no_run
    /// # async fn demo<R: groupcache_driver::Runtime>(g: groupcache_driver::Group<R>) {
    /// let report = g.set("Tom", "631", None).await.expect("the owner stored it");
    /// if !report.not_reached.is_empty() {
    ///     eprintln!("copies may live on until the hot TTL on {:?}", report.not_reached);
    /// }
    /// # }
    /// ```
    pub async fn set(
        &self,
        key: &str,
        value: impl Into<Bytes>,
        ttl: Option<Duration>,
    ) -> Result<WriteReport, Error> {
        let op = WriteOp::set(key, value, ttl);
        self.node.write(&self.name, op).await
    }

    /// Removes `key` from every node. A load of it under way is not cached
    /// afterwards, so once this returns `Ok` with nobody
    /// [`not_reached`](WriteReport::not_reached), no get returns the old
    /// value. See [`Node::write`].
    pub async fn remove(&self, key: &str) -> Result<WriteReport, Error> {
        let op = WriteOp::remove(key);
        self.node.write(&self.name, op).await
    }

    /// Forgets every key of the group on every node: two rounds of one
    /// message per node, whatever the number of keys (the second drops
    /// what a node fetched meanwhile from an owner the first had not
    /// reached yet). See [`Node::write`].
    pub async fn purge(&self) -> Result<WriteReport, Error> {
        self.node.write(&self.name, WriteOp::Purge).await
    }

    /// The group's counters.
    pub fn stats(&self) -> GroupStats {
        self.node.stats(&self.name).unwrap_or_default()
    }
}
