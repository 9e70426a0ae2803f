//! Random schedules run on the simulator, recorded as a history: gets,
//! writes and origin changes on a few keys, with links cut (both ways or
//! one), nodes stopped, and a node dropped from the peer lists. The
//! property test and the `cluster` fuzz target run one, then [`check`] the
//! history it leaves, so a bug of the class "a client saw a value it must
//! not" is found in seconds and without processes.
//!
//! [`check`]: super::check

use std::time::Duration;

use bytes::Bytes;

use crate::node::{Config, GetId, GroupConfig, Node, WriteId, WriteOp};
use crate::testing::{Fault, Sim, SimLoader};

use super::{History, Kind, Model, OpId, Outcome, Window};

/// The group a schedule runs on.
pub const GROUP: &str = "g";
/// Members of the simulated cluster.
pub const NODES: usize = 3;
/// Keys a schedule touches.
pub const KEYS: usize = 4;

/// How long after a fault heals, or a membership change, it is still
/// counted active: peers come out of backoff and requests under way end
/// by then.
const SETTLE: Duration = Duration::from_secs(5);
/// Simulated time a schedule may take to finish its operations at the end.
const FINISH: Duration = Duration::from_secs(60);

/// One step of a schedule. Node and key numbers are taken modulo
/// [`NODES`] and [`KEYS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Step {
    /// A get through a node.
    Get {
        /// Through which node.
        node: u8,
        /// Which key.
        key: u8,
    },
    /// A set through a node, of a value unique in the run.
    Set {
        /// Through which node.
        node: u8,
        /// Which key.
        key: u8,
    },
    /// The application changes the key at the origin, then removes it
    /// through a node.
    UpdateThenRemove {
        /// Through which node.
        node: u8,
        /// Which key.
        key: u8,
    },
    /// The application changes the key at the origin, then purges the
    /// group through a node.
    UpdateThenPurge {
        /// Through which node.
        node: u8,
        /// Which key.
        key: u8,
    },
    /// Simulated time passes.
    Advance {
        /// Milliseconds.
        ms: u16,
    },
    /// A node stops answering (SIGSTOP): connects complete, nothing is
    /// read.
    Stop {
        /// Which node.
        node: u8,
    },
    /// The link between two nodes loses every byte, both ways.
    Cut {
        /// One end.
        a: u8,
        /// The other.
        b: u8,
    },
    /// Bytes from one node to another are lost, one way.
    CutOneWay {
        /// Sender.
        from: u8,
        /// Receiver.
        to: u8,
    },
    /// A node is dropped from the other nodes' peer lists (it keeps its
    /// own, as a node a DNS answer left out does).
    Leave {
        /// Which node.
        node: u8,
    },
    /// Every fault ends and every node is a member again.
    Heal,
}

/// An operation waiting for its outcome.
enum Waiting {
    Get(usize, GetId),
    Write(usize, WriteId),
}

/// A simulated cluster that records what its clients see.
struct Recorder {
    sim: Sim,
    /// The simulated clock's start: history times count from it.
    start: std::time::Instant,
    origin: std::rc::Rc<std::cell::RefCell<Vec<u32>>>,
    history: History,
    waiting: Vec<(OpId, Waiting)>,
    /// Fault and membership windows open now, from when.
    fault_since: Option<Duration>,
    left_since: Option<Duration>,
    sets: u32,
}

fn key(k: u8) -> String {
    format!("k{}", k as usize % KEYS)
}

fn origin_value(key: &str, version: u32) -> Bytes {
    Bytes::from(format!("{key}@{version}"))
}

/// The model the schedules are checked against: the group's settings
/// below, with deadlines from the node's defaults.
pub fn model() -> Model {
    Model {
        ttl: None,
        hot_ttl: group().hot_ttl,
        // A get may wait one request timeout on an owner that does not
        // answer (keepalives stretch it to the load timeout plus one),
        // then load here; a write, two request timeouts.
        deadline: Duration::from_secs(15),
        recovery: Duration::from_secs(10),
        slack: Duration::ZERO,
        rss_bound: None,
    }
}

fn group() -> GroupConfig {
    let mut g = GroupConfig::new(GROUP, 1 << 20);
    g.hot_ttl = Duration::from_secs(2);
    g.load_timeout = Duration::from_secs(5);
    g
}

impl Recorder {
    fn new() -> Self {
        let origin = std::rc::Rc::new(std::cell::RefCell::new(vec![0u32; KEYS]));
        let o = origin.clone();
        let loader = move |_| -> SimLoader {
            let o = o.clone();
            Box::new(move |_, key| {
                let n: usize = key[1..].parse().expect("k<n>");
                Ok(origin_value(key, o.borrow()[n]).into())
            })
        };
        let sim = Sim::new(
            NODES,
            |a: &str| Config::new(a),
            |node: &mut Node| node.add_group(group()).expect("group"),
            loader,
        );
        let mut history = History::default();
        for k in 0..KEYS as u8 {
            history.origin(Duration::ZERO, &key(k), origin_value(&key(k), 0));
        }
        Self {
            start: sim.now,
            sim,
            origin,
            history,
            waiting: Vec::new(),
            fault_since: None,
            left_since: None,
            sets: 0,
        }
    }

    fn now(&self) -> Duration {
        self.sim.now - self.start
    }

    fn invoke(&mut self, node: usize, kind: Kind) -> OpId {
        // A microsecond between operations: the checker orders them by
        // time, and one client's steps (change the origin, then remove)
        // must not tie.
        self.advance(Duration::from_micros(1));
        let now = self.now();
        self.history.invoke(self.history.ops.len(), node, now, kind)
    }

    fn get(&mut self, node: usize, k: &str) {
        let id = self.invoke(node, Kind::Get { key: k.into() });
        match self.sim.get(node, GROUP, k) {
            Ok(r) => self.history.complete(id, self.now(), get_outcome(r)),
            Err(get) => self.waiting.push((id, Waiting::Get(node, get))),
        }
    }

    fn write(&mut self, node: usize, kind: Kind, op: WriteOp) {
        let id = self.invoke(node, kind);
        match self.sim.write(node, GROUP, op) {
            Ok(r) => self.history.complete(id, self.now(), write_outcome(r)),
            Err(w) => self.waiting.push((id, Waiting::Write(node, w))),
        }
    }

    /// The application changes `k` at the origin.
    fn update(&mut self, k: &str) {
        let n: usize = k[1..].parse().expect("k<n>");
        let version = {
            let mut o = self.origin.borrow_mut();
            o[n] += 1;
            o[n]
        };
        let id = self.invoke(usize::MAX, Kind::origin(k, origin_value(k, version)));
        self.history.complete(id, self.now(), Outcome::Done);
    }

    /// Takes the outcomes that arrived.
    fn collect(&mut self) {
        let now = self.now();
        let sim = &mut self.sim;
        let history = &mut self.history;
        self.waiting.retain(|(id, w)| {
            let outcome = match *w {
                Waiting::Get(i, g) => sim.results.remove(&(i, g)).map(get_outcome),
                Waiting::Write(i, w) => sim.writes.remove(&(i, w)).map(write_outcome),
            };
            match outcome {
                Some(o) => {
                    history.complete(*id, now, o);
                    false
                }
                None => true,
            }
        });
    }

    /// Runs the simulation for `d`, taking each outcome when it arrives.
    fn advance(&mut self, d: Duration) {
        let until = self.sim.now + d;
        while self.sim.step(until) {
            self.collect();
        }
        self.sim.now = self.sim.now.max(until);
        self.collect();
    }

    fn fault(&mut self) {
        self.fault_since.get_or_insert(self.now());
    }

    fn step(&mut self, s: Step) {
        let n = |x: u8| x as usize % NODES;
        match s {
            Step::Get { node, key: k } => self.get(n(node), &key(k)),
            Step::Set { node, key: k } => {
                self.sets += 1;
                let k = key(k);
                let value = Bytes::from(format!("{k}#set{}", self.sets));
                let kind = Kind::Set {
                    key: k.clone(),
                    value: value.clone(),
                };
                self.write(n(node), kind, WriteOp::set(&k, value, None));
            }
            Step::UpdateThenRemove { node, key: k } => {
                let k = key(k);
                self.update(&k);
                let kind = Kind::Remove { key: k.clone() };
                self.write(n(node), kind, WriteOp::remove(&k));
            }
            Step::UpdateThenPurge { node, key: k } => {
                self.update(&key(k));
                self.write(n(node), Kind::Purge, WriteOp::Purge);
            }
            Step::Advance { ms } => self.advance(Duration::from_millis(u64::from(ms))),
            Step::Stop { node } => {
                self.fault();
                self.sim.faults.insert(n(node), Fault::Frozen);
            }
            Step::Cut { a, b } if n(a) != n(b) => {
                self.fault();
                self.sim.cut(n(a), n(b));
            }
            Step::CutOneWay { from, to } if n(from) != n(to) => {
                self.fault();
                self.sim.cut_one_way(n(from), n(to));
            }
            Step::Cut { .. } | Step::CutOneWay { .. } => {}
            Step::Leave { node } => {
                self.left_since.get_or_insert(self.now());
                let rest: Vec<usize> = (0..NODES).filter(|&i| i != n(node)).collect();
                self.sim.set_members(&rest);
            }
            Step::Heal => self.heal(),
        }
    }

    fn heal(&mut self) {
        let now = self.now();
        if let Some(from) = self.fault_since.take() {
            let until = now + SETTLE;
            self.history.faults.push(Window { from, until });
            self.sim.heal();
        }
        if let Some(from) = self.left_since.take() {
            let until = now + SETTLE;
            self.history.membership.push(Window { from, until });
            self.sim.set_members(&(0..NODES).collect::<Vec<_>>());
        }
        self.history.healed_at = Some(now);
    }

    /// Heals everything, lets the cluster settle, reads every key through
    /// every node, and waits for every operation to end.
    fn finish(mut self) -> History {
        self.heal();
        self.advance(model().recovery);
        for node in 0..NODES {
            for k in 0..KEYS as u8 {
                self.get(node, &key(k));
            }
        }
        let mut waited = Duration::ZERO;
        while !self.waiting.is_empty() && waited < FINISH {
            self.advance(Duration::from_secs(1));
            waited += Duration::from_secs(1);
        }
        for (at, (_, _, k)) in self.sim.load_at.iter().zip(&self.sim.load_calls) {
            self.history.loads.push((*at - self.start, k.clone()));
        }
        self.history
    }
}

fn get_outcome(r: Result<Bytes, crate::node::Error>) -> Outcome {
    match r {
        Ok(v) => Outcome::Value(v),
        Err(crate::node::Error::NotFound(_)) => Outcome::NotFound,
        Err(e) => Outcome::Failed(e.to_string()),
    }
}

fn write_outcome(r: Result<crate::node::WriteReport, crate::node::Error>) -> Outcome {
    match r {
        Ok(r) => Outcome::Written {
            not_reached: r.not_reached.len(),
        },
        Err(e) => Outcome::Failed(e.to_string()),
    }
}

/// Runs `steps` on a fresh simulated cluster of [`NODES`] members, then
/// heals every fault, reads every key through every node and waits for
/// every operation: the history of what its clients saw.
pub fn run(steps: &[Step]) -> History {
    let mut r = Recorder::new();
    for &s in steps {
        r.step(s);
    }
    r.finish()
}

impl Step {
    /// A step read from fuzz input.
    pub fn arbitrary(u: &mut arbitrary::Unstructured<'_>) -> arbitrary::Result<Self> {
        let (node, key): (u8, u8) = (u.arbitrary()?, u.arbitrary()?);
        Ok(match u.int_in_range(0..=15u8)? {
            0..=3 => Step::Get { node, key },
            4 => Step::Set { node, key },
            5 | 6 => Step::UpdateThenRemove { node, key },
            7 => Step::UpdateThenPurge { node, key },
            8..=10 => Step::Advance {
                ms: u.int_in_range(0..=3000)?,
            },
            11 => Step::Stop { node },
            12 => Step::Cut { a: node, b: key },
            13 => Step::CutOneWay {
                from: node,
                to: key,
            },
            14 => Step::Leave { node },
            _ => Step::Heal,
        })
    }
}
