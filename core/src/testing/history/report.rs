//! A checked history written out: violations with the operations that
//! show them, a table of figures, and JSON.

use std::fmt::Write;

use serde_json::{json, Value};

use super::check::{Report, Rule};
use super::{History, Kind, Outcome};

/// Violations printed per rule, at most; the JSON has them all.
const SHOWN_PER_RULE: usize = 10;

impl Report {
    /// Each violation (up to ten per rule) with the operations that show
    /// it, one per line.
    pub fn explain(&self, h: &History) -> String {
        let mut out = String::new();
        let mut shown: Vec<(Rule, usize)> = Vec::new();
        for v in &self.violations {
            let n = match shown.iter_mut().find(|(r, _)| *r == v.rule) {
                Some((_, n)) => n,
                None => {
                    shown.push((v.rule, 0));
                    &mut shown.last_mut().expect("pushed").1
                }
            };
            *n += 1;
            if *n > SHOWN_PER_RULE {
                continue;
            }
            let _ = writeln!(out, "VIOLATION {v}");
            for &i in &v.ops {
                let _ = writeln!(out, "    #{i} {}", h.ops[i]);
            }
        }
        for (rule, n) in shown.into_iter().filter(|(_, n)| *n > SHOWN_PER_RULE) {
            let more = n - SHOWN_PER_RULE;
            let _ = writeln!(out, "... and {more} more {} violations", rule.name());
        }
        out
    }

    /// The figures as a two-column table.
    pub fn table(&self) -> String {
        let s = &self.stats;
        let secs = |d: Option<std::time::Duration>| {
            d.map_or("-".to_string(), |d| format!("{:.3} s", d.as_secs_f64()))
        };
        let rows = [
            ("operations", s.ops.to_string()),
            ("gets with a value", s.gets_ok.to_string()),
            ("gets failed", s.gets_failed.to_string()),
            ("writes, every node reached", s.writes_complete.to_string()),
            ("writes, some not reached", s.writes_partial.to_string()),
            ("writes failed", s.writes_failed.to_string()),
            ("origin loads", s.loads.to_string()),
            ("most loads of a key", s.max_loads_per_key.to_string()),
            (
                "most loads of a key, one fault-free window",
                s.max_loads_fault_free.to_string(),
            ),
            ("gets failing after the last heal, until", secs(s.recovery)),
            ("largest RSS sampled", format!("{} KiB", s.max_rss / 1024)),
            ("most open descriptors sampled", s.max_fds.to_string()),
            ("violations", self.violations.len().to_string()),
        ];
        let mut out = String::new();
        for (k, v) in rows {
            let _ = writeln!(out, "| {k:<42} | {v:>12} |");
        }
        out
    }

    /// The report as JSON: figures, and every violation with its
    /// operations.
    pub fn to_json(&self, h: &History) -> Value {
        let s = &self.stats;
        let violations: Vec<Value> = (self.violations.iter())
            .map(|v| {
                json!({
                    "rule": v.rule.name(),
                    "detail": v.detail,
                    "ops": v.ops.iter().map(|&i| op_json(h, i)).collect::<Vec<_>>(),
                })
            })
            .collect();
        json!({
            "stats": {
                "ops": s.ops,
                "gets_ok": s.gets_ok,
                "gets_failed": s.gets_failed,
                "writes_complete": s.writes_complete,
                "writes_partial": s.writes_partial,
                "writes_failed": s.writes_failed,
                "loads": s.loads,
                "max_loads_per_key": s.max_loads_per_key,
                "max_loads_fault_free": s.max_loads_fault_free,
                "recovery_s": s.recovery.map(|d| d.as_secs_f64()),
                "max_rss_bytes": s.max_rss,
                "max_fds": s.max_fds,
            },
            "violations": violations,
        })
    }
}

/// One operation as JSON.
fn op_json(h: &History, i: usize) -> Value {
    let op = &h.ops[i];
    let text = |b: &bytes::Bytes| String::from_utf8_lossy(b).into_owned();
    let (kind, key, value) = match &op.kind {
        Kind::Get { key } => ("get", Some(key.clone()), None),
        Kind::Set { key, value } => ("set", Some(key.clone()), Some(text(value))),
        Kind::Remove { key } => ("remove", Some(key.clone()), None),
        Kind::Purge => ("purge", None, None),
        Kind::Origin { key, value } => ("origin", Some(key.clone()), Some(text(value))),
    };
    let outcome = match &op.outcome {
        Outcome::Pending => json!("pending"),
        Outcome::Value(v) => json!({ "value": text(v) }),
        Outcome::NotFound => json!("not found"),
        Outcome::Written { not_reached } => json!({ "not_reached": not_reached }),
        Outcome::Done => json!("done"),
        Outcome::Failed(e) => json!({ "error": e }),
    };
    json!({
        "id": i,
        "process": op.process,
        "node": op.node,
        "op": kind,
        "key": key,
        "value": value,
        "invoke_s": op.invoke.as_secs_f64(),
        "complete_s": op.complete.map(|d| d.as_secs_f64()),
        "outcome": outcome,
    })
}
