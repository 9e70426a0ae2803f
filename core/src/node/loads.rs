//! Local loads: each one's record, from the moment the node decides it
//! until it is reported or given up on, and each group's queue for its
//! load slots (at most the group's `max_loads` under way at once, the rest
//! queued oldest first; the count is shared with claims, `slots`).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use hashbrown::HashMap;

use super::slots::Slots;
use super::{LoadId, Output, Timer};

/// A local load, from the moment it is decided until reported.
pub(super) struct LoadRec {
    pub(super) group: Arc<str>,
    pub(super) key: Arc<str>,
    pub(super) deadline: Instant,
    /// Handed to the driver (it holds one of its group's slots).
    pub(super) started: bool,
}

/// One group's slots and the loads waiting for one.
struct Queue {
    slots: Arc<Slots>,
    /// Loads waiting for a free slot, oldest first.
    waiting: VecDeque<LoadId>,
}

/// The node's local loads and every group's queue.
#[derive(Default)]
pub(super) struct Loads {
    recs: HashMap<LoadId, LoadRec>,
    queues: HashMap<Arc<str>, Queue>,
}

impl Loads {
    /// Gives `group` its queue for `slots`, which claims share.
    pub(super) fn add_group(&mut self, group: Arc<str>, slots: Arc<Slots>) {
        let q = Queue {
            slots,
            waiting: VecDeque::new(),
        };
        self.queues.insert(group, q);
    }

    /// Records load `id` of `key` in `group`, due by `deadline`: started
    /// at once ([`Output::Load`] pushed on `out`) if the group has a free
    /// slot, else queued.
    pub(super) fn decide(
        &mut self,
        id: LoadId,
        group: Arc<str>,
        key: Arc<str>,
        deadline: Instant,
        out: &mut VecDeque<Output>,
    ) {
        let q = self.queues.get_mut(&group).expect("a group's load");
        let rec = LoadRec {
            group,
            key,
            deadline,
            started: false,
        };
        self.recs.insert(id, rec);
        q.waiting.push_back(id);
        Self::pump(q, &mut self.recs, out);
    }

    /// Records load `id`, which a claim started and now hands over: it
    /// holds its slot already.
    pub(super) fn adopt(&mut self, id: LoadId, group: Arc<str>, key: Arc<str>, deadline: Instant) {
        let rec = LoadRec {
            group,
            key,
            deadline,
            started: true,
        };
        self.recs.insert(id, rec);
    }

    /// A claim gave its slot back while loads of `group` waited: starts
    /// them.
    pub(super) fn slot_freed(&mut self, group: &str, out: &mut VecDeque<Output>) {
        if let Some(q) = self.queues.get_mut(group) {
            Self::pump(q, &mut self.recs, out);
        }
    }

    /// Starts the oldest waiting loads while slots are free. The count
    /// waiting is published before each try for a slot, so a claim that
    /// frees one after that try sees it and wakes the node.
    fn pump(q: &mut Queue, recs: &mut HashMap<LoadId, LoadRec>, out: &mut VecDeque<Output>) {
        loop {
            // Loads that timed out while queued are gone from the records.
            while q.waiting.front().is_some_and(|id| !recs.contains_key(id)) {
                q.waiting.pop_front();
            }
            q.slots.set_queued(q.waiting.len());
            let Some(&next) = q.waiting.front() else {
                return;
            };
            if !q.slots.take() {
                return;
            }
            q.waiting.pop_front();
            let n = recs.get_mut(&next).expect("checked above");
            n.started = true;
            out.push_back(Output::Load {
                id: next,
                group: n.group.clone(),
                key: n.key.clone(),
            });
        }
    }

    /// Forgets load `id` and returns its record. The slot it held goes to
    /// the oldest loads queued ([`Output::Load`] pushed on `out`).
    pub(super) fn finish(&mut self, id: LoadId, out: &mut VecDeque<Output>) -> Option<LoadRec> {
        let l = self.recs.remove(&id)?;
        if !l.started {
            return Some(l);
        }
        let Some(q) = self.queues.get_mut(&l.group) else {
            return Some(l);
        };
        q.slots.give();
        Self::pump(q, &mut self.recs, out);
        Some(l)
    }

    /// The record of load `id`, if it is still under way or queued.
    pub(super) fn get(&self, id: LoadId) -> Option<&LoadRec> {
        self.recs.get(&id)
    }

    /// Loads under way or queued.
    pub(super) fn len(&self) -> usize {
        self.recs.len()
    }

    /// True when no load is under way or queued.
    pub(super) fn is_empty(&self) -> bool {
        self.recs.is_empty()
    }

    /// Every load's deadline, for the timer table.
    pub(super) fn deadlines(&self) -> impl Iterator<Item = (Instant, Timer)> + '_ {
        (self.recs.iter()).map(|(&id, l)| (l.deadline, Timer::Load(id)))
    }

    /// Forgets every load and frees its slot (claims keep theirs until
    /// they land). Returns the loads that were handed to the driver, in the
    /// order they were decided: the driver must cancel them.
    pub(super) fn clear(&mut self) -> Vec<LoadId> {
        let mut started: Vec<(Arc<str>, LoadId)> = (self.recs.drain())
            .filter(|(_, l)| l.started)
            .map(|(id, l)| (l.group, id))
            .collect();
        started.sort_by_key(|&(_, id)| id);
        for (group, q) in &mut self.queues {
            q.waiting.clear();
            q.slots.set_queued(0);
            q.slots
                .give_many(started.iter().filter(|(g, _)| g == group).count());
        }
        started.into_iter().map(|(_, id)| id).collect()
    }

    /// Checks that each group's slots taken are its started loads and its
    /// claims, within its cap.
    pub(super) fn validate(&self) -> Result<(), String> {
        for (group, q) in &self.queues {
            let started = (self.recs.values())
                .filter(|l| l.started && l.group == *group)
                .count();
            q.slots
                .validate(started)
                .map_err(|e| format!("{group}: {e}"))?;
        }
        Ok(())
    }
}
