//! A group's load slots: at most `max` local loads under way at once,
//! counted where both the node and a get that claims a load without it
//! ([`GroupCaches::claim`](super::GroupCaches::claim)) can take one.
//!
//! The node keeps the queue of loads waiting for a slot; a claim never
//! jumps it (it takes a slot only while nothing is queued). The two sides
//! meet without a lock, Dekker's way: the node publishes how many wait
//! before it tries for a slot, and a claim frees its slot before it reads
//! that count. So whenever a slot frees while a load waits, either the node
//! sees the slot free or the claim sees the load waiting and wakes the
//! node ([`Landed::Done`](super::Landed::Done)'s `wake`).

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::SeqCst};

use crossbeam_utils::CachePadded;

/// One claim in [`Slots::taken`]: claims count in its high half.
const CLAIM: u64 = 1 << 32;
/// The slots taken, in [`Slots::taken`]'s low half.
const RUNNING: u64 = CLAIM - 1;

/// One group's load slots.
#[derive(Debug)]
pub(super) struct Slots {
    max: u64,
    /// Slots taken (the node's started loads and claims) in the low half,
    /// claims among them in the high half: one word, so that a claim takes
    /// and gives back its slot with one atomic operation each.
    taken: CachePadded<AtomicU64>,
    /// Loads the node has queued for a slot. On a line of its own: claims
    /// read it on every miss, and it changes only when loads queue.
    queued: CachePadded<AtomicUsize>,
}

impl Slots {
    /// `max` slots, at least one (and fewer than 2^32).
    pub(super) fn new(max: usize) -> Self {
        Self {
            max: (max as u64).clamp(1, RUNNING),
            taken: CachePadded::new(AtomicU64::new(0)),
            queued: CachePadded::new(AtomicUsize::new(0)),
        }
    }

    /// Adds `add` to the taken word if a slot is free.
    fn take_with(&self, add: u64) -> bool {
        (self.taken)
            .fetch_update(SeqCst, SeqCst, |t| {
                ((t & RUNNING) < self.max).then_some(t + add)
            })
            .is_ok()
    }

    /// Takes a slot if one is free.
    pub(super) fn take(&self) -> bool {
        self.take_with(1)
    }

    /// Takes a slot for a claim, only if no load is queued for one.
    pub(super) fn claim(&self) -> bool {
        self.queued.load(SeqCst) == 0 && self.take_with(1 + CLAIM)
    }

    /// A claim is over; its slot stays taken (the node adopted the load,
    /// or will give the slot back itself).
    pub(super) fn end_claim(&self) {
        self.taken.fetch_sub(CLAIM, SeqCst);
    }

    /// A claim is over and gives its slot back; true if loads wait for
    /// one, which the node must then start.
    pub(super) fn end_claim_and_give(&self) -> bool {
        self.taken.fetch_sub(1 + CLAIM, SeqCst);
        self.queued.load(SeqCst) > 0
    }

    /// Gives a slot back; true if loads wait for one, which the node must
    /// then start.
    pub(super) fn give(&self) -> bool {
        self.taken.fetch_sub(1, SeqCst);
        self.queued.load(SeqCst) > 0
    }

    /// Gives back `n` slots at once (the node forgets its loads).
    pub(super) fn give_many(&self, n: usize) {
        self.taken.fetch_sub(n as u64, SeqCst);
    }

    /// Publishes how many loads wait, before the node tries for a slot.
    pub(super) fn set_queued(&self, n: usize) {
        self.queued.store(n, SeqCst);
    }

    /// Checks that the slots taken are the node's `started` loads and the
    /// claims, within the cap.
    pub(super) fn validate(&self, started: usize) -> Result<(), String> {
        let t = self.taken.load(SeqCst);
        let (running, claims) = (t & RUNNING, t >> 32);
        if running != started as u64 + claims || running > self.max {
            return Err(format!(
                "{running} loads running, {started} started, {claims} claimed, cap {}",
                self.max
            ));
        }
        Ok(())
    }
}
