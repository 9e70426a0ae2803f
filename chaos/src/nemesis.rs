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
    /// A node cut off from every other node, both ways.
    Isolate(usize),
    /// The nodes split in two (those whose bit is set, the rest), both
    /// ways.
    Split(u32),
    /// What one node sends another is dropped, one way.
    OneWay {
        /// Sender.
        from: usize,
        /// Receiver.
        to: usize,
    },
    /// A node removed from the DNS answer, then added back.
    Unlisted(usize),
}

impl Fault {
    /// Its name in reports.
    pub fn name(self) -> &'static str {
        match self {
            Fault::Kill(_) => "kill",
            Fault::Pause(_) => "pause",
            Fault::OriginSlow => "origin-slow",
            Fault::OriginDown => "origin-down",
            Fault::Isolate(_) => "isolate",
            Fault::Split(_) => "split",
            Fault::OneWay { .. } => "one-way",
            Fault::Unlisted(_) => "dns-unlisted",
        }
    }

    /// The node it hits, if any.
    pub fn node(self) -> Option<usize> {
        match self {
            Fault::Kill(n) | Fault::Pause(n) | Fault::Isolate(n) | Fault::Unlisted(n) => Some(n),
            Fault::OneWay { to, .. } => Some(to),
            Fault::OriginSlow | Fault::OriginDown | Fault::Split(_) => None,
        }
    }
}

/// Kinds of process and origin fault, and the DNS one.
pub const PROCESS_KINDS: [usize; 5] = [0, 1, 2, 3, 7];
/// Kinds of fault in all, network faults included.
pub const ALL_KINDS: [usize; 8] = [0, 1, 2, 3, 4, 5, 6, 7];

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

/// The `n`-th fault of a run on `nodes` nodes: the first ones go through
/// every kind of `order` once; the rest are drawn from the same kinds.
pub fn plan(rng: &mut StdRng, n: usize, nodes: usize, order: &[usize]) -> Planned {
    let kind = match order.get(n) {
        Some(&k) => k,
        None => order[rng.gen_range(0..order.len())],
    };
    let node = rng.gen_range(0..nodes);
    let other = (node + rng.gen_range(1..nodes.max(2))) % nodes;
    let fault = match kind {
        0 => Fault::Kill(node),
        1 => Fault::Pause(node),
        2 => Fault::OriginSlow,
        3 => Fault::OriginDown,
        4 => Fault::Isolate(node),
        // A minority of half the nodes (2 of 5) against the rest.
        5 => Fault::Split({
            let mut all: Vec<usize> = (0..nodes).collect();
            for i in (1..all.len()).rev() {
                all.swap(i, rng.gen_range(0..=i));
            }
            all[..nodes / 2].iter().fold(0, |m, &i| m | 1 << i)
        }),
        6 => Fault::OneWay {
            from: node,
            to: other,
        },
        _ => Fault::Unlisted(node),
    };
    let hold = match fault {
        // Past the request timeout (3 s), so peers see it time out.
        Fault::Pause(_)
        | Fault::Isolate(_)
        | Fault::Split(_)
        | Fault::OneWay { .. }
        | Fault::Unlisted(_) => Duration::from_millis(rng.gen_range(3500..6000)),
        _ => Duration::from_millis(rng.gen_range(1000..4000)),
    };
    Planned {
        fault,
        after: Duration::from_millis(rng.gen_range(1000..3000)),
        hold,
    }
}

/// The kinds a run uses (network ones only with namespaces), in an order
/// the seed picks.
pub fn order(rng: &mut StdRng, network: bool) -> Vec<usize> {
    let mut o: Vec<usize> = if network {
        ALL_KINDS.to_vec()
    } else {
        PROCESS_KINDS.to_vec()
    };
    for i in (1..o.len()).rev() {
        o.swap(i, rng.gen_range(0..=i));
    }
    o
}
