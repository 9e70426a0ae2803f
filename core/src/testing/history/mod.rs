//! Histories of what clients saw, and a checker of the consistency model
//! that `docs/consistency.md` writes down.
//!
//! A history is recorded by whoever drives a cluster: the simulator's
//! property test (simulated time), or the chaos harness (real processes,
//! time since its start). Each operation has the time a client invoked it
//! and the time it saw the outcome; the application's changes to the
//! origin are operations too, so "the old value" is exact. [`check`] reads
//! a history against a [`Model`] and returns every violation with the
//! operations that show it.
//!
//! ```
//! use std::time::Duration;
//! use groupcache_core::testing::history::{check, History, Kind, Model, Outcome, Rule};
//!
//! let s = Duration::from_secs;
//! let mut h = History::default();
//! h.origin(s(0), "k", "k@0");
//! let w = h.invoke(0, 0, s(1), Kind::origin("k", "k@1"));
//! h.complete(w, s(1), Outcome::Done);
//! let r = h.invoke(0, 0, s(2), Kind::Remove { key: "k".into() });
//! h.complete(r, s(3), Outcome::Written { not_reached: 0 });
//! // A get after the remove returned, through any node: the old value
//! // is a violation.
//! let g = h.invoke(1, 1, s(4), Kind::Get { key: "k".into() });
//! h.complete(g, s(4), Outcome::Value("k@0".into()));
//! let report = check(&h, &Model::default());
//! assert_eq!(report.violations.len(), 1);
//! assert_eq!(report.violations[0].rule, Rule::Stale);
//! ```

mod check;
mod report;
pub mod schedule;

pub use check::{check, Report, Rule, Stats, Violation};

use std::fmt;
use std::time::Duration;

use bytes::Bytes;

/// What an operation asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Kind {
    /// A get of `key`.
    Get {
        /// The key.
        key: String,
    },
    /// A set of `key` to `value`, through the cache.
    Set {
        /// The key.
        key: String,
        /// The value written; unique in the history.
        value: Bytes,
    },
    /// A remove of `key`.
    Remove {
        /// The key.
        key: String,
    },
    /// A purge of the whole group.
    Purge,
    /// The application changed `key` at the origin to `value` (unique in
    /// the history). Changes of one key never overlap.
    Origin {
        /// The key.
        key: String,
        /// The origin's new value.
        value: Bytes,
    },
}

impl Kind {
    /// An origin change of `key` to `value`.
    pub fn origin(key: &str, value: impl Into<Bytes>) -> Self {
        Kind::Origin {
            key: key.into(),
            value: value.into(),
        }
    }

    /// The key it is about; `None` for a purge.
    pub fn key(&self) -> Option<&str> {
        match self {
            Kind::Get { key }
            | Kind::Set { key, .. }
            | Kind::Remove { key }
            | Kind::Origin { key, .. } => Some(key),
            Kind::Purge => None,
        }
    }

    /// True for the writes through the cache: set, remove, purge.
    pub fn is_cache_write(&self) -> bool {
        matches!(self, Kind::Set { .. } | Kind::Remove { .. } | Kind::Purge)
    }
}

/// What the client saw.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Outcome {
    /// No outcome yet (never completed, if it stays so).
    Pending,
    /// A get's value.
    Value(Bytes),
    /// A get's "not found".
    NotFound,
    /// A write's report: how many nodes it did not reach.
    Written {
        /// Nodes named in `not_reached`.
        not_reached: usize,
    },
    /// An origin change done.
    Done,
    /// An error, or the client gave up waiting (a timeout).
    Failed(String),
}

/// One operation of a history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Op {
    /// The client process (or thread) that ran it.
    pub process: usize,
    /// The node it went through.
    pub node: usize,
    /// What it asked.
    pub kind: Kind,
    /// When the client invoked it.
    pub invoke: Duration,
    /// When the client saw its outcome.
    pub complete: Option<Duration>,
    /// The outcome.
    pub outcome: Outcome,
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let end = match self.complete {
            Some(c) => format!("{:.3}s", c.as_secs_f64()),
            None => "never".into(),
        };
        write!(
            f,
            "[{:.3}s..{end}] client {} via node {}: ",
            self.invoke.as_secs_f64(),
            self.process,
            self.node
        )?;
        let text = |b: &Bytes| String::from_utf8_lossy(b).into_owned();
        match &self.kind {
            Kind::Get { key } => write!(f, "get {key}")?,
            Kind::Set { key, value } => write!(f, "set {key} = {}", text(value))?,
            Kind::Remove { key } => write!(f, "remove {key}")?,
            Kind::Purge => write!(f, "purge")?,
            Kind::Origin { key, value } => write!(f, "origin {key} := {}", text(value))?,
        }
        match &self.outcome {
            Outcome::Pending => write!(f, " -> (no outcome)"),
            Outcome::Value(v) => write!(f, " -> {}", text(v)),
            Outcome::NotFound => write!(f, " -> not found"),
            Outcome::Written { not_reached } => write!(f, " -> ok, {not_reached} not reached"),
            Outcome::Done => write!(f, " -> done"),
            Outcome::Failed(e) => write!(f, " -> error: {e}"),
        }
    }
}

/// A span of time: a fault, or a membership change spreading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// Start.
    pub from: Duration,
    /// End.
    pub until: Duration,
}

impl Window {
    /// True if `[a, b]` overlaps this window.
    pub fn overlaps(&self, a: Duration, b: Duration) -> bool {
        a < self.until && b >= self.from
    }
}

/// A node process ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exit {
    /// Which node.
    pub node: usize,
    /// When it was seen.
    pub at: Duration,
    /// True if the nemesis killed it.
    pub killed: bool,
    /// Its exit status, as text.
    pub status: String,
}

/// A recorded run: operations, origin loads, faults and process facts.
#[derive(Debug, Clone, Default)]
pub struct History {
    /// Every operation, in the order invoked.
    pub ops: Vec<Op>,
    /// Every load the origin served: when, and which key.
    pub loads: Vec<(Duration, String)>,
    /// When faults were active (the nemesis's, with the time they take to
    /// be seen and to heal).
    pub faults: Vec<Window>,
    /// When peer lists changed and were spreading: writes that overlap
    /// one promise only what the TTL bounds.
    pub membership: Vec<Window>,
    /// When every fault was healed for the last time, if it was.
    pub healed_at: Option<Duration>,
    /// Node processes that ended.
    pub exits: Vec<Exit>,
    /// Resident memory samples: when, which node, bytes.
    pub rss: Vec<(Duration, usize, u64)>,
    /// Open descriptor samples: when, which node, how many.
    pub fds: Vec<(Duration, usize, u64)>,
}

/// Which operation of a [`History`].
pub type OpId = usize;

impl History {
    /// Records that the origin held `value` for `key` from `at` (the
    /// values it starts with).
    pub fn origin(&mut self, at: Duration, key: &str, value: impl Into<Bytes>) {
        let id = self.invoke(usize::MAX, usize::MAX, at, Kind::origin(key, value));
        self.complete(id, at, Outcome::Done);
    }

    /// Records an operation invoked at `at`.
    pub fn invoke(&mut self, process: usize, node: usize, at: Duration, kind: Kind) -> OpId {
        self.ops.push(Op {
            process,
            node,
            kind,
            invoke: at,
            complete: None,
            outcome: Outcome::Pending,
        });
        self.ops.len() - 1
    }

    /// Records the outcome of operation `id`, seen at `at`.
    pub fn complete(&mut self, id: OpId, at: Duration, outcome: Outcome) {
        let op = &mut self.ops[id];
        op.complete = Some(at);
        op.outcome = outcome;
    }

    /// When the history ends: its last recorded time.
    pub fn end(&self) -> Duration {
        let ops = self.ops.iter().flat_map(|o| [Some(o.invoke), o.complete]);
        ops.flatten()
            .chain(self.loads.iter().map(|l| l.0))
            .chain(self.faults.iter().map(|w| w.until))
            .max()
            .unwrap_or_default()
    }
}

/// The promises, with their bounds: what [`check`] holds a history to.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Model {
    /// The group's TTL: no value is served longer than this after the
    /// origin replaced it.
    pub ttl: Option<Duration>,
    /// The group's hot TTL: how long a copy that a write missed lives.
    pub hot_ttl: Duration,
    /// Every operation ends within this (its documented deadline).
    pub deadline: Duration,
    /// After the last heal, every get succeeds from this long on.
    pub recovery: Duration,
    /// Slack for the recorder's clock against the nodes' (both measure
    /// from their own start; events are stamped when seen, not done).
    pub slack: Duration,
    /// Resident memory of a node, at most.
    pub rss_bound: Option<u64>,
}

impl Default for Model {
    fn default() -> Self {
        Self {
            ttl: None,
            hot_ttl: Duration::from_secs(60),
            deadline: Duration::from_secs(10),
            recovery: Duration::from_secs(10),
            slack: Duration::ZERO,
            rss_bound: None,
        }
    }
}
