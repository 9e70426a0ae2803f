//! Test helpers shared by the core's tests, the adapters' tests and the
//! fuzzers (feature `testing`): the golden vectors made by the Go original,
//! a deterministic cluster simulator, a cache model, and the fuzz targets'
//! bodies (so stable `cargo test` replays the fuzz corpus).

pub mod fuzz;
pub mod model;
mod sim;
pub mod vectors;

pub use sim::{Fault, Sim, SimLoader, SimNode};

use bytes::BytesMut;

use crate::wire::{encode_frame, Request};

/// A whole request frame for `group`/`key` as a Go client sends it: no
/// extension fields.
pub fn request_frame(group: &str, key: &str) -> BytesMut {
    let mut b = BytesMut::new();
    let req = Request {
        group: group.into(),
        key: key.into(),
        ..Default::default()
    };
    encode_frame(&req, &mut b);
    b
}
