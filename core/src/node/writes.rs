//! The writes this node carries out across the cluster: for each, whom it
//! waits on and what it has heard. What is sent when is the node's
//! business (`write.rs`); this only keeps the count.

use std::sync::Arc;

use hashbrown::HashMap;

use super::{ConnId, Error, WriteId, WriteOp, WriteReport};

/// Who waits for a write this node carries out.
#[derive(Debug, Clone, Copy)]
pub(super) enum WriteWaiter {
    /// A caller of [`Node::write`](super::Node::write): answered with
    /// [`Output::Written`](super::Output::Written).
    Local,
    /// A client that sent the write to this node.
    Serve { conn: ConnId, seq: u64, ext: bool },
}

/// A write this node carries out, until every node it tells has answered.
#[derive(Debug)]
struct WriteRec {
    group: Arc<str>,
    op: WriteOp,
    waiter: WriteWaiter,
    /// The key's owner when it is another node.
    owner: Option<Arc<str>>,
    /// The owner has not answered yet; the others are told after it.
    awaiting_owner: bool,
    /// Why the owner did not apply the write, if it did not.
    owner_error: Option<Arc<str>>,
    /// Answers still awaited from the other nodes.
    pending: usize,
    /// Rounds of telling every node still to come after this one: a purge
    /// tells them twice (`write.rs`).
    rounds_left: u8,
    not_reached: Vec<Arc<str>>,
}

/// What an answer to a write means for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Answered {
    /// The owner answered (applied it or not): the others are told now.
    Owner,
    /// The last awaited node answered: the write is done.
    All,
    /// Others are still awaited, or the write is not (or no longer) known.
    Waiting,
}

/// A write every node has answered.
#[derive(Debug)]
pub(super) struct Finished {
    pub(super) group: Arc<str>,
    pub(super) waiter: WriteWaiter,
    /// Nodes that could not be told, each counted once.
    pub(super) not_reached: usize,
    pub(super) result: Result<WriteReport, Error>,
}

/// The open writes.
#[derive(Debug, Default)]
pub(super) struct Writes {
    recs: HashMap<WriteId, WriteRec>,
}

impl Writes {
    /// Opens write `id` of `op` in `group` for `waiter`. With an `owner`
    /// (another node), it waits on the owner first.
    pub(super) fn open(
        &mut self,
        id: WriteId,
        group: Arc<str>,
        op: WriteOp,
        waiter: WriteWaiter,
        owner: Option<Arc<str>>,
    ) {
        let rounds_left = u8::from(matches!(op, WriteOp::Purge));
        let rec = WriteRec {
            group,
            op,
            waiter,
            awaiting_owner: owner.is_some(),
            owner,
            owner_error: None,
            pending: 0,
            rounds_left,
            not_reached: Vec::new(),
        };
        self.recs.insert(id, rec);
    }

    /// Whether write `id` is still open.
    pub(super) fn contains(&self, id: WriteId) -> bool {
        self.recs.contains_key(&id)
    }

    /// True when no write is open.
    pub(super) fn is_empty(&self) -> bool {
        self.recs.is_empty()
    }

    /// The owner is done with write `id` (or there is none): stops waiting
    /// on it, and returns the write's group, op and owner, for telling the
    /// others.
    pub(super) fn owner_done(
        &mut self,
        id: WriteId,
    ) -> Option<(Arc<str>, WriteOp, Option<Arc<str>>)> {
        let w = self.recs.get_mut(&id)?;
        w.awaiting_owner = false;
        Some((w.group.clone(), w.op.clone(), w.owner.clone()))
    }

    /// Write `id` now waits on `n` other nodes' answers.
    pub(super) fn await_answers(&mut self, id: WriteId, n: usize) {
        if let Some(w) = self.recs.get_mut(&id) {
            w.pending = n;
        }
    }

    /// Starts write `id`'s next round of telling every node, if it has
    /// one left; returns its group then.
    pub(super) fn next_round(&mut self, id: WriteId) -> Option<Arc<str>> {
        let w = self.recs.get_mut(&id)?;
        if w.rounds_left == 0 {
            return None;
        }
        w.rounds_left -= 1;
        Some(w.group.clone())
    }

    /// Whether write `id` is open and waits on no one.
    pub(super) fn is_answered(&self, id: WriteId) -> bool {
        self.recs
            .get(&id)
            .is_some_and(|w| !w.awaiting_owner && w.pending == 0)
    }

    /// `peer` answered write `id`: `Err` with why when it did not apply it
    /// (or could not be reached).
    pub(super) fn answered(
        &mut self,
        id: WriteId,
        peer: &Arc<str>,
        result: Result<(), Arc<str>>,
    ) -> Answered {
        let Some(w) = self.recs.get_mut(&id) else {
            return Answered::Waiting;
        };
        if w.awaiting_owner && w.owner.as_ref() == Some(peer) {
            if let Err(why) = result {
                w.owner_error = Some(why);
                w.not_reached.push(peer.clone());
            }
            return Answered::Owner;
        }
        if result.is_err() {
            w.not_reached.push(peer.clone());
        }
        w.pending = w.pending.saturating_sub(1);
        if w.pending == 0 {
            Answered::All
        } else {
            Answered::Waiting
        }
    }

    /// Closes write `id` and says how it went: it fails when the owner did
    /// not apply it; otherwise it names the nodes that could not be told.
    pub(super) fn finish(&mut self, id: WriteId) -> Option<Finished> {
        let mut w = self.recs.remove(&id)?;
        w.not_reached.sort();
        w.not_reached.dedup();
        let not_reached = w.not_reached.len();
        let result = match (&w.owner_error, &w.owner) {
            (Some(why), Some(owner)) => {
                let key = w.op.key().unwrap_or("");
                let others: Vec<&str> = (w.not_reached.iter())
                    .filter(|p| *p != owner)
                    .map(|p| &**p)
                    .collect();
                let mut msg = format!("{}/{key}: owner {owner} not reached: {why}", w.group);
                if !others.is_empty() {
                    msg += &format!("; also not reached: {}", others.join(", "));
                }
                Err(Error::Write(msg.into()))
            }
            _ => Ok(WriteReport {
                not_reached: w.not_reached,
            }),
        };
        Some(Finished {
            group: w.group,
            waiter: w.waiter,
            not_reached,
            result,
        })
    }

    /// Closes every open write, in the order they were opened, and returns
    /// whom each must tell it failed.
    pub(super) fn abort(&mut self) -> Vec<(WriteId, WriteWaiter)> {
        let mut open: Vec<(WriteId, WriteWaiter)> =
            (self.recs.drain()).map(|(id, w)| (id, w.waiter)).collect();
        open.sort_by_key(|&(id, _)| id);
        open
    }

    /// Every open write waits on exactly as many requests as `asked` counts
    /// for it.
    pub(super) fn validate(&self, asked: &HashMap<WriteId, usize>) -> Result<(), String> {
        for (id, w) in &self.recs {
            let want = if w.awaiting_owner { 1 } else { w.pending };
            let got = asked.get(id).copied().unwrap_or(0);
            if got != want {
                return Err(format!("{id} waits on {want} answers, {got} asked"));
            }
        }
        Ok(())
    }
}
