//! Eviction: which segment goes next, and what becomes of each of its
//! items (moved to the main queue's back, evicted leaving a ghost, or
//! removed as expired). The policy is described in the module above.

use std::hash::BuildHasher;

use super::entry::MAIN;
use super::item::{Item, HEADER};
use super::store::Segment;
use super::{move_budget, tick, Cache, MAIN_Q, SMALL_Q, SMALL_SHARE_PERCENT};

/// What moving an item costs the move budget: its bytes, or a header's
/// worth for a dedicated segment, which moves without a copy.
fn move_cost(item: &Item, dedicated: bool) -> usize {
    if dedicated {
        HEADER
    } else {
        item.len()
    }
}

impl Cache {
    /// Evicts oldest segments until at most `max` bytes are held: the
    /// small queue's while it holds more than its share, else the main
    /// queue's.
    pub(super) fn evict_to(&mut self, max: usize) {
        self.move_budget = move_budget(self.max_bytes);
        while self.bytes() > max {
            let small = self.stores[SMALL_Q].bytes;
            let share = max / 100 * SMALL_SHARE_PERCENT + max % 100 * SMALL_SHARE_PERCENT / 100;
            let mut first = if small > share || self.stores[MAIN_Q].bytes == 0 {
                SMALL_Q
            } else {
                MAIN_Q
            };
            // The entry just inserted, alone in its queue's oldest segment,
            // is not what to evict: it would only be written back.
            if self.protected_alone(first) && self.stores[1 - first].bytes > 0 {
                first = 1 - first;
            }
            let Some((q, id)) = [first, 1 - first]
                .into_iter()
                .find_map(|q| Some((q, self.stores[q].front()?)))
            else {
                break;
            };
            let store = &mut self.stores[q];
            if store.open.as_ref().is_some_and(|o| o.id == id) {
                store.close_open();
                if store.seg(id).is_none() {
                    continue;
                }
            }
            self.evict_segment(q, id);
        }
    }

    /// True if queue `q`'s oldest segment holds the entry just inserted and
    /// nothing else live.
    fn protected_alone(&self, q: usize) -> bool {
        self.protect.is_some_and(|p| {
            let store = &self.stores[q];
            p.queue() == q
                && store.front() == Some(p.seg)
                && store.seg(p.seg).is_some_and(|s| s.live == 1)
        })
    }

    /// Frees closed segment `id` of queue `q`. Each of its live entries is
    /// removed if expired; else moved to the main queue's back if it was
    /// read since it was written (or its segment is at least half dead, in
    /// the main queue), while the move budget lasts; else evicted, leaving
    /// a ghost if it was in the small queue. Returns how many entries were
    /// removed.
    pub(super) fn evict_segment(&mut self, q: usize, id: u32) -> usize {
        let Some(seg) = self.stores[q].free(id) else {
            return 0;
        };
        let Segment {
            data,
            dedicated,
            mut dead,
            live,
            ..
        } = seg;
        let compact = q == MAIN_Q && !dedicated && dead.len() >= live as usize;
        if q == SMALL_Q {
            // The ghost set follows the cache's entry count.
            self.ghost.fit(self.table.len());
        }
        dead.sort_unstable();
        let mut dead = dead.into_iter().peekable();
        let clock = self.last_now.map_or(0, |t| tick(self.epoch, t));
        let tag = self.stores[q].tag();
        let mut removed = 0;
        let mut off = 0;
        while let Some(item) = Item::at(&data, off) {
            off = item.end();
            if dead.next_if_eq(&(item.off as u32)).is_some() {
                continue;
            }
            let key = item.key(&data);
            let hash = self.hasher.hash_one(key);
            let Ok(mut found) = self.table.find_entry(hash, |e| {
                e.seg == id && e.off & MAIN == tag && e.offset() == item.off
            }) else {
                continue;
            };
            let e = *found.get();
            let protected = self.protect.is_some_and(|p| p.same_item(&e));
            let read = e.freq() > 0;
            let cost = move_cost(&item, dedicated);
            let movable = cost <= self.move_budget;
            if item.expires != 0 && item.expires <= clock && !protected {
                found.remove();
                self.stats.expirations += 1;
                removed += 1;
            } else if protected || (movable && (read || compact)) {
                self.move_budget = self.move_budget.saturating_sub(cost);
                let charge = item.klen + item.vlen + self.overhead;
                // The entry just inserted, met unread in the small queue
                // (whose oldest segment is the open one it went to), stays
                // there: it has not been judged yet.
                let to = if protected && q == SMALL_Q && !read {
                    SMALL_Q
                } else {
                    MAIN_Q
                };
                let dest = &mut self.stores[to];
                let moved = if dedicated {
                    dest.requeue(data.clone(), charge, item.expires)
                } else {
                    dest.write(key, &data[item.value_range()], charge, item.expires)
                };
                // Promotion and compaction keep the read count; a round in
                // main spends one read.
                let spent = u32::from(q == MAIN_Q && !compact && read);
                let moved = moved.with_freq(e.freq() - spent);
                *found.get_mut() = moved;
                if protected {
                    self.protect = Some(moved);
                }
            } else {
                found.remove();
                self.stats.evictions += 1;
                removed += 1;
                if q == SMALL_Q {
                    self.ghost.insert(hash);
                }
            }
        }
        if !dedicated {
            self.stores[q].recycle(data);
        }
        removed
    }
}
