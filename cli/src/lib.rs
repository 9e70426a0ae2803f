//! The `groupcache` command's library: configuration, origins and the HTTP
//! front, so they can be tested and reused.

pub mod check;
pub mod config;
pub mod http;
pub mod origin;
