//! What the cluster scenarios share: a group, its values, and a cluster of
//! nodes formed at once.

// Each test file uses part of this.
#![allow(dead_code)]

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use groupcache_core::node::{Config, Error, GroupConfig, Node};
use groupcache_core::testing::{Sim, SimLoader};

/// Key versions at the origin.
#[derive(Clone, Default)]
pub struct Origin(Rc<RefCell<HashMap<String, u32>>>);

impl Origin {
    pub fn value(&self, key: &str) -> Bytes {
        let v = self.0.borrow().get(key).copied().unwrap_or(0);
        Bytes::from(format!("{key}@{v}"))
    }

    /// The application changes the key at the origin.
    pub fn bump(&self, key: &str) -> Bytes {
        *self.0.borrow_mut().entry(key.into()).or_default() += 1;
        self.value(key)
    }

    pub fn loader(&self) -> SimLoader {
        let o = self.clone();
        Box::new(move |_, key| Ok(o.value(key).into()))
    }
}

pub const GROUP: &str = "g";

pub fn value_of(key: &str) -> Bytes {
    Bytes::from(format!("value of {key}"))
}

pub fn ok_loader(_: usize) -> SimLoader {
    Box::new(|_, key| Ok(value_of(key).into()))
}

/// `n` nodes formed at once. Handoff (asking a key's previous owner after
/// a membership change) is off here and tested in `handoff.rs`, so these
/// scenarios count the requests of routing alone.
pub fn cluster(n: usize, ttl: Option<Duration>) -> Sim {
    Sim::new(
        n,
        |a: &str| {
            let mut c = Config::new(a);
            c.handoff_period = Duration::ZERO;
            c
        },
        |node: &mut Node| {
            let mut g = GroupConfig::new(GROUP, 1 << 20);
            g.ttl = ttl;
            node.add_group(g).unwrap();
        },
        ok_loader,
    )
}

/// Runs until `get` on node `i` finishes, within `limit`.
pub fn finish(
    sim: &mut Sim,
    i: usize,
    r: Result<Result<Bytes, Error>, groupcache_core::node::GetId>,
    limit: Duration,
) -> Result<Bytes, Error> {
    match r {
        Ok(r) => r,
        Err(id) => {
            assert!(
                sim.run_until(limit, |s| s.result(i, id).is_some()),
                "get on node {i} did not finish within {limit:?}"
            );
            sim.result(i, id).unwrap().clone()
        }
    }
}
