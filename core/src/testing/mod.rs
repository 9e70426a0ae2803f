//! Test helpers shared by the core's tests, the adapters' tests and the
//! fuzzers (feature `testing`): the golden vectors made by the Go original,
//! a deterministic cluster simulator, a cache model, and the fuzz targets'
//! bodies (so stable `cargo test` replays the fuzz corpus).

pub mod fuzz;
pub mod model;
mod sim;
pub mod vectors;

pub use sim::{Fault, Sim, SimLoader, SimNode};
