//! The ghost set: hashes of keys recently evicted without having been read
//! again, so that a key coming back soon after skips the small queue (the
//! sign that the small queue was too short to see its reuse, S3-FIFO's
//! ghost queue).
//!
//! 4 bytes per slot: a 32-bit fingerprint of the key's hash, in buckets of
//! four, oldest last, where a new one pushes the oldest out. FIFO per
//! bucket approximates FIFO over the set without a queue. The bucket is
//! taken from the fingerprint, so the set can be resized from the
//! fingerprints alone. A false positive (another key with the same
//! fingerprint in the same bucket) only sends a new key straight to the
//! main queue: about one lookup in 2^30 / buckets.

/// Slots per bucket.
const WAYS: usize = 4;

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
        if b[WAYS - 1] == 0 {
            self.len += 1;
        }
        b.copy_within(0..WAYS - 1, 1);
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
