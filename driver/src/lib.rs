//! groupcache-driver: runs the sans-IO `groupcache-core` over TCP on any
//! async runtime.
//!
//! Users do not pick this crate: they pick `groupcache-tokio`,
//! `groupcache-async-std` (for async-std and smol) or `groupcache-compio`
//! (io_uring), which implement [`Runtime`] and re-export this API.
//! Everything the adapters share lives here once; every decision lives in
//! the core.
//!
//! - [`Builder`] / [`Node`]: a member of the cluster, serving its peer port.
//! - [`Client`]: asks a node for values, and to write, without being a
//!   member.
//! - [`Group::set`], [`Group::remove`], [`Group::purge`]: writes across the
//!   cluster.
//! - [`Loader`]: how a group fetches a missing key.
//! - [`PageSource`], [`Builder::paged_group`], [`Group::get_range`]:
//!   objects cached in fixed-size pages and read by byte range, never
//!   stitched from two versions.
//! - [`Group::get_many`], [`Client::get_many`]: many keys in one call,
//!   pipelined per owner.
//! - [`Discovery`], [`PeerSource`]: members from any source; with the
//!   `dns` feature, `DnsDiscovery` resolves DNS names (`dns+NAME:PORT`,
//!   `dnssrv+NAME`) every interval.
//! - With the `tls` feature, `Tls`: mutual TLS 1.3 on every connection
//!   (`Builder::tls`, `Client::tls`), over the runtime's streams, for
//!   every runtime.
//!
//! # Features
//!
//! All off by default, so a user pays only for what they use; the
//! adapters forward `dns` and `tls`, and the `groupcache` command turns
//! both on.
//!
//! - `dns`: DNS discovery (hickory-resolver, which runs on a small tokio
//!   runtime of its own thread, whatever runtime the node uses).
//! - `tls`: mutual TLS (rustls with ring).
//! - `prometheus`: [`metrics`]'s Prometheus text exposition.
//! - `conformance`: the adapter conformance suite (turns on `dns` and
//!   `tls`).

mod client;
mod discovery;
mod loader;
#[cfg(feature = "prometheus")]
pub mod metrics;
mod node;
mod pages;
mod runtime;
pub mod sample;
mod threads;
#[cfg(feature = "tls")]
mod tls;
mod transport;

#[cfg(feature = "conformance")]
pub mod conformance;

pub use bytes::Bytes;
pub use client::Client;
pub use discovery::{Discovery, DiscoveryError, MembersFuture, PeerSource, PeerSourceError};
#[cfg(feature = "dns")]
pub use discovery::{DnsConfig, DnsDiscovery};
pub use groupcache_core::node::{
    Config, Error, GroupConfig, GroupExists, GroupStats, LoadError, Loaded, WriteOp, WriteReport,
};
pub use groupcache_core::{self as core, ring::HashFn};
pub use ipnet::IpNet;
pub use loader::{LoadFuture, Loader};
pub use node::{Builder, DiscoveryStats, Group, Node, RangeError, StartError};
pub use pages::{InfoFuture, ObjectInfo, PageConfig, PageSource};
pub use runtime::{timeout, Runtime};
pub use threads::{Ready, ServingThreads, Stopped};
#[cfg(feature = "tls")]
pub use tls::{Tls, TlsError, TlsFiles, TlsStats};
