//! The nemesis: faults on a seeded schedule, one at a time, each healed
//! before the next, every kind at least once in a run long enough for it.

use std::time::Duration;

use rand::rngs::StdRng;
use rand::Rng;

/// A fault the nemesis can cause.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fault {
    /// SIGKILL a node, then start it again (cold).
    Kill(usize),
    /// SIGSTOP a node past the request timeout, then SIGCONT.
    Pause(usize),
    /// The origin answers late.
    OriginSlow,
    /// The origin answers 503.
    OriginDown,
}

impl Fault {
    /// Its name in reports.
    pub fn name(self) -> &'static str {
        match self {
            Fault::Kill(_) => "kill",
            Fault::Pause(_) => "pause",
            Fault::OriginSlow => "origin-slow",
            Fault::OriginDown => "origin-down",
        }
    }

    /// The node it hits, if any.
    pub fn node(self) -> Option<usize> {
        match self {
            Fault::Kill(n) | Fault::Pause(n) => Some(n),
            Fault::OriginSlow | Fault::OriginDown => None,
        }
    }
}

/// How many kinds of fault there are.
const KINDS: usize = 4;

/// One planned fault: what, after how long a quiet spell, held how long.
#[derive(Debug, Clone, Copy)]
pub struct Planned {
    /// The fault.
    pub fault: Fault,
    /// Quiet time before it.
    pub after: Duration,
    /// How long it lasts.
    pub hold: Duration,
}

/// The `n`-th fault of a run on `nodes` nodes: the first four go
/// through every kind once, in an order the seed picks; the rest are
/// drawn at random.
pub fn plan(rng: &mut StdRng, n: usize, nodes: usize, order: &[usize; KINDS]) -> Planned {
    let kind = if n < KINDS {
        order[n]
    } else {
        rng.gen_range(0..KINDS)
    };
    let node = rng.gen_range(0..nodes);
    let fault = match kind {
        0 => Fault::Kill(node),
        1 => Fault::Pause(node),
        2 => Fault::OriginSlow,
        _ => Fault::OriginDown,
    };
    let hold = match fault {
        // Past the request timeout (3 s), so peers see it time out.
        Fault::Pause(_) => Duration::from_millis(rng.gen_range(3500..6000)),
        _ => Duration::from_millis(rng.gen_range(1000..4000)),
    };
    Planned {
        fault,
        after: Duration::from_millis(rng.gen_range(1000..3000)),
        hold,
    }
}

/// A seeded order of the kinds.
pub fn order(rng: &mut StdRng) -> [usize; KINDS] {
    let mut o = [0, 1, 2, 3];
    for i in (1..KINDS).rev() {
        o.swap(i, rng.gen_range(0..=i));
    }
    o
}
