//! [`Cache::validate`]: every internal invariant, checked the slow way.

use std::cmp::Reverse;
use std::collections::HashSet;

use super::entry::MAIN;
use super::item::Item;
use super::store::Store;
use super::Cache;

impl Cache {
    /// Checks every internal invariant; for tests and fuzzers.
    pub fn validate(&self) -> Result<(), String> {
        let mut live_total = 0;
        for (q, store) in self.stores.iter().enumerate() {
            if store.tag() != if q == 1 { MAIN } else { 0 } {
                return Err(format!("queue {q} has tag {}", store.tag()));
            }
            live_total += self
                .validate_store(store)
                .map_err(|e| format!("queue {q}: {e}"))?;
        }
        if live_total != self.table.len() {
            return Err(format!(
                "{live_total} live items, {} indexed",
                self.table.len()
            ));
        }
        for e in &self.table {
            let store = &self.stores[e.queue()];
            if store.locate(e).is_none() {
                return Err(format!("entry {e:?} points at no item of its queue"));
            }
        }
        self.ghost.validate()?;
        if self.bytes() > self.max_bytes {
            return Err(format!(
                "bytes {} over budget {}",
                self.bytes(),
                self.max_bytes
            ));
        }
        Ok(())
    }

    /// Checks one queue's store; returns its live items.
    fn validate_store(&self, store: &Store) -> Result<usize, String> {
        let records: HashSet<(u64, u32)> = store.expiry.iter().map(|Reverse(r)| *r).collect();
        let open = store.open.as_ref().map(|o| o.id);
        let mut live_total = 0usize;
        let mut bytes = 0usize;
        if store.slots() > 0 && store.front().and_then(|id| store.seg(id)).is_none() {
            return Err("queue starts with a freed slot".into());
        }
        for id in store.ids() {
            let seg = store.seg(id).ok_or("listed segment missing")?;
            let buf = store.buf(id);
            let dedicated = seg.dedicated;
            if open == Some(id) && !seg.data.is_empty() {
                return Err(format!("open segment {id} has closed data"));
            }
            let (mut off, mut live, mut charge, mut items) = (0, 0u32, 0, 0);
            let mut expires_max = 0;
            while off < buf.len() {
                let item = Item::at(buf, off)
                    .ok_or_else(|| format!("segment {id}: torn item at {off}"))?;
                off = item.end();
                items += 1;
                charge += item.klen + item.vlen + self.overhead;
                if !seg.is_live(item.off) {
                    continue;
                }
                live += 1;
                let key = item.key(buf);
                let e = self
                    .table
                    .find(self.hash(key), |e| {
                        e.seg == id && e.off & MAIN == store.tag() && e.offset() == item.off
                    })
                    .ok_or_else(|| {
                        format!("segment {id}: live item at {} not indexed", item.off)
                    })?;
                if store.key(e) != key {
                    return Err(format!(
                        "segment {id}: entry at {} reads another key",
                        item.off
                    ));
                }
                expires_max = expires_max.max(if item.expires == 0 {
                    u64::MAX
                } else {
                    item.expires
                });
            }
            let mut dead = seg.dead.clone();
            dead.sort_unstable();
            dead.dedup();
            if !dedicated && (dead.len() != seg.dead.len() || items != live as usize + dead.len()) {
                return Err(format!(
                    "segment {id}: {items} items, {live} live, dead {:?}",
                    seg.dead
                ));
            }
            if dedicated && (items != 1 || open == Some(id)) {
                return Err(format!("dedicated segment {id} holds {items} items"));
            }
            if live != seg.live || live == 0 && open != Some(id) {
                return Err(format!(
                    "segment {id}: {live} live items, counted {}",
                    seg.live
                ));
            }
            if charge != seg.charge {
                return Err(format!(
                    "segment {id}: charge {} != sum {charge}",
                    seg.charge
                ));
            }
            if expires_max > seg.expires_max {
                return Err(format!(
                    "segment {id}: an item outlives its segment's expiry"
                ));
            }
            if open != Some(id)
                && seg.expires_max != u64::MAX
                && !records.contains(&(seg.expires_max, id))
            {
                return Err(format!("segment {id} has no expiry record"));
            }
            live_total += live as usize;
            bytes += seg.charge;
        }
        if let Some(o) = &store.open {
            if store.seg(o.id).is_none() {
                return Err("open segment not queued".into());
            }
            let staged: usize = o.staged.values().map(|v| v.len()).sum();
            if staged != o.staged_bytes {
                return Err(format!(
                    "staged {} bytes, counted {}",
                    staged, o.staged_bytes
                ));
            }
            let seg = store.seg(o.id).expect("checked");
            for &off in o.staged.keys() {
                if !seg.is_live(off as usize) {
                    return Err(format!("staged copy of a dead item at {off}"));
                }
            }
        }
        if bytes != store.bytes {
            return Err(format!("bytes {} != sum {bytes}", store.bytes));
        }
        Ok(live_total)
    }
}
