//! groupcache-driver: runs the sans-IO `groupcache-core` over TCP on any
//! async runtime.
//!
//! Users do not pick this crate: they pick `groupcache-tokio` or
//! `groupcache-async-std` (for async-std and smol), which implement
//! [`Runtime`] and re-export this API. Everything the adapters share lives
//! here once; every decision lives in the core.
//!
//! - [`Builder`] / [`Node`]: a member of the cluster, serving its peer port.
//! - [`Client`]: asks a node for values, and to write, without being a
//!   member.
//! - [`Group::set`], [`Group::remove`], [`Group::purge`]: writes across the
//!   cluster.
//! - [`Loader`]: how a group fetches a missing key.
//! - [`Discovery`], [`DnsDiscovery`], [`PeerSource`]: members from DNS
//!   names (`dns+NAME:PORT`, `dnssrv+NAME`) resolved every interval.
//! - [`Tls`]: mutual TLS 1.3 on every connection ([`Builder::tls`],
//!   [`Client::tls`]), over the runtime's streams, for every runtime.

mod client;
mod discovery;
mod loader;
#[cfg(feature = "prometheus")]
pub mod metrics;
mod node;
mod runtime;
pub mod sample;
mod tls;
mod transport;

#[cfg(feature = "conformance")]
pub mod conformance;

pub use bytes::Bytes;
pub use client::Client;
pub use discovery::{
    Discovery, DiscoveryError, DnsConfig, DnsDiscovery, MembersFuture, PeerSource, PeerSourceError,
};
pub use groupcache_core::node::{
    Error, GroupConfig, GroupExists, GroupStats, LoadError, Loaded, WriteOp, WriteReport,
};
pub use groupcache_core::{self as core, ring::HashFn};
pub use ipnet::IpNet;
pub use loader::{LoadFuture, Loader};
pub use node::{Builder, DiscoveryStats, Group, Node, StartError};
pub use runtime::{timeout, Runtime};
pub use tls::{Tls, TlsError, TlsFiles, TlsStats};

/// Declares an adapter crate's public API over its runtime type `$rt`: the
/// re-exports and the `Builder`, `Node`, `Group` and `Client` aliases, so
/// every adapter offers the same names.
#[macro_export]
macro_rules! adapter_api {
    ($rt:ty) => {
        pub use $crate::{
            core, sample, Bytes, Discovery, DiscoveryError, DiscoveryStats, DnsConfig,
            DnsDiscovery, Error, GroupConfig, GroupExists, GroupStats, HashFn, IpNet, LoadError,
            LoadFuture, Loaded, Loader, MembersFuture, PeerSource, PeerSourceError, StartError,
            Tls, TlsError, TlsFiles, TlsStats, WriteOp, WriteReport,
        };
        /// Configures a node; `Builder::new()` uses the runtime's default
        /// handle. See [`groupcache_driver::Builder`].
        pub type Builder = $crate::Builder<$rt>;
        /// A running node; see [`groupcache_driver::Node`].
        pub type Node = $crate::Node<$rt>;
        /// A handle on one group; see [`groupcache_driver::Group`].
        pub type Group = $crate::Group<$rt>;
        /// A client for non-members; `Client::new(addr)` uses the runtime's
        /// default handle. See [`groupcache_driver::Client`].
        pub type Client = $crate::Client<$rt>;
    };
}
