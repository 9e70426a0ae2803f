//! Singleflight bookkeeping: one load per key at a time, however many ask.
//!
//! The first asker of a key starts a flight and leads it; later askers join as
//! waiters. [`Flights::land`] ends the flight and hands every waiter back
//! exactly once, so the caller can deliver one result to each. A flight ends
//! the same way whether its load succeeded, failed, panicked or was
//! abandoned: the caller lands it with the outcome, and the key is free again.

use hashbrown::HashMap;

/// One key's flight: who waits, and what the leader is doing.
#[derive(Debug)]
pub struct Flight<S, W> {
    /// Everyone waiting for the outcome, the leader included.
    pub waiters: Vec<W>,
    /// The leader's progress, owned by the caller.
    pub state: S,
}

/// Whether [`Flights::join`] started a flight or joined one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Joined {
    /// A new flight: the caller must start the load.
    Leader,
    /// A flight was already under way.
    Follower,
}

/// The flights of one keyspace.
///
/// ```
/// use groupcache_core::flight::{Flights, Joined};
///
/// let mut f: Flights<(), u32> = Flights::default();
/// assert_eq!(f.join("k", 1, || ()), Joined::Leader);
/// assert_eq!(f.join("k", 2, || ()), Joined::Follower);
/// assert_eq!(f.land("k").unwrap().waiters, vec![1, 2]);
/// assert!(f.land("k").is_none()); // delivered once
/// ```
#[derive(Debug)]
pub struct Flights<S, W> {
    map: HashMap<Box<str>, Flight<S, W>>,
}

impl<S, W> Default for Flights<S, W> {
    fn default() -> Self {
        Self {
            map: HashMap::new(),
        }
    }
}

impl<S, W> Flights<S, W> {
    /// Adds `waiter` to the flight of `key`, starting it with `start()` if
    /// there is none.
    pub fn join(&mut self, key: &str, waiter: W, start: impl FnOnce() -> S) -> Joined {
        if let Some(f) = self.map.get_mut(key) {
            f.waiters.push(waiter);
            return Joined::Follower;
        }
        self.map.insert(
            key.into(),
            Flight {
                waiters: vec![waiter],
                state: start(),
            },
        );
        Joined::Leader
    }

    /// Starts a flight of `key` with no waiter: its leader waits outside
    /// it. Replaces a flight already under way, so the caller checks first.
    pub fn lead(&mut self, key: &str, state: S) {
        let f = Flight {
            waiters: Vec::new(),
            state,
        };
        self.map.insert(key.into(), f);
    }

    /// The flight of `key`, if one is under way.
    pub fn get_mut(&mut self, key: &str) -> Option<&mut Flight<S, W>> {
        self.map.get_mut(key)
    }

    /// The flight of `key`, if one is under way.
    pub fn get(&self, key: &str) -> Option<&Flight<S, W>> {
        self.map.get(key)
    }

    /// Ends the flight of `key` and returns it with all its waiters.
    pub fn land(&mut self, key: &str) -> Option<Flight<S, W>> {
        self.map.remove(key)
    }

    /// Keys with a flight under way.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.map.keys().map(|k| &**k)
    }

    /// Flights under way.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// True when no flight is under way.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Total waiters over all flights.
    pub fn waiters(&self) -> usize {
        self.map.values().map(|f| f.waiters.len()).sum()
    }
}
