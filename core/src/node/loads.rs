//! Local loads: each one's record, from the moment the node decides it
//! until it is reported or given up on, and each group's load slots (at
//! most the group's `max_loads` handed to the driver at once, the rest
//! queued oldest first).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use hashbrown::HashMap;

use super::{LoadId, Output, Timer};

/// A local load, from the moment it is decided until reported.
pub(super) struct LoadRec {
    pub(super) group: Arc<str>,
    pub(super) key: Arc<str>,
    pub(super) deadline: Instant,
    /// Handed to the driver (it holds one of its group's slots).
    pub(super) started: bool,
}

/// One group's load slots.
struct Slots {
    max: usize,
    /// Loads handed to the driver and not yet reported.
    running: usize,
    /// Loads waiting for a free slot, oldest first.
    queued: VecDeque<LoadId>,
}

/// The node's local loads and every group's slots.
#[derive(Default)]
pub(super) struct Loads {
    recs: HashMap<LoadId, LoadRec>,
    slots: HashMap<Arc<str>, Slots>,
}

impl Loads {
    /// Gives `group` its slots: `max` loads at once, at least one.
    pub(super) fn add_group(&mut self, group: Arc<str>, max: usize) {
        let slots = Slots {
            max: max.max(1),
            running: 0,
            queued: VecDeque::new(),
        };
        self.slots.insert(group, slots);
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
        let slots = self.slots.get_mut(&group).expect("a group's load");
        let started = slots.running < slots.max;
        if started {
            slots.running += 1;
            out.push_back(Output::Load {
                id,
                group: group.clone(),
                key: key.clone(),
            });
        } else {
            slots.queued.push_back(id);
        }
        let rec = LoadRec {
            group,
            key,
            deadline,
            started,
        };
        self.recs.insert(id, rec);
    }

    /// Forgets load `id` and returns its record. The slot it held goes to
    /// the oldest loads queued ([`Output::Load`] pushed on `out`).
    pub(super) fn finish(&mut self, id: LoadId, out: &mut VecDeque<Output>) -> Option<LoadRec> {
        let l = self.recs.remove(&id)?;
        if !l.started {
            return Some(l);
        }
        let Some(slots) = self.slots.get_mut(&l.group) else {
            return Some(l);
        };
        slots.running -= 1;
        while slots.running < slots.max {
            let Some(next) = slots.queued.pop_front() else {
                break;
            };
            // Loads that timed out while queued are gone from the records.
            let Some(n) = self.recs.get_mut(&next) else {
                continue;
            };
            n.started = true;
            slots.running += 1;
            out.push_back(Output::Load {
                id: next,
                group: n.group.clone(),
                key: n.key.clone(),
            });
        }
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

    /// Forgets every load and frees every slot. Returns the loads that were
    /// handed to the driver, in the order they were decided: the driver
    /// must cancel them.
    pub(super) fn clear(&mut self) -> Vec<LoadId> {
        let mut started: Vec<LoadId> = (self.recs.drain())
            .filter(|(_, l)| l.started)
            .map(|(id, _)| id)
            .collect();
        started.sort();
        for s in self.slots.values_mut() {
            s.running = 0;
            s.queued.clear();
        }
        started
    }

    /// Checks that each group's running count is its started loads, within
    /// its cap.
    pub(super) fn validate(&self) -> Result<(), String> {
        for (group, s) in &self.slots {
            let started = (self.recs.values())
                .filter(|l| l.started && l.group == *group)
                .count();
            if started != s.running || s.running > s.max {
                return Err(format!(
                    "{group}: {} loads running, {started} started, cap {}",
                    s.running, s.max
                ));
            }
        }
        Ok(())
    }
}
