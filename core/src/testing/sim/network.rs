//! The simulator's wires: events in flight in time order, which ends of
//! connections are linked, cut links, and the random pieces bytes arrive
//! in.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap, HashSet};
use std::time::Instant;

use bytes::Bytes;

use crate::node::{ConnId, LoadError, LoadId, Loaded};

/// One end of a connection: a node's index and its id for the connection.
pub(super) type End = (usize, ConnId);

/// What happens to a node at a scheduled instant.
#[derive(Debug)]
pub(super) enum Event {
    Connected(usize, ConnId),
    Data(usize, ConnId, Bytes),
    Closed(usize, ConnId),
    LoadDone(usize, LoadId, Result<Loaded, LoadError>),
}

/// Events in flight and the links they travel on.
#[derive(Debug)]
pub(super) struct Network {
    /// (instant, sequence) of each event: ties keep the order scheduled.
    events: BinaryHeap<Reverse<(Instant, u64)>>,
    payloads: HashMap<u64, Event>,
    seq: u64,
    /// Both directions of every standing link.
    links: HashMap<End, End>,
    /// Ordered pairs of nodes whose bytes do not get through.
    cut: HashSet<(usize, usize)>,
    /// Bytes sent on a link while it was cut or its receiver stopped,
    /// by receiving end, in order: TCP loses no byte of a stream that
    /// lives, so they arrive once the way is open again, before anything
    /// sent later on that link. Sorted, so release order follows no
    /// hash seed.
    held: BTreeMap<End, Vec<Bytes>>,
    rng: u64,
}

impl Default for Network {
    fn default() -> Self {
        Self {
            events: BinaryHeap::new(),
            payloads: HashMap::new(),
            seq: 0,
            links: HashMap::new(),
            cut: HashSet::new(),
            held: BTreeMap::new(),
            rng: 0x9E37_79B9_7F4A_7C15,
        }
    }
}

impl Network {
    /// Schedules `e` at `at`, after every event already scheduled then.
    pub fn schedule(&mut self, at: Instant, e: Event) {
        self.seq += 1;
        self.events.push(Reverse((at, self.seq)));
        self.payloads.insert(self.seq, e);
    }

    /// When the next event is due.
    pub fn next_at(&self) -> Option<Instant> {
        self.events.peek().map(|Reverse((t, _))| *t)
    }

    /// The next event, if it is due by `until`.
    pub fn pop_due(&mut self, until: Instant) -> Option<(Instant, Event)> {
        let &Reverse((at, seq)) = self.events.peek()?;
        if at > until {
            return None;
        }
        self.events.pop();
        Some((at, self.payloads.remove(&seq).expect("payload")))
    }

    /// Links two ends, both ways.
    pub fn link(&mut self, a: End, b: End) {
        self.links.insert(a, b);
        self.links.insert(b, a);
    }

    /// The other end of `end`'s link, if it stands.
    pub fn peer(&self, end: End) -> Option<End> {
        self.links.get(&end).copied()
    }

    /// Removes `end`'s link both ways; returns the other end.
    pub fn unlink(&mut self, end: End) -> Option<End> {
        let other = self.links.remove(&end)?;
        self.links.remove(&other);
        Some(other)
    }

    /// Forgets `end` alone: its side saw the close, the other may not yet.
    pub fn forget(&mut self, end: End) {
        self.held.remove(&end);
        self.links.remove(&end);
    }

    /// Cuts the link between two nodes both ways.
    pub fn cut(&mut self, a: usize, b: usize) {
        self.cut.insert((a, b));
        self.cut.insert((b, a));
    }

    /// Loses the bytes from `from` to `to` only.
    pub fn cut_one_way(&mut self, from: usize, to: usize) {
        self.cut.insert((from, to));
    }

    /// Mends every cut.
    pub fn mend(&mut self) {
        self.cut.clear();
    }

    /// Keeps `data` for `to` until the way is open again.
    pub fn hold(&mut self, to: End, data: Bytes) {
        self.held.entry(to).or_default().push(data);
    }

    /// Takes the bytes held for `to`, in the order sent.
    pub fn take_held(&mut self, to: End) -> Vec<Bytes> {
        self.held.remove(&to).unwrap_or_default()
    }

    /// The ends that have bytes held.
    pub fn held_ends(&self) -> Vec<End> {
        self.held.keys().copied().collect()
    }

    /// True if bytes from `from` to `to` are lost.
    pub fn is_cut(&self, from: usize, to: usize) -> bool {
        self.cut.contains(&(from, to))
    }

    /// Schedules `data` to arrive at `to` at `at`, in random pieces of 1
    /// to 64 bytes, to exercise the decoders.
    pub fn deliver(&mut self, to: End, at: Instant, mut data: Bytes) {
        while !data.is_empty() {
            let n = 1 + (self.rand() as usize % data.len().min(64));
            let piece = data.split_to(n.min(data.len()));
            self.schedule(at, Event::Data(to.0, to.1, piece));
        }
    }

    fn rand(&mut self) -> u64 {
        // xorshift64: deterministic, good enough to split frames.
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng
    }
}
