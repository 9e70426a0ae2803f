//! Where the cache's keys and values live: segments in FIFO order, each one
//! buffer holding items back to back, and the open segment being filled.
//!
//! An item (`item.rs`) keeps its expiry in its header, not in the index.
//! An update of the same length is written over it; any other update
//! writes a new item and leaves the old one dead. A closed
//! segment's buffer is one `Bytes`, so a hit hands out a slice of it
//! without allocating. The open segment is a `Vec` still being written; an
//! item of it handed out is copied once into `staged` and shared from there
//! until the segment closes, which it does early once many were. An item
//! larger than a segment gets a segment of its own ("dedicated").
//!
//! Segment ids count up (wrapping) in FIFO order; `segs[id - base]` holds
//! segment `id`, `None` once it was freed out of order.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};

use bytes::Bytes;

use super::entry::{Entry, MAX_SEGMENT_SIZE};
use super::item::{put_item, rewrite, Item, HEADER};

/// Copies out of the open segment before it may close early because half
/// its items were read, so early-closed segments are not tiny.
const STAGED_MIN: usize = 64;
/// One segment.
#[derive(Debug)]
pub(super) struct Segment {
    /// The items, once closed; empty while open (see [`Open::buf`]).
    pub data: Bytes,
    /// What its items are charged, live and dead.
    pub charge: usize,
    /// Items still indexed.
    pub live: u32,
    /// The latest expiry of its items; `u64::MAX` if one never expires.
    pub expires_max: u64,
    /// Holds one item larger than a segment.
    pub dedicated: bool,
    /// Offsets of its dead items, in the order they died: a dead item
    /// costs 4 more bytes here until its segment goes, and a live one
    /// nothing.
    pub dead: Vec<u32>,
}

impl Segment {
    fn new(data: Bytes, dedicated: bool) -> Self {
        Self {
            data,
            charge: 0,
            live: 0,
            expires_max: 0,
            dedicated,
            dead: Vec::new(),
        }
    }

    /// True if the item at `off` is live. Linear in the dead items: for
    /// tests and debugging; eviction sorts the dead offsets once instead.
    pub fn is_live(&self, off: usize) -> bool {
        if self.dedicated {
            return self.live > 0;
        }
        !self.dead.contains(&(off as u32))
    }
}

/// The segment being filled.
#[derive(Debug)]
pub(super) struct Open {
    pub id: u32,
    pub buf: Vec<u8>,
    /// Copies of its items handed out, by offset, so an item is copied out
    /// at most once while the segment is open.
    pub staged: hashbrown::HashMap<u32, Bytes>,
    /// Bytes of those copies.
    pub staged_bytes: usize,
}

impl Open {
    /// The shared copy of the item at `e`, made on its first hit.
    #[cold]
    fn stage(&mut self, e: &Entry) -> Bytes {
        let (buf, bytes) = (&self.buf, &mut self.staged_bytes);
        self.staged
            .entry(e.offset() as u32)
            .or_insert_with(|| match Item::at(buf, e.offset()) {
                Some(item) => {
                    *bytes += item.vlen;
                    Bytes::copy_from_slice(&buf[item.value_range()])
                }
                None => Bytes::new(),
            })
            .clone()
    }
}

/// The segments.
#[derive(Debug, Default)]
pub(super) struct Store {
    segs: VecDeque<Option<Segment>>,
    /// Id of `segs[0]`.
    base: u32,
    pub open: Option<Open>,
    /// Capacity of an open segment; 0: every item is dedicated.
    pub seg_size: usize,
    /// The flag every entry this store writes carries: [`MAIN`] or 0.
    tag: u32,
    /// Sum of the segments' charges.
    pub bytes: usize,
    /// (latest expiry, id) of closed segments that expire; stale records
    /// (segment freed) are skipped.
    pub expiry: BinaryHeap<Reverse<(u64, u32)>>,
    /// An evicted segment's buffer, kept for the next open segment: a
    /// fresh allocation per segment costs page faults once memory churns.
    spare: Option<Vec<u8>>,
}

/// Items of a segment, in order.
pub(super) struct Items<'a> {
    buf: &'a [u8],
    off: usize,
}

impl Iterator for Items<'_> {
    type Item = Item;

    fn next(&mut self) -> Option<Item> {
        let item = Item::at(self.buf, self.off)?;
        self.off = item.end();
        Some(item)
    }
}

impl Store {
    /// An empty store whose entries carry `tag` ([`MAIN`] or 0).
    pub fn new(seg_size: usize, tag: u32) -> Self {
        Self {
            seg_size: seg_size.min(MAX_SEGMENT_SIZE),
            tag,
            ..Self::default()
        }
    }

    /// The flag this store's entries carry.
    pub fn tag(&self) -> u32 {
        self.tag
    }

    #[inline]
    fn index(&self, id: u32) -> usize {
        id.wrapping_sub(self.base) as usize
    }

    #[inline]
    pub fn seg(&self, id: u32) -> Option<&Segment> {
        self.segs.get(self.index(id))?.as_ref()
    }

    #[inline]
    pub fn seg_mut(&mut self, id: u32) -> Option<&mut Segment> {
        let i = self.index(id);
        self.segs.get_mut(i)?.as_mut()
    }

    /// The bytes of segment `id`, open or closed.
    #[inline]
    pub fn buf(&self, id: u32) -> &[u8] {
        match &self.open {
            Some(o) if o.id == id => &o.buf,
            _ => self.seg(id).map_or(&[], |s| &s.data),
        }
    }

    /// Where an entry's item is: its closed segment's buffer (`None` for
    /// the open segment), the bytes and the parsed item; what a hit
    /// resolves once.
    #[inline]
    pub fn locate(&self, e: &Entry) -> Option<(Option<&Bytes>, &[u8], Item)> {
        let (data, buf): (Option<&Bytes>, &[u8]) = match &self.open {
            Some(o) if o.id == e.seg => (None, &o.buf),
            _ => {
                let data = &self.seg(e.seg)?.data;
                (Some(data), data)
            }
        };
        Some((data, buf, Item::at(buf, e.offset())?))
    }

    /// The key of an entry's item (empty for an entry that points at no
    /// whole item, which `validate` rules out).
    #[inline]
    pub fn key(&self, e: &Entry) -> &[u8] {
        self.locate(e).map_or(&[], |(_, buf, item)| item.key(buf))
    }

    /// When the entry's item expires, as a tick; 0: never.
    #[inline]
    pub fn expires(&self, e: &Entry) -> u64 {
        self.locate(e).map_or(0, |(_, _, item)| item.expires)
    }

    /// The value of a live entry, shared: a slice of a closed segment, or a
    /// copy staged once for an open one.
    #[inline]
    pub fn value(&mut self, e: &Entry) -> Bytes {
        if let Some(o) = self.open.as_mut().filter(|o| o.id == e.seg) {
            let value = o.stage(e);
            let (copied, copied_bytes) = (o.staged.len(), o.staged_bytes);
            // Once half its items or half a segment's worth were copied
            // out, the segment closes early, so its hits become slices and
            // the copies stop.
            let live = self.seg(e.seg).map_or(0, |s| s.live as usize);
            if copied >= STAGED_MIN && 2 * copied >= live || copied_bytes >= self.seg_size / 2 {
                self.close_open();
            }
            return value;
        }
        self.value_ref(e)
    }

    /// The value without changing anything: an open segment's item is
    /// copied unless staged.
    pub fn value_ref(&self, e: &Entry) -> Bytes {
        match self.locate(e) {
            Some((Some(data), _, item)) => data.slice(item.value_range()),
            Some((None, buf, item)) => match self
                .open
                .as_ref()
                .and_then(|o| o.staged.get(&(e.offset() as u32)))
            {
                Some(v) => v.clone(),
                None => Bytes::copy_from_slice(&buf[item.value_range()]),
            },
            None => Bytes::new(),
        }
    }

    /// Items of segment `id`.
    pub fn items(&self, id: u32) -> Items<'_> {
        Items {
            buf: self.buf(id),
            off: 0,
        }
    }

    /// Ids of the segments, oldest first.
    pub fn ids(&self) -> impl Iterator<Item = u32> + '_ {
        self.segs
            .iter()
            .enumerate()
            .filter(|(_, s)| s.is_some())
            .map(|(i, _)| self.base.wrapping_add(i as u32))
    }

    pub fn len(&self) -> usize {
        self.segs.iter().filter(|s| s.is_some()).count()
    }

    /// Slots held, freed ones in the middle included.
    pub fn slots(&self) -> usize {
        self.segs.len()
    }

    fn push(&mut self, seg: Segment) -> u32 {
        let id = self.base.wrapping_add(self.segs.len() as u32);
        self.segs.push_back(Some(seg));
        id
    }

    /// The oldest segment's id, if any.
    pub fn front(&self) -> Option<u32> {
        self.segs.front().map(|_| self.base)
    }

    /// Writes an item and returns where it is. An item up to the segment
    /// size goes to the open segment (closing a full one first); a larger
    /// one gets a dedicated segment.
    pub fn write(&mut self, key: &[u8], value: &[u8], charge: usize, expires: u64) -> Entry {
        let len = HEADER + key.len() + value.len();
        let (id, off) = if len > self.seg_size {
            let mut data = Vec::with_capacity(len);
            put_item(&mut data, key, value, expires);
            let id = self.push(Segment::new(Bytes::from(data), true));
            (id, 0)
        } else {
            if self
                .open
                .as_ref()
                .is_some_and(|o| o.buf.len() + len > self.seg_size)
            {
                self.close_open();
            }
            let o = self.open_segment();
            let off = o.buf.len();
            put_item(&mut o.buf, key, value, expires);
            (o.id, off)
        };
        self.account(id, charge, expires);
        Entry {
            seg: id,
            off: off as u32 | self.tag,
        }
    }

    /// Replaces the item at `e` with one for the same key, in place, and
    /// returns true; an update that then leaves nothing dead. Possible when
    /// the value's length is unchanged and no hit handed out of a closed
    /// segment is still alive (or the item is the open segment's last, and
    /// the new one fits). Returns false, changing nothing, otherwise.
    pub fn overwrite(&mut self, e: &Entry, value: &[u8], charge: usize, expires: u64) -> bool {
        let old_charge;
        if let Some(o) = self.open.as_mut().filter(|o| o.id == e.seg) {
            let Some(item) = Item::at(&o.buf, e.offset()) else {
                return false;
            };
            old_charge = charge - value.len() + item.vlen;
            if item.vlen == value.len() {
                rewrite(&mut o.buf, &item, value, expires);
            } else if item.end() == o.buf.len()
                && item.off + HEADER + item.klen + value.len() <= self.seg_size
            {
                o.buf.truncate(item.off + HEADER + item.klen);
                o.buf.extend_from_slice(value);
                o.buf[item.off + 4..item.off + 8]
                    .copy_from_slice(&(value.len() as u32).to_le_bytes());
                o.buf[item.off + 8..item.off + HEADER].copy_from_slice(&expires.to_le_bytes());
            } else {
                return false;
            }
            if let Some(v) = o.staged.remove(&(e.offset() as u32)) {
                o.staged_bytes -= v.len();
            }
        } else {
            let Some(s) = self.seg_mut(e.seg) else {
                return false;
            };
            let Some(item) = Item::at(&s.data, e.offset()).filter(|i| i.vlen == value.len()) else {
                return false;
            };
            // Writable only while nothing else shares the buffer; taking it
            // out and back costs no copy.
            match std::mem::take(&mut s.data).try_into_mut() {
                Ok(mut buf) => {
                    rewrite(&mut buf, &item, value, expires);
                    s.data = buf.freeze();
                }
                Err(data) => {
                    s.data = data;
                    return false;
                }
            }
            old_charge = charge;
        }
        let open = self.open.as_ref().is_some_and(|o| o.id == e.seg);
        let s = self.seg_mut(e.seg).expect("located above");
        s.charge = s.charge - old_charge + charge;
        let before = s.expires_max;
        s.expires_max = before.max(if expires == 0 { u64::MAX } else { expires });
        let after = s.expires_max;
        self.bytes = self.bytes - old_charge + charge;
        if !open && after != before && after != u64::MAX {
            // The old record goes stale; the segment now expires later.
            self.expiry.push(Reverse((after, e.seg)));
        }
        true
    }

    /// Moves a dedicated segment's item to the back of the queue without
    /// copying it.
    pub fn requeue(&mut self, data: Bytes, charge: usize, expires: u64) -> Entry {
        let id = self.push(Segment::new(data, true));
        self.account(id, charge, expires);
        Entry {
            seg: id,
            off: self.tag,
        }
    }

    fn account(&mut self, id: u32, charge: usize, expires: u64) {
        let s = self.seg_mut(id).expect("just written");
        s.charge += charge;
        s.live += 1;
        s.expires_max = s
            .expires_max
            .max(if expires == 0 { u64::MAX } else { expires });
        let (dedicated, max) = (s.dedicated, s.expires_max);
        self.bytes += charge;
        if dedicated && max != u64::MAX {
            self.expiry.push(Reverse((max, id)));
        }
    }

    fn open_segment(&mut self) -> &mut Open {
        if self.open.is_none() {
            let id = self.push(Segment::new(Bytes::new(), false));
            let buf = match self.spare.take() {
                Some(buf) if buf.capacity() >= self.seg_size => buf,
                _ => Vec::with_capacity(self.seg_size),
            };
            self.open = Some(Open {
                id,
                buf,
                staged: hashbrown::HashMap::new(),
                staged_bytes: 0,
            });
        }
        self.open.as_mut().expect("just opened")
    }

    /// Closes the open segment: its buffer becomes the segment's `Bytes`.
    pub fn close_open(&mut self) {
        let Some(mut o) = self.open.take() else {
            return;
        };
        // Give back an unwritten tail worth giving back, so the segment
        // holds what it uses; a short one stays, and the buffer can be
        // reused whole when the segment goes.
        if o.buf.capacity() - o.buf.len() > o.buf.capacity() / 256 {
            o.buf.shrink_to_fit();
        }
        let s = self.seg_mut(o.id).expect("open segment is queued");
        s.data = Bytes::from(o.buf);
        let (live, max) = (s.live, s.expires_max);
        if live == 0 {
            self.free(o.id);
        } else if max != u64::MAX {
            self.expiry.push(Reverse((max, o.id)));
        }
    }

    /// Marks the item at `e` dead; frees its segment when it was the last
    /// live one (an open segment is emptied for reuse instead).
    pub fn kill(&mut self, e: &Entry) {
        let Some(s) = self.seg_mut(e.seg) else {
            return;
        };
        if !s.dedicated {
            s.dead.push(e.offset() as u32);
        }
        s.live -= 1;
        let live = s.live;
        if let Some(o) = self
            .open
            .as_mut()
            .filter(|o| o.id == e.seg && !o.staged.is_empty())
        {
            if let Some(v) = o.staged.remove(&(e.offset() as u32)) {
                o.staged_bytes -= v.len();
            }
        }
        if live > 0 {
            return;
        }
        match &mut self.open {
            Some(o) if o.id == e.seg => {
                o.buf.clear();
                o.staged.clear();
                o.staged_bytes = 0;
                let s = self.seg_mut(e.seg).expect("open segment is queued");
                let charge = std::mem::take(&mut s.charge);
                s.expires_max = 0;
                s.dead.clear();
                self.bytes -= charge;
            }
            _ => drop(self.free(e.seg)),
        }
    }

    /// Drops segment `id` and releases its charge. Its live items must have
    /// been taken out of the index.
    pub fn free(&mut self, id: u32) -> Option<Segment> {
        let i = self.index(id);
        let s = self.segs.get_mut(i)?.take()?;
        self.bytes -= s.charge;
        if self.open.as_ref().is_some_and(|o| o.id == id) {
            self.open = None;
        }
        while matches!(self.segs.front(), Some(None)) {
            self.segs.pop_front();
            self.base = self.base.wrapping_add(1);
        }
        Some(s)
    }

    /// Keeps an evicted segment's buffer for the next open segment, if
    /// nothing else holds it (no hit handed out of it is still alive).
    pub fn recycle(&mut self, data: Bytes) {
        if self.spare.is_some() || data.len() < self.seg_size / 2 {
            return;
        }
        if let Ok(mut buf) = data.try_into_mut() {
            buf.clear();
            let buf = Vec::from(buf);
            if buf.capacity() >= self.seg_size {
                self.spare = Some(buf);
            }
        }
    }

    /// Drops every segment.
    pub fn clear(&mut self) {
        self.base = self.base.wrapping_add(self.segs.len() as u32);
        self.segs.clear();
        self.open = None;
        self.bytes = 0;
        self.expiry.clear();
    }

    /// Drops expiry records of segments since freed, when they outnumber
    /// the segments, so the heap stays as small as the queue.
    pub fn compact_expiry(&mut self) {
        if self.expiry.len() <= 2 * self.segs.len() + 16 {
            return;
        }
        let mut heap = std::mem::take(&mut self.expiry);
        heap.retain(|Reverse((t, id))| self.seg(*id).is_some_and(|s| s.expires_max == *t));
        self.expiry = heap;
    }

    #[cfg(test)]
    pub fn set_base(&mut self, base: u32) {
        assert!(self.segs.is_empty());
        self.base = base;
    }
}
