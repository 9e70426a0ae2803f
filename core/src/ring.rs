//! Consistent hashing with go-needle/groupcache's exact placement.
//!
//! For each peer (in the order given) and each replica `i`, the point is
//! `hash(decimal(i) + peer)`. A key belongs to the peer of the first point at
//! or after `hash(key)`, wrapping to the first point. When two points collide,
//! the later one wins, as in the original's point-to-peer map.

use std::sync::Arc;

/// A hash from bytes to a ring position.
pub type HashFn = fn(&[u8]) -> u32;

/// Replicas per peer used by the original.
pub const DEFAULT_REPLICAS: usize = 50;

/// CRC-32 (IEEE), the original's ring hash.
pub fn crc32_ieee(data: &[u8]) -> u32 {
    crc32fast::hash(data)
}

/// A consistent-hash ring of peer addresses.
///
/// ```
/// use groupcache_core::ring::Ring;
///
/// let ring = Ring::with_peers(50, ["127.0.0.1:8001", "127.0.0.1:8002", "127.0.0.1:8003"]);
/// assert_eq!(ring.owner("Tom"), Some("127.0.0.1:8001"));
/// ```
#[derive(Debug, Clone)]
pub struct Ring {
    replicas: usize,
    hash: HashFn,
    peers: Vec<Arc<str>>,
    /// Sorted, one entry per distinct point: (point, index into `peers`).
    points: Vec<(u32, u32)>,
}

impl Ring {
    /// An empty ring with `replicas` points per peer and CRC-32 IEEE.
    pub fn new(replicas: usize) -> Self {
        Self::with_hash(replicas, crc32_ieee)
    }

    /// An empty ring with a hash function of the caller's choosing.
    pub fn with_hash(replicas: usize, hash: HashFn) -> Self {
        Self {
            replicas,
            hash,
            peers: Vec::new(),
            points: Vec::new(),
        }
    }

    /// A ring holding `peers`, in that order.
    pub fn with_peers<I, S>(replicas: usize, peers: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut r = Self::new(replicas);
        r.set_peers(peers);
        r
    }

    /// Replaces the membership. Order matters only for colliding points,
    /// exactly as in the original.
    pub fn set_peers<I, S>(&mut self, peers: I)
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        self.peers = peers.into_iter().map(|p| Arc::from(p.as_ref())).collect();
        let mut points: Vec<(u32, u32, usize)> =
            Vec::with_capacity(self.peers.len() * self.replicas);
        let mut buf = Vec::new();
        for (pi, peer) in self.peers.iter().enumerate() {
            for i in 0..self.replicas {
                buf.clear();
                buf.extend_from_slice(i.to_string().as_bytes());
                buf.extend_from_slice(peer.as_bytes());
                points.push(((self.hash)(&buf), pi as u32, points.len()));
            }
        }
        // Sort by point, then by insertion order, and keep the last of equal
        // points: the original's map assignment lets the later one win.
        points.sort_unstable_by_key(|&(h, _, seq)| (h, seq));
        self.points.clear();
        for (h, p, _) in points {
            match self.points.last_mut() {
                Some(last) if last.0 == h => last.1 = p,
                _ => self.points.push((h, p)),
            }
        }
    }

    /// The peers, in the order they were given.
    pub fn peers(&self) -> &[Arc<str>] {
        &self.peers
    }

    /// Replicas per peer.
    pub fn replicas(&self) -> usize {
        self.replicas
    }

    /// True when the ring has no peer.
    pub fn is_empty(&self) -> bool {
        self.points.is_empty()
    }

    /// The peer that owns `key`, or `None` on an empty ring.
    pub fn owner(&self, key: &str) -> Option<&str> {
        self.owner_index(key).map(|i| &*self.peers[i])
    }

    /// Index into [`Ring::peers`] of the owner of `key`.
    pub fn owner_index(&self, key: &str) -> Option<usize> {
        if self.points.is_empty() {
            return None;
        }
        let h = (self.hash)(key.as_bytes());
        let i = self.points.partition_point(|&(p, _)| p < h);
        let i = if i == self.points.len() { 0 } else { i };
        Some(self.points[i].1 as usize)
    }
}

impl Default for Ring {
    fn default() -> Self {
        Self::new(DEFAULT_REPLICAS)
    }
}
