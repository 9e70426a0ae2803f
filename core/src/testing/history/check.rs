//! The checker: each rule of `docs/consistency.md` read against a history.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use bytes::Bytes;

use super::{History, Kind, Model, OpId, Outcome, Window};

/// Which promise a violation breaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Rule {
    /// A get returned a value nobody wrote, or wrote only after the get
    /// ended.
    UnknownValue,
    /// A get returned "not found" for a key the origin holds.
    Missing,
    /// A get returned a value that a write which returned before it was
    /// invoked had replaced (or one older than the TTL allows).
    Stale,
    /// An operation did not end within its deadline, or never ended.
    TooSlow,
    /// A get failed while no fault was active.
    Unavailable,
    /// A get failed after every fault had healed and the recovery bound
    /// had passed.
    NotRecovered,
    /// The origin loaded a key more often than the fault-free promise
    /// allows.
    ExtraLoads,
    /// A node process ended without the nemesis killing it.
    UnexpectedExit,
    /// A node's resident memory passed its bound.
    Memory,
}

impl Rule {
    /// Its name in reports.
    pub fn name(self) -> &'static str {
        match self {
            Rule::UnknownValue => "unknown-value",
            Rule::Missing => "missing",
            Rule::Stale => "stale",
            Rule::TooSlow => "too-slow",
            Rule::Unavailable => "unavailable",
            Rule::NotRecovered => "not-recovered",
            Rule::ExtraLoads => "extra-loads",
            Rule::UnexpectedExit => "unexpected-exit",
            Rule::Memory => "memory",
        }
    }
}

/// One broken promise, with the operations that show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// The promise.
    pub rule: Rule,
    /// What happened, in words.
    pub detail: String,
    /// The operations that show it, in the history's order.
    pub ops: Vec<OpId>,
}

/// Figures of a checked history.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Operations, origin changes included.
    pub ops: usize,
    /// Gets that returned a value.
    pub gets_ok: usize,
    /// Gets that failed.
    pub gets_failed: usize,
    /// Writes (set, remove, purge) that returned with every node reached.
    pub writes_complete: usize,
    /// Writes that returned naming nodes not reached.
    pub writes_partial: usize,
    /// Writes that failed.
    pub writes_failed: usize,
    /// Origin loads in all.
    pub loads: usize,
    /// The most loads of one key in one fault-free window.
    pub max_loads_fault_free: usize,
    /// The most loads of one key over the whole run.
    pub max_loads_per_key: usize,
    /// How long after the last heal gets still failed: the end of the
    /// last failed get, counted from the heal (zero if none failed).
    pub recovery: Option<Duration>,
    /// The largest resident memory sampled, in bytes.
    pub max_rss: u64,
    /// The most open descriptors sampled in one node.
    pub max_fds: u64,
}

/// What [`check`] found.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Every violation, ordered by rule, then by time.
    pub violations: Vec<Violation>,
    /// Figures.
    pub stats: Stats,
}

/// Where a value came from: the op that wrote it, and from when a write
/// invoked later than that may no longer leave it (`None`: never).
#[derive(Clone, Copy)]
struct Source {
    op: OpId,
    replaced_at: Option<Duration>,
    /// The latest it may be served, from its TTL, if bounded.
    expires_by: Option<Duration>,
}

/// A write through the cache that makes a promise: values replaced
/// before `cut` are never returned by a get invoked after `from`.
#[derive(Clone, Copy)]
struct Promise {
    from: Duration,
    cut: Duration,
    op: OpId,
}

/// Reads `h` against `m`: every violation, and the run's figures.
pub fn check(h: &History, m: &Model) -> Report {
    let mut v = Vec::new();
    let sources = sources(h, m);
    check_values(h, m, &sources, &mut v);
    check_liveness(h, m, &mut v);
    let mut stats = Stats::default();
    check_loads(h, m, &mut v, &mut stats);
    check_processes(h, m, &mut v, &mut stats);
    count(h, &mut stats);
    v.sort_by_key(|x| (x.rule, x.ops.first().copied()));
    Report {
        violations: v,
        stats,
    }
}

/// Every value each key can hold, and where it came from.
fn sources<'h>(h: &'h History, m: &Model) -> BTreeMap<(&'h str, &'h Bytes), Source> {
    let mut out = BTreeMap::new();
    // Origin values of a key, in the order their changes ended.
    let mut origin: BTreeMap<&str, Vec<OpId>> = BTreeMap::new();
    for (i, op) in h.ops.iter().enumerate() {
        match (&op.kind, op.complete) {
            (Kind::Origin { key, .. }, Some(_)) => origin.entry(key).or_default().push(i),
            (Kind::Set { key, value }, done) => {
                // A set that failed may still have been applied, late:
                // nothing can be said to replace it.
                let written = matches!(op.outcome, Outcome::Written { .. });
                // Only a write invoked after the set returned replaces its
                // value: never the set itself, even one that returned at
                // once.
                let replaced_at = done
                    .filter(|_| written)
                    .map(|t| t + Duration::from_nanos(1));
                let expires_by = replaced_at.and(m.ttl).map(|t| op.complete.unwrap() + t);
                let s = Source {
                    op: i,
                    replaced_at,
                    expires_by,
                };
                out.insert((key.as_str(), value), s);
            }
            _ => {}
        }
    }
    for (key, mut ops) in origin {
        ops.sort_by_key(|&i| h.ops[i].complete);
        for (n, &i) in ops.iter().enumerate() {
            let Kind::Origin { value, .. } = &h.ops[i].kind else {
                unreachable!("origin ops only")
            };
            let replaced_at = ops.get(n + 1).and_then(|&j| h.ops[j].complete);
            let expires_by = replaced_at.zip(m.ttl).map(|(r, t)| r + t);
            let s = Source {
                op: i,
                replaced_at,
                expires_by,
            };
            out.insert((key, value), s);
        }
    }
    out
}

/// The promises that hold for `key`, sorted by when they start, with the
/// latest cut so far beside each.
fn promises(h: &History, m: &Model, key: &str) -> Vec<Promise> {
    let mut ps: Vec<Promise> = Vec::new();
    for (i, op) in h.ops.iter().enumerate() {
        let touches = op.kind.is_cache_write() && op.kind.key().is_none_or(|k| k == key);
        let (Outcome::Written { not_reached }, Some(done)) = (&op.outcome, op.complete) else {
            continue;
        };
        if !touches || h.membership.iter().any(|w| w.overlaps(op.invoke, done)) {
            continue;
        }
        // A purge goes to every node at once: one it missed may own keys,
        // whose copies no hot TTL bounds. A set or remove that returned
        // has reached the owner; only copies elsewhere were missed.
        if *not_reached > 0 && op.kind == Kind::Purge {
            continue;
        }
        let missed = if *not_reached > 0 {
            m.hot_ttl
        } else {
            Duration::ZERO
        };
        ps.push(Promise {
            from: done + missed + m.slack,
            cut: op.invoke,
            op: i,
        });
    }
    ps.sort_by_key(|p| p.from);
    // Each entry keeps the largest cut of those before it.
    for n in 1..ps.len() {
        if ps[n - 1].cut > ps[n].cut {
            (ps[n].cut, ps[n].op) = (ps[n - 1].cut, ps[n - 1].op);
        }
    }
    ps
}

fn check_values(
    h: &History,
    m: &Model,
    sources: &BTreeMap<(&str, &Bytes), Source>,
    v: &mut Vec<Violation>,
) {
    let mut by_key: BTreeMap<&str, Vec<Promise>> = BTreeMap::new();
    for (i, op) in h.ops.iter().enumerate() {
        let Kind::Get { key } = &op.kind else {
            continue;
        };
        let done = op.complete.unwrap_or(Duration::MAX);
        let value = match &op.outcome {
            Outcome::Value(value) => value,
            Outcome::NotFound => {
                let held = sources.keys().any(|(k, _)| k == key);
                if held {
                    v.push(Violation {
                        rule: Rule::Missing,
                        detail: format!("get of {key} found nothing; the origin holds it"),
                        ops: vec![i],
                    });
                }
                continue;
            }
            _ => continue,
        };
        let Some(src) = sources.get(&(key.as_str(), value)) else {
            v.push(Violation {
                rule: Rule::UnknownValue,
                detail: format!("get of {key} returned a value nobody wrote"),
                ops: vec![i],
            });
            continue;
        };
        let writer = &h.ops[src.op];
        if writer.invoke > done {
            v.push(Violation {
                rule: Rule::UnknownValue,
                detail: format!("get of {key} returned a value written only after it ended"),
                ops: vec![src.op, i],
            });
            continue;
        }
        if let Some(by) = src.expires_by.filter(|&by| op.invoke > by + m.slack) {
            v.push(Violation {
                rule: Rule::Stale,
                detail: format!(
                    "get of {key} returned a value replaced long enough ago that its TTL \
                     ended by {:.3}s",
                    by.as_secs_f64()
                ),
                ops: vec![src.op, i],
            });
            continue;
        }
        let Some(replaced) = src.replaced_at else {
            continue;
        };
        let ps = by_key.entry(key).or_insert_with(|| promises(h, m, key));
        // The last promise in force when the get was invoked.
        let n = ps.partition_point(|p| p.from < op.invoke);
        let Some(p) = n.checked_sub(1).map(|n| ps[n]) else {
            continue;
        };
        if replaced <= p.cut {
            let w = &h.ops[p.op];
            v.push(Violation {
                rule: Rule::Stale,
                detail: format!(
                    "get of {key} returned a value that was replaced before a write invoked \
                     at {:.3}s, which returned before the get began",
                    w.invoke.as_secs_f64()
                ),
                ops: sorted(vec![src.op, p.op, i]),
            });
        }
    }
}

fn check_liveness(h: &History, m: &Model, v: &mut Vec<Violation>) {
    let quiet = |a: Duration, b: Duration| {
        !(h.faults.iter().chain(&h.membership)).any(|w| w.overlaps(a, b + m.slack))
    };
    for (i, op) in h.ops.iter().enumerate() {
        if matches!(op.kind, Kind::Origin { .. }) {
            continue;
        }
        let Some(done) = op.complete else {
            v.push(Violation {
                rule: Rule::TooSlow,
                detail: "never ended".into(),
                ops: vec![i],
            });
            continue;
        };
        if done.saturating_sub(op.invoke) > m.deadline + m.slack {
            v.push(Violation {
                rule: Rule::TooSlow,
                detail: format!(
                    "took {:.3}s, over the deadline of {:.3}s",
                    (done - op.invoke).as_secs_f64(),
                    m.deadline.as_secs_f64()
                ),
                ops: vec![i],
            });
        }
        let failed_get =
            matches!(op.kind, Kind::Get { .. }) && matches!(op.outcome, Outcome::Failed(_));
        if !failed_get {
            continue;
        }
        if let Some(healed) = h.healed_at.filter(|&t| op.invoke >= t + m.recovery) {
            v.push(Violation {
                rule: Rule::NotRecovered,
                detail: format!(
                    "failed {:.3}s after the last heal, past the recovery bound of {:.3}s",
                    (op.invoke - healed).as_secs_f64(),
                    m.recovery.as_secs_f64()
                ),
                ops: vec![i],
            });
        } else if quiet(op.invoke, done) {
            v.push(Violation {
                rule: Rule::Unavailable,
                detail: "failed while no fault was active".into(),
                ops: vec![i],
            });
        }
    }
}

/// The fault-free windows of the run: the complement of the faults and
/// membership changes.
fn quiet_windows(h: &History) -> Vec<Window> {
    let mut busy: Vec<Window> = h.faults.iter().chain(&h.membership).copied().collect();
    busy.sort_by_key(|w| w.from);
    let mut out = Vec::new();
    let mut at = Duration::ZERO;
    for w in busy {
        if w.from > at {
            out.push(Window {
                from: at,
                until: w.from,
            });
        }
        at = at.max(w.until);
    }
    // The last window holds what happens at the very end too.
    let end = h.end() + Duration::from_nanos(1);
    if end > at {
        out.push(Window {
            from: at,
            until: end,
        });
    }
    out
}

fn check_loads(h: &History, m: &Model, v: &mut Vec<Violation>, stats: &mut Stats) {
    let mut per_key: BTreeMap<&str, Vec<Duration>> = BTreeMap::new();
    for (at, key) in &h.loads {
        per_key.entry(key).or_default().push(*at);
    }
    stats.loads = h.loads.len();
    stats.max_loads_per_key = per_key.values().map(Vec::len).max().unwrap_or(0);
    for w in quiet_windows(h) {
        for (key, loads) in &per_key {
            let n = loads
                .iter()
                .filter(|&&t| t >= w.from && t < w.until)
                .count();
            stats.max_loads_fault_free = stats.max_loads_fault_free.max(n);
            // Each write can restart a load under way and make one more.
            let writes = (h.ops.iter())
                .filter(|op| op.kind.is_cache_write() && op.kind.key().is_none_or(|k| k == *key))
                .filter(|op| op.invoke < w.until && op.complete.unwrap_or(Duration::MAX) >= w.from)
                .count();
            let len = w.until - w.from;
            let expiries = m
                .ttl
                .map_or(0, |t| (len.as_nanos() / t.as_nanos().max(1)) as usize + 1);
            let allowed = 1 + 2 * writes + expiries;
            if n > allowed {
                v.push(Violation {
                    rule: Rule::ExtraLoads,
                    detail: format!(
                        "{key} loaded {n} times in the fault-free window {:.3}s..{:.3}s, \
                         at most {allowed} allowed ({writes} writes)",
                        w.from.as_secs_f64(),
                        w.until.as_secs_f64()
                    ),
                    ops: Vec::new(),
                });
            }
        }
    }
}

fn check_processes(h: &History, m: &Model, v: &mut Vec<Violation>, stats: &mut Stats) {
    for e in h.exits.iter().filter(|e| !e.killed) {
        v.push(Violation {
            rule: Rule::UnexpectedExit,
            detail: format!(
                "node {} ended at {:.3}s ({}) without the nemesis",
                e.node,
                e.at.as_secs_f64(),
                e.status
            ),
            ops: Vec::new(),
        });
    }
    stats.max_fds = h.fds.iter().map(|f| f.2).max().unwrap_or(0);
    for &(at, node, bytes) in &h.rss {
        stats.max_rss = stats.max_rss.max(bytes);
        if let Some(bound) = m.rss_bound.filter(|&b| bytes > b) {
            v.push(Violation {
                rule: Rule::Memory,
                detail: format!(
                    "node {node} resident {bytes} bytes at {:.3}s, over {bound}",
                    at.as_secs_f64()
                ),
                ops: Vec::new(),
            });
        }
    }
}

fn count(h: &History, s: &mut Stats) {
    s.ops = h.ops.len();
    s.recovery = h.healed_at.map(|_| Duration::ZERO);
    for op in &h.ops {
        match (&op.kind, &op.outcome) {
            (Kind::Get { .. }, Outcome::Value(_)) => s.gets_ok += 1,
            (Kind::Get { .. }, Outcome::Failed(_)) => {
                s.gets_failed += 1;
                if let Some(healed) = h.healed_at {
                    let end = op.complete.unwrap_or(op.invoke).saturating_sub(healed);
                    s.recovery = s.recovery.max(Some(end));
                }
            }
            (k, Outcome::Written { not_reached: 0 }) if k.is_cache_write() => {
                s.writes_complete += 1
            }
            (k, Outcome::Written { .. }) if k.is_cache_write() => s.writes_partial += 1,
            (k, _) if k.is_cache_write() => s.writes_failed += 1,
            _ => {}
        }
    }
}

fn sorted(mut ops: Vec<OpId>) -> Vec<OpId> {
    ops.sort_unstable();
    ops.dedup();
    ops
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.rule.name(), self.detail)
    }
}

impl Report {
    /// True when no promise was broken.
    pub fn is_clean(&self) -> bool {
        self.violations.is_empty()
    }

    /// The violations of `rule`.
    pub fn of(&self, rule: Rule) -> impl Iterator<Item = &Violation> {
        self.violations.iter().filter(move |v| v.rule == rule)
    }
}
