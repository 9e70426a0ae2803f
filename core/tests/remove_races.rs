//! A remove that raced a handoff, found by a cluster of real processes and
//! reproduced here deterministically (fake clock, in-memory links).
//!
//! While a handoff window is open (after start, or after any membership
//! change) the owner of a key it misses asks the key's previous owner
//! before the origin. That node may still hold a copy of the key that a
//! write under way has not reached yet: the write goes to the owner first,
//! and only then to the others. Taking that copy put the old value back
//! into the owner's main cache, after the remove had returned with every
//! node reached, for the group's whole TTL.

mod common;

use std::time::Duration;

use common::{Origin, GROUP};
use groupcache_core::node::{Config, GroupConfig, Node, WriteOp, WriteReport};
use groupcache_core::ring::Ring;
use groupcache_core::testing::Sim;

/// Three nodes with handoff on (the default), so the window of their
/// start is open, over a versioned origin.
fn cluster() -> (Sim, Origin) {
    let origin = Origin::default();
    let o = origin.clone();
    let sim = Sim::new(
        3,
        |a: &str| Config::new(a),
        |node: &mut Node| node.add_group(GroupConfig::new(GROUP, 1 << 20)).unwrap(),
        move |_| o.loader(),
    );
    (sim, origin)
}

/// A key node 0 owns, whose owner in a ring without node 0 (the one node
/// 0's start window asks) is `previous`.
fn key_handed_off_from(sim: &Sim, previous: usize) -> String {
    let others = [sim.nodes[1].addr.clone(), sim.nodes[2].addr.clone()];
    let without = Ring::with_peers(Config::new("x").replicas, &others);
    (0..)
        .map(|i| format!("key-{i}"))
        .find(|k| {
            sim.nodes[0].node.owner(k) == Some(sim.nodes[0].addr.as_str())
                && without.owner(k) == Some(sim.nodes[previous].addr.as_str())
        })
        .expect("some key")
}

/// The write enters through `via`; node 0 (the owner) is asked for the key
/// right after it applied the write, while the write is still on its way
/// to node `previous`, which holds a copy.
fn remove_racing_a_handoff(via: usize, previous: usize) {
    let (mut sim, origin) = cluster();
    let key = key_handed_off_from(&sim, previous);
    let old = origin.value(&key);
    for i in 0..3 {
        assert_eq!(sim.get_and_wait(i, GROUP, &key), Ok(old.clone()));
    }
    assert_eq!(
        sim.nodes[previous].node.peek(GROUP, &key),
        Some(old.clone())
    );

    // The application updates its database, then removes the key.
    let new = origin.bump(&key);
    let write = sim.write(via, GROUP, WriteOp::remove(&key)).unwrap_err();
    assert!(
        sim.run_until(Duration::from_secs(1), |s| s.nodes[0]
            .node
            .peek(GROUP, &key)
            .is_none()),
        "the owner applies the remove"
    );
    assert_eq!(
        sim.nodes[previous].node.peek(GROUP, &key),
        Some(old.clone()),
        "the write has not reached node {previous} yet: the race is set up"
    );
    // A get through the owner now.
    let get = sim.get(0, GROUP, &key).unwrap_err();
    assert!(sim.run_until(Duration::from_secs(60), |s| {
        s.writes.contains_key(&(via, write)) && s.result(0, get).is_some()
    }));
    assert_eq!(sim.writes[&(via, write)], Ok(WriteReport::default()));
    // The get ran beside the remove: either value is allowed for it.
    let raced = sim.result(0, get).unwrap().clone().unwrap();
    assert!(raced == old || raced == new, "{raced:?}");

    // The remove returned with every node reached: no node returns the
    // old value from now on.
    for i in [0, 1, 2, 0, 1, 2] {
        assert_eq!(
            sim.get_and_wait(i, GROUP, &key),
            Ok(new.clone()),
            "through node {i}"
        );
    }
}

#[test]
fn a_remove_through_a_third_node_is_not_undone_by_a_handoff() {
    remove_racing_a_handoff(1, 2);
}

#[test]
fn a_remove_through_the_previous_owner_is_not_undone_by_a_handoff() {
    remove_racing_a_handoff(2, 2);
}

#[test]
fn a_remove_through_the_owner_is_not_undone_by_a_handoff() {
    remove_racing_a_handoff(0, 2);
}

/// Found by the history property test: a node stopped (its incoming
/// bytes wait) while it asks an owner for a key; once it runs again, a
/// purge through it restarts that flight, whose new request could reach
/// the owner before the purge did and bring the old value back as a hot
/// copy. The second round of the purge removes it.
#[test]
fn a_purge_is_not_undone_by_a_flight_it_restarted() {
    use groupcache_core::testing::history::schedule::{self, Step};
    use groupcache_core::testing::history::{check, Rule};
    let steps = [
        Step::Stop { node: 0 },
        Step::Get { node: 0, key: 0 },
        Step::Get { node: 0, key: 3 },
        Step::Advance { ms: 257 },
        Step::Heal,
        Step::UpdateThenPurge { node: 0, key: 3 },
        Step::Advance { ms: 6 },
        Step::Get { node: 0, key: 3 },
    ];
    let h = schedule::run(&steps);
    let r = check(&h, &schedule::model());
    assert_eq!(r.of(Rule::Stale).count(), 0, "{}", r.explain(&h));
    assert!(r.is_clean(), "{}", r.explain(&h));
}
