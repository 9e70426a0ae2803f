//! groupcache-core: the sans-IO heart of groupcache-rs.
//!
//! Everything a groupcache node decides lives here as plain state machines
//! with no sockets, no tasks and no clock: time is always an input (`now`).
//! Runtime adapters (`groupcache-tokio`, `groupcache-async-std`) move bytes
//! and run loaders; this crate tells them what to do.
//!
//! - [`frame`]: the bttcp framing (8-byte little-endian length + payload).
//! - [`wire`]: the protobuf `Request` / `Response` of go-needle/groupcache.
//! - [`cache`]: LRU bounded by bytes, with per-entry expiry.
//! - [`ring`]: consistent hashing with the original's exact placement.
//! - [`flight`]: singleflight bookkeeping.
//! - [`node`]: groups, routing, peer connections and serving, tied together.

pub mod cache;
pub mod flight;
pub mod frame;
pub mod node;
pub mod ring;
pub mod wire;

#[cfg(feature = "testing")]
pub mod testing;

pub use bytes::Bytes;
