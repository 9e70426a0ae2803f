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

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};

/// One group's load slots.
#[derive(Debug)]
pub(super) struct Slots {
    max: usize,
    /// Loads holding a slot: the node's started ones and claims.
    running: AtomicUsize,
    /// Claims holding a slot, for [`Slots::validate`].
    claims: AtomicUsize,
    /// Loads the node has queued for a slot.
    queued: AtomicUsize,
}

impl Slots {
    /// `max` slots, at least one.
    pub(super) fn new(max: usize) -> Self {
        Self {
            max: max.max(1),
            running: AtomicUsize::new(0),
            claims: AtomicUsize::new(0),
            queued: AtomicUsize::new(0),
        }
    }

    /// Takes a slot if one is free.
    pub(super) fn take(&self) -> bool {
        (self.running)
            .fetch_update(SeqCst, SeqCst, |r| (r < self.max).then_some(r + 1))
            .is_ok()
    }

    /// Takes a slot for a claim, only if no load is queued for one.
    pub(super) fn claim(&self) -> bool {
        if self.queued.load(SeqCst) > 0 || !self.take() {
            return false;
        }
        self.claims.fetch_add(1, SeqCst);
        true
    }

    /// A claim is over; its slot stays taken (the node adopted the load,
    /// or will give the slot back itself).
    pub(super) fn end_claim(&self) {
        self.claims.fetch_sub(1, SeqCst);
    }

    /// Gives a slot back; true if loads wait for one, which the node must
    /// then start.
    pub(super) fn give(&self) -> bool {
        self.running.fetch_sub(1, SeqCst);
        self.queued.load(SeqCst) > 0
    }

    /// Gives back `n` slots at once (the node forgets its loads).
    pub(super) fn give_many(&self, n: usize) {
        self.running.fetch_sub(n, SeqCst);
    }

    /// Publishes how many loads wait, before the node tries for a slot.
    pub(super) fn set_queued(&self, n: usize) {
        self.queued.store(n, SeqCst);
    }

    /// Checks that the slots taken are the node's `started` loads and the
    /// claims, within the cap.
    pub(super) fn validate(&self, started: usize) -> Result<(), String> {
        let (running, claims) = (self.running.load(SeqCst), self.claims.load(SeqCst));
        if running != started + claims || running > self.max {
            return Err(format!(
                "{running} loads running, {started} started, {claims} claimed, cap {}",
                self.max
            ));
        }
        Ok(())
    }
}
