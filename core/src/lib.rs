//! groupcache-core: the sans-IO heart of groupcache-rs.
//!
//! Everything a groupcache node decides lives here as plain state machines
//! with no sockets, no tasks and no clock: time is always an input (`now`).
//! Runtime adapters (`groupcache-tokio`, `groupcache-async-std` for
//! async-std and smol, `groupcache-compio` for io_uring) move bytes and run
//! loaders; this crate tells them what to do.
//!
//! - [`frame`]: the bttcp framing (8-byte little-endian length + payload).
//! - [`wire`]: the protobuf `Request` / `Response` of go-needle/groupcache.
//! - [`cache`]: a cache bounded by bytes, keys and values packed in
//!   segments, with S3-FIFO's admission (a small queue for new keys, a
//!   ghost set, a main queue giving read keys more rounds) and per-entry
//!   expiry.
//! - [`ring`]: consistent hashing with the original's exact placement.
//! - [`flight`]: singleflight bookkeeping.
//! - [`node`]: groups, routing, peer connections and serving, tied together.
//!
//! # Driving a [`node::Node`]
//!
//! A driver feeds the node inputs and carries out its outputs:
//!
//! - **Time only moves forward.** Every input takes `now`; give the node the
//!   same clock each time, never one that goes back. Call
//!   [`Node::handle_timeout`](node::Node::handle_timeout) once
//!   [`Node::poll_timeout`](node::Node::poll_timeout)'s instant has passed.
//! - **Drain after every input.** Call
//!   [`Node::poll_output`](node::Node::poll_output) until it returns `None`
//!   after each input, and carry the outputs out in order:
//!   - `Load`: run the group's loader, then report exactly once with
//!     `handle_load`, also when it panicked or was dropped.
//!   - `CancelLoad`: drop that loader's future; a report after it is ignored.
//!   - `Connect`: open a connection, then `handle_connected` or
//!     `handle_closed`.
//!   - `Send`: write the bytes on that connection, after everything sent on
//!     it before. Report inbound bytes written with `handle_written`.
//!   - `Answer`: hand the answer to that inbound connection's
//!     [`Inbound`](node::Inbound) (see below).
//!   - `Close`: close that connection once its bytes are written; the node
//!     has already forgotten it.
//!   - `Done`: hand the result to whoever called `get` or `get_via`.
//!   - `Written`: hand the outcome to whoever called `write` or `write_via`.
//! - **Read only when asked.** After `handle_data` or `handle_written`, read
//!   more from a connection only while
//!   [`Node::wants_read`](node::Node::wants_read) says so: a client that does
//!   not read its answers is paused until it does, which bounds the bytes
//!   queued for it.
//! - **Shutdown** is [`Node::shutdown`](node::Node::shutdown), then, once
//!   [`Node::is_idle`](node::Node::is_idle) or a deadline,
//!   [`Node::abort`](node::Node::abort), which answers whatever is still
//!   open with an error.
//!
//! **Hits without the node.** A node's one input that needs no `&mut Node`
//! is a hit: each group's caches ([`Node::caches`](node::Node::caches), a
//! [`node::GroupCaches`]) are split into shards by key, each behind a lock
//! of its own, and [`GroupCaches::get`](node::GroupCaches::get) may be
//! called from any thread while the node itself sits behind the driver's
//! lock. A miss there goes on with
//! [`Node::get_missed`](node::Node::get_missed) under that lock, which
//! looks again, under the shard's lock, before it loads. The node takes a
//! shard's lock while the driver holds the node, never the other way
//! round; so a driver must not call into the node while it holds a shard,
//! which the API gives it no way to do.
//!
//! **Misses without the node.** A key's flight lives in its shard too, so
//! [`GroupCaches::claim`](node::GroupCaches::claim) can also start the
//! load of a key this node owns when nothing else needs the node (no
//! flight under way, a free load slot, no handoff window, no shutdown). The
//! driver then owes the claim exactly one of: its loader's result to
//! [`GroupCaches::land_claimed`](node::GroupCaches::land_claimed) (and, if
//! that says so, to [`Node::land_claimed`](node::Node::land_claimed) or a
//! [`Node::wake`](node::Node::wake)), or, for a loader that must wait,
//! [`Node::adopt`](node::Node::adopt), after which it is a load of the
//! node's like any other. A claim answered at once never takes the node's
//! lock.
//!
//! **Inbound connections in their own tasks.** A driver may keep an
//! inbound connection's state itself: [`Node::accept_inbound`](node::Node::accept_inbound)
//! returns an [`Inbound`](node::Inbound), a state machine of its own with
//! the same contract (inputs with `now`, outputs drained after each). It
//! reassembles the connection's requests, answers hits from the caches,
//! keeps answers in request order, bounds the bytes its client leaves
//! unread and runs the connection's deadlines, all without the node; it
//! hands every other request out, for
//! [`Node::serve`](node::Node::serve) under the node's lock, whose answer
//! comes back as an `Answer` output. So a hit over the network takes one
//! shard's lock and nothing node-wide. [`Node::accept`](node::Node::accept)
//! instead keeps the same state machine inside the node, fed with
//! `handle_data` and `handle_written`.
//!
//! **Membership** ([`Node::set_peers`](node::Node::set_peers)) takes `now`: a
//! change opens a handoff window in which a key's new owner asks its previous
//! owner before loading (requests and answers on the usual connections, so
//! nothing more is asked of the driver). Every node should be given the
//! same list in the same order, since order decides colliding ring points
//! (the driver's discovery sorts what DNS answers).
//!
//! **Writes** ([`Node::write`](node::Node::write)) need nothing more of the
//! driver: they travel as requests and answers on the same connections, and
//! settle loads under way with `CancelLoad` and `Load` outputs.
//!
//! Every resource has a bound: frames ([`node::Config::max_frame`]), values
//! ([`node::GroupConfig::max_value`]), queued answers per connection
//! ([`node::Config::max_unwritten`]), requests per connection
//! ([`node::Config::max_pipeline`]), connections per client address and for
//! peers, loads per group ([`node::GroupConfig::max_loads`]), and the time of
//! every wait: connect, request, idle, load.

pub mod cache;
pub mod flight;
pub mod frame;
pub mod node;
pub mod ring;
pub mod wire;

#[cfg(feature = "testing")]
pub mod testing;

pub use bytes::Bytes;
