//! Fences: keys a handoff must not fetch, because a write reached them
//! here lately.
//!
//! A write goes to the key's owner first and only then to the other
//! nodes, so for a while after the owner applied it another node may still
//! hold a copy from before it. A handoff asks another node for its copy:
//! one asked in that while could bring the old value back into the owner's
//! main cache after the write returned with every node reached. So a node
//! that applies a write fences its key (a purge, its whole group) for as
//! long as the write can take to reach the others, and a fenced key goes
//! to the origin instead.

use std::sync::Arc;
use std::time::{Duration, Instant};

use hashbrown::HashMap;

/// Keys fenced at once, at most; past it the whole group is fenced, which
/// only sends more misses to the origin for a while.
pub(super) const MAX_FENCED: usize = 4096;

/// How long a write fences its key: the write's owner answers within one
/// request timeout of being asked, and the writer tells the other nodes
/// within one more, or reports them as not reached.
pub(super) fn fence_for(request_timeout: Duration) -> Duration {
    request_timeout.saturating_mul(2)
}

/// Fenced keys and groups, each until when.
#[derive(Default)]
pub(super) struct Fences {
    keys: HashMap<(Arc<str>, Arc<str>), Instant>,
    groups: HashMap<Arc<str>, Instant>,
}

impl Fences {
    /// Fences `key` of `group` (every key, for `None`) until `until`.
    pub(super) fn fence(
        &mut self,
        now: Instant,
        group: &Arc<str>,
        key: Option<&str>,
        until: Instant,
    ) {
        let Some(key) = key else {
            self.fence_group(group, until);
            return;
        };
        if self.keys.len() >= MAX_FENCED {
            self.keys.retain(|_, t| *t > now);
            self.groups.retain(|_, t| *t > now);
        }
        if self.keys.len() >= MAX_FENCED {
            self.fence_group(group, until);
            return;
        }
        let at = self
            .keys
            .entry((group.clone(), key.into()))
            .or_insert(until);
        *at = (*at).max(until);
    }

    fn fence_group(&mut self, group: &Arc<str>, until: Instant) {
        let at = self.groups.entry(group.clone()).or_insert(until);
        *at = (*at).max(until);
    }

    /// True while `key` of `group` is fenced.
    pub(super) fn is_fenced(&self, now: Instant, group: &Arc<str>, key: &Arc<str>) -> bool {
        if self.groups.get(group).is_some_and(|t| *t > now) {
            return true;
        }
        self.keys
            .get(&(group.clone(), key.clone()))
            .is_some_and(|t| *t > now)
    }

    /// The bound holds.
    pub(super) fn validate(&self) -> Result<(), String> {
        if self.keys.len() > MAX_FENCED {
            return Err(format!(
                "{} keys fenced, over {MAX_FENCED}",
                self.keys.len()
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fence_lasts_until_its_time_and_covers_only_its_key() {
        let now = crate::testing::epoch();
        let (g, k, other): (Arc<str>, Arc<str>, Arc<str>) = ("g".into(), "k".into(), "o".into());
        let mut f = Fences::default();
        f.fence(now, &g, Some("k"), now + Duration::from_secs(6));
        assert!(f.is_fenced(now, &g, &k));
        assert!(!f.is_fenced(now, &g, &other));
        assert!(!f.is_fenced(now, &"h".into(), &k));
        assert!(!f.is_fenced(now + Duration::from_secs(6), &g, &k));
        // A purge fences every key of its group.
        f.fence(now, &g, None, now + Duration::from_secs(1));
        assert!(f.is_fenced(now, &g, &other));
    }

    #[test]
    fn past_the_bound_the_whole_group_is_fenced_and_memory_stays_bounded() {
        let now = crate::testing::epoch();
        let until = now + Duration::from_secs(6);
        let g: Arc<str> = "g".into();
        let mut f = Fences::default();
        for i in 0..MAX_FENCED * 3 {
            f.fence(now, &g, Some(&format!("k{i}")), until);
            f.validate().unwrap();
        }
        assert_eq!(f.keys.len(), MAX_FENCED);
        assert!(f.is_fenced(now, &g, &"never-written".into()));
        // Once the fences ran out, room is made again.
        let later = until + Duration::from_secs(1);
        f.fence(later, &g, Some("fresh"), later + Duration::from_secs(6));
        assert_eq!(f.keys.len(), 1);
        assert!(!f.is_fenced(later, &g, &"k0".into()));
    }
}
