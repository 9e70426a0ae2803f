//! The ghost set: hashes of keys recently evicted without having been read
//! again, so that a key coming back soon after skips the small queue (the
//! sign that the small queue was too short to see its reuse, S3-FIFO's
//! ghost queue).
//!
//! 4 bytes per slot: a 32-bit fingerprint of the key's hash, in buckets of
//! four, oldest last. FIFO per bucket approximates FIFO over the set
//! without a queue. The bucket is taken from the fingerprint, so the set
//! can be resized from the fingerprints alone. A false positive (another
//! key with the same fingerprint in the same bucket) only sends a new key
//! straight to the main queue: about one lookup in 2^30 / buckets.
//!
//! **Two classes of keys.** Half the fingerprints (the even ones) are
//! capped: in a full bucket, a new capped ghost takes a slot from the
//! other class only while its class holds none ([`CAPPED_WAYS`]), and
//! otherwise pushes out its own class's oldest; a new ghost of the other
//! class pushes out its own class's oldest. So a bucket's slots are split
//! between the classes, one to three each (a class may fill a bucket until
//! the other's first ghost comes), the split set by the order in which
//! ghosts arrived and were taken, and it differs between buckets.
//! A key's ghost therefore lives from about half the set's turnover (one
//! slot of its class) to about one and a half (three), where one plain
//! FIFO gives every key about one. The set costs the same; what changes is
//! who is remembered longest. A key that comes back only after more than
//! the set's worth of others (a loop over more than the cache) is never
//! found by a plain FIFO, and is found here when its class holds most of
//! its bucket: the same keys each round, which then stay in the main
//! queue. BENCHMARKS.md has the measurements.

/// Slots per bucket.
const WAYS: usize = 4;

/// The slots of a full bucket that the capped class's ghosts take from
/// the other class's; beyond it, a new one pushes out its own class's
/// oldest.
const CAPPED_WAYS: usize = 1;

/// True for the capped class: half the fingerprints (an even one). Its
/// bit is independent of the bucket, which comes from the top bits.
#[inline]
fn capped(fp: u32) -> bool {
    fp & 1 == 0
}

/// Fingerprints of recently evicted keys.
#[derive(Debug, Default, Clone)]
pub(super) struct Ghost {
    /// Buckets of fingerprints, newest first; 0 is an empty slot.
    buckets: Vec<[u32; WAYS]>,
    /// Fingerprints held.
    len: usize,
}

/// The fingerprint of a 64-bit hash: its top half (the index uses the low
/// bits and the control byte the top 7 of a `hashbrown` table's hash, but
/// a ghost never sits in that table), never 0.
#[inline]
fn fingerprint(hash: u64) -> u32 {
    ((hash >> 32) as u32).max(1)
}

impl Ghost {
    /// Slots: what the set can hold.
    pub fn capacity(&self) -> usize {
        self.buckets.len() * WAYS
    }

    /// Fingerprints held.
    pub fn len(&self) -> usize {
        self.len
    }

    #[inline]
    fn bucket(&self, fp: u32) -> usize {
        // Multiply-shift maps the fingerprint onto any number of buckets.
        ((u64::from(fp) * self.buckets.len() as u64) >> 32) as usize
    }

    /// Records `hash` as the newest ghost of its bucket, pushing out its
    /// oldest. Does nothing while the set has no room at all.
    pub fn insert(&mut self, hash: u64) {
        if self.buckets.is_empty() {
            return;
        }
        let fp = fingerprint(hash);
        let i = self.bucket(fp);
        let b = &mut self.buckets[i];
        let out = if b[WAYS - 1] == 0 {
            self.len += 1;
            WAYS - 1
        } else {
            // The oldest of the class that gives way: the capped class if
            // the new ghost is of it and it holds its cap, else the other
            // (or, in a bucket the capped class filled, the oldest).
            // Bit j set: slot j holds a capped ghost.
            let held = (0..WAYS).fold(0u32, |m, j| m | u32::from(capped(b[j])) << j);
            let gives = capped(fp) && held.count_ones() as usize >= CAPPED_WAYS;
            let class = if gives {
                held
            } else {
                !held & ((1 << WAYS) - 1)
            };
            match class.checked_ilog2() {
                Some(j) => j as usize,
                None => WAYS - 1,
            }
        };
        // By hand: at most three moves, where a `copy_within` of a length
        // known only at run time may become a `memmove` call.
        for j in (1..=out).rev() {
            b[j] = b[j - 1];
        }
        b[0] = fp;
    }

    /// True if `hash` was held, and forgets it: a key leaves the ghost set
    /// when it comes back.
    #[inline]
    pub fn take(&mut self, hash: u64) -> bool {
        if self.len == 0 {
            return false;
        }
        let fp = fingerprint(hash);
        let i = self.bucket(fp);
        let b = &mut self.buckets[i];
        let Some(at) = b.iter().position(|&f| f == fp) else {
            return false;
        };
        b.copy_within(at + 1.., at);
        b[WAYS - 1] = 0;
        self.len -= 1;
        true
    }

    /// Resizes to hold about `want` fingerprints when the current size is
    /// far from it (more than a quarter over, or under half), keeping the
    /// newest of each bucket first. Amortised: a resize is linear in the
    /// set and happens once the cache's entry count moved by a quarter.
    pub fn fit(&mut self, want: usize) {
        let cap = self.capacity();
        if want <= cap + cap / 4 && 2 * want >= cap {
            return;
        }
        let old = std::mem::take(&mut self.buckets);
        self.buckets = vec![[0; WAYS]; want.div_ceil(WAYS)];
        self.len = 0;
        // Oldest first, so each bucket ends newest first.
        for way in (0..WAYS).rev() {
            for b in &old {
                if b[way] != 0 {
                    self.insert_fingerprint(b[way]);
                }
            }
        }
    }

    fn insert_fingerprint(&mut self, fp: u32) {
        // A fingerprint is the top half of a hash: rebuild one that maps
        // back to it.
        self.insert(u64::from(fp) << 32);
    }

    /// Checks the count; for `validate`.
    pub fn validate(&self) -> Result<(), String> {
        let held: usize = self
            .buckets
            .iter()
            .map(|b| b.iter().filter(|&&f| f != 0).count())
            .sum();
        let packed = self
            .buckets
            .iter()
            .all(|b| b.windows(2).all(|w| w[0] != 0 || w[1] == 0));
        if held != self.len || !packed {
            return Err(format!(
                "ghost holds {held}, counted {}, packed {packed}",
                self.len
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ghost_is_found_once_and_the_oldest_of_a_bucket_goes_first() {
        let mut g = Ghost::default();
        assert!(!g.take(7 << 32), "an empty set holds nothing");
        g.fit(4);
        assert_eq!(g.capacity(), 4);
        // One bucket: five inserts push out the first.
        for fp in 1..=5u64 {
            g.insert(fp << 32);
        }
        assert_eq!(g.len(), 4);
        assert!(!g.take(1 << 32));
        assert!(g.take(3 << 32));
        assert!(!g.take(3 << 32), "taken once");
        assert_eq!(g.len(), 3);
        g.validate().unwrap();
    }

    #[test]
    fn a_capped_ghost_pushes_out_its_own_class_once_it_holds_a_slot() {
        let mut g = Ghost::default();
        g.fit(4);
        // One bucket: 2 is capped (even), 1, 3 and 5 are not.
        for fp in [2u64, 1, 3, 5] {
            g.insert(fp << 32);
        }
        assert_eq!(g.buckets[0], [5, 3, 1, 2]);
        // Capped, and its class holds its slot: 2 goes, not the oldest
        // of the other class.
        g.insert(4 << 32);
        assert_eq!(g.buckets[0], [4, 5, 3, 1]);
        // The other class pushes out its own oldest, never the capped one.
        g.insert(7 << 32);
        assert_eq!(g.buckets[0], [7, 4, 5, 3]);
        // A bucket the capped class filled gives up its oldest.
        let mut g = Ghost::default();
        g.fit(4);
        for fp in [2u64, 4, 6, 8, 9] {
            g.insert(fp << 32);
        }
        assert_eq!(g.buckets[0], [9, 8, 6, 4]);
        g.validate().unwrap();
        assert!(g.take(4 << 32) && !g.take(2 << 32));
    }

    #[test]
    fn resizing_keeps_the_fingerprints() {
        let mut g = Ghost::default();
        g.fit(64);
        let hashes: Vec<u64> = (1..=40u64)
            .map(|i| i.wrapping_mul(0x9e37_79b9_7f4a_7c15))
            .collect();
        for &h in &hashes {
            g.insert(h);
        }
        let before = g.len();
        g.fit(1000);
        assert!(g.capacity() >= 1000);
        assert_eq!(g.len(), before);
        let found = hashes.iter().filter(|&&h| g.take(h)).count();
        assert_eq!(found, before);
        g.validate().unwrap();
    }
}
