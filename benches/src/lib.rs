//! Shared helpers of the benches and the load tool: key sets and access
//! patterns.

use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Zipf};

/// How keys are drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dist {
    /// Every key equally likely.
    Uniform,
    /// Zipf with exponent 1 (a few hot keys).
    Zipf,
}

impl std::str::FromStr for Dist {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "uniform" => Ok(Dist::Uniform),
            "zipf" => Ok(Dist::Zipf),
            _ => Err(format!("unknown distribution {s:?}: uniform or zipf")),
        }
    }
}

/// `n` keys of equal length: `key-00000000`, `key-00000001`, ...
pub fn keys(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("key-{i:08}")).collect()
}

/// `len` indices into `0..n` drawn from `dist`, with a fixed seed so every
/// run and every compared implementation sees the same sequence.
pub fn pattern(n: usize, len: usize, dist: Dist, seed: u64) -> Vec<usize> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    match dist {
        Dist::Uniform => (0..len).map(|_| rng.gen_range(0..n)).collect(),
        Dist::Zipf => zipf(n, len, 1.0, seed),
    }
}

/// `len` indices into `0..n` drawn from Zipf with `exponent` (index 0 the
/// most popular), with a fixed seed.
pub fn zipf(n: usize, len: usize, exponent: f64, seed: u64) -> Vec<usize> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let z = Zipf::new(n as u64, exponent).expect("valid zipf");
    (0..len).map(|_| z.sample(&mut rng) as usize - 1).collect()
}

/// The criterion settings of every suite: short runs, sized for a 2-core
/// machine (`sample_size` samples, 0.5 s warm-up, 2 s measurement).
pub fn criterion(sample_size: usize) -> criterion::Criterion {
    criterion::Criterion::default()
        .sample_size(sample_size)
        .warm_up_time(std::time::Duration::from_millis(500))
        .measurement_time(std::time::Duration::from_secs(2))
}
