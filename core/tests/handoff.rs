//! Warm handoff, deterministic: after a membership change a key's new owner
//! asks its previous owner before the origin. Fake clock, in-memory links.

mod common;

use std::time::Duration;

use common::{ok_loader as loader, value_of, GROUP};
use groupcache_core::node::{Config, Get, GroupConfig, Node, Output};
use groupcache_core::ring::Ring;
use groupcache_core::testing::{drain, probe_answered_as_go, Fault, Sim};

/// Keys of the scale-out scenario. The simulation checks every node's
/// invariants after each step, which costs time per entry: the 10,000-key
/// figure is measured over TCP (the `scale_out` example of groupcache-tokio).
const KEYS: usize = 1_000;

fn config(handoff: bool) -> impl Fn(&str) -> Config {
    move |a: &str| {
        let mut c = Config::new(a);
        if !handoff {
            c.handoff_period = Duration::ZERO;
        }
        c
    }
}

fn setup(node: &mut Node) {
    node.add_group(GroupConfig::new(GROUP, 64 << 20)).unwrap();
}

/// Three nodes that have served `keys` for longer than the handoff period
/// (so the windows of their own start are closed), and a fourth that has
/// just started and is not a member yet.
fn warm_three_and_a_fourth(handoff: bool, keys: &[String]) -> Sim {
    let mut sim = Sim::new(3, config(handoff), setup, loader);
    for (n, k) in keys.iter().enumerate() {
        assert_eq!(sim.get_and_wait(n % 3, GROUP, k), Ok(value_of(k)));
    }
    sim.run_for(Duration::from_secs(61));
    sim.add_member(config(handoff), setup, loader(3));
    sim
}

/// Origin loads when every key is asked again, through every node in turn,
/// after the cluster grew from three nodes to four; and how many keys moved.
fn reloads_after_scale_out(handoff: bool) -> (usize, usize) {
    let keys: Vec<String> = (0..KEYS).map(|i| format!("k{i}")).collect();
    let mut sim = warm_three_and_a_fourth(handoff, &keys);
    let before: Vec<String> = keys
        .iter()
        .map(|k| sim.nodes[0].node.owner(k).unwrap().to_string())
        .collect();
    assert_eq!(sim.load_calls.len(), KEYS, "each key loaded once to start");
    sim.set_members(&[0, 1, 2, 3]);
    let moved = keys
        .iter()
        .zip(&before)
        .filter(|(k, b)| sim.nodes[0].node.owner(k) != Some(b.as_str()))
        .count();
    for (n, k) in keys.iter().enumerate() {
        assert_eq!(sim.get_and_wait((n + 1) % 4, GROUP, k), Ok(value_of(k)));
    }
    (sim.load_calls.len() - KEYS, moved)
}

#[test]
fn scale_out_from_three_to_four_nodes_reloads_almost_nothing() {
    let (with, moved) = reloads_after_scale_out(true);
    let (without, moved_too) = reloads_after_scale_out(false);
    assert_eq!(moved, moved_too);
    println!(
        "{KEYS} keys, {moved} moved to the new node: origin loads {with} with handoff, \
         {without} without"
    );
    // Every moved key asked through a node other than its old owner reloads
    // without handoff; with it, none does.
    assert!(moved > KEYS / 5, "{moved} keys moved");
    assert!(without > moved / 2, "{without} reloads without handoff");
    assert!(with * 100 < moved, "{with} reloads of {moved} moved keys");
}

#[test]
fn a_previous_owner_that_is_gone_costs_one_handoff_timeout_then_nothing() {
    let keys: Vec<String> = (0..300).map(|i| format!("k{i}")).collect();
    let mut sim = Sim::new(3, config(true), setup, loader);
    for (n, k) in keys.iter().enumerate() {
        sim.get_and_wait(n % 3, GROUP, k).unwrap();
    }
    sim.run_for(Duration::from_secs(61));
    // Node 2 dies and leaves the list: its keys move to nodes 0 and 1,
    // whose previous ring still names it.
    sim.faults.insert(2, Fault::Blackhole);
    sim.set_members(&[0, 1]);
    let three = Ring::with_peers(50, ["node-0:9000", "node-1:9000", "node-2:9000"]);
    let moved: Vec<&String> = keys
        .iter()
        .filter(|k| {
            three.owner(k) == Some("node-2:9000")
                && sim.nodes[0].node.owner(k) == Some("node-0:9000")
        })
        .collect();
    assert!(moved.len() >= 2);
    let timeout = Config::new("x").handoff_timeout;
    let misses = sim.nodes[0].node.stats(GROUP).unwrap().handoff_misses;
    let start = sim.now;
    assert_eq!(sim.get_and_wait(0, GROUP, moved[0]), Ok(value_of(moved[0])));
    let waited = sim.now - start;
    assert!(
        waited >= timeout && waited < timeout + Duration::from_millis(100),
        "waited {waited:?}"
    );
    // Its probe times out at the connect timeout and backs it off: no
    // later key waits on it.
    sim.run_for(Duration::from_secs(2));
    let start = sim.now;
    assert_eq!(sim.get_and_wait(0, GROUP, moved[1]), Ok(value_of(moved[1])));
    assert!(
        sim.now - start < Duration::from_millis(100),
        "waited {:?}",
        sim.now - start
    );
    let s = sim.nodes[0].node.stats(GROUP).unwrap();
    assert_eq!((s.handoff_hits, s.handoff_misses), (0, misses + 1));
}

#[test]
fn concurrent_gets_of_a_moved_key_make_one_peek_and_no_load() {
    let keys: Vec<String> = (0..300).map(|i| format!("k{i}")).collect();
    let mut sim = warm_three_and_a_fourth(true, &keys);
    sim.set_members(&[0, 1, 2, 3]);
    let key = keys
        .iter()
        .find(|k| sim.nodes[0].node.owner(k) == Some("node-3:9000"))
        .expect("a key moved")
        .clone();
    let loads = sim.load_calls.len();
    // Every node asks at once, several times each.
    let mut pending = Vec::new();
    for i in 0..4 {
        for _ in 0..5 {
            match sim.get(i, GROUP, &key) {
                Ok(r) => assert_eq!(r, Ok(value_of(&key))),
                Err(id) => pending.push((i, id)),
            }
        }
    }
    assert!(sim.run_until(Duration::from_secs(5), |s| pending
        .iter()
        .all(|&(i, id)| s.result(i, id).is_some())));
    for &(i, id) in &pending {
        assert_eq!(sim.result(i, id), Some(&Ok(value_of(&key))));
    }
    assert_eq!(sim.load_calls.len(), loads, "no origin load");
    let s = sim.nodes[3].node.stats(GROUP).unwrap();
    assert_eq!(s.handoff_hits, 1);
    // The new owner now holds it in its main cache.
    assert_eq!(sim.nodes[3].node.peek(GROUP, &key), Some(value_of(&key)));
}

#[test]
fn a_peek_never_loads_at_the_previous_owner_and_the_window_closes() {
    // Node 0 evicts nothing but never loaded the keys node 3 will own:
    // the cluster is fresh, so the peeks miss and the new owner loads.
    let mut sim = Sim::new(3, config(true), setup, loader);
    sim.add_member(config(true), setup, loader(3));
    sim.set_members(&[0, 1, 2, 3]);
    let keys: Vec<String> = (0..100)
        .map(|i| format!("k{i}"))
        .filter(|k| sim.nodes[0].node.owner(k) == Some("node-3:9000"))
        .collect();
    assert!(!keys.is_empty());
    for k in &keys {
        assert_eq!(sim.get_and_wait(3, GROUP, k), Ok(value_of(k)));
    }
    assert!(
        sim.load_calls.iter().all(|(i, _, _)| *i == 3),
        "a peek made a previous owner load: {:?}",
        sim.load_calls
    );
    assert_eq!(sim.load_calls.len(), keys.len());
    let s = sim.nodes[3].node.stats(GROUP).unwrap();
    assert_eq!(s.handoff_misses as usize, keys.len());
    // After the window no peek is sent: a removed key loads at once.
    sim.run_for(Config::new("x").handoff_period);
    let k = &keys[0];
    sim.write_and_wait(3, GROUP, groupcache_core::node::WriteOp::remove(k.as_str()))
        .unwrap();
    let sent = sim.sent_bytes.clone();
    assert_eq!(sim.get_and_wait(3, GROUP, k), Ok(value_of(k)));
    assert_eq!(sim.sent_bytes, sent, "no request left node 3");
    assert_eq!(
        sim.nodes[3].node.stats(GROUP).unwrap().handoff_misses,
        s.handoff_misses
    );
}

#[test]
fn a_go_previous_owner_only_ever_sees_the_probe() {
    // A Go node reads a peek as a get and would load the key: a new owner
    // sends it the empty probe only, and loads once the answer shows it
    // does not understand the extensions.
    let now = groupcache_core::testing::epoch();
    let (me, go) = ("rust:1", "go:1");
    let mut node = Node::new(Config::new(me));
    setup(&mut node);
    // A node that starts takes the others as the previous ring: every key
    // it owns was Go's.
    node.set_peers(now, [me, go]);
    let key = (0..)
        .map(|i| format!("k{i}"))
        .find(|k| node.owner(k) == Some(me))
        .unwrap();
    assert!(matches!(node.get(now, GROUP, &key), Get::Pending(_)));
    let out = drain(&mut node);
    let (_, out) = probe_answered_as_go(&mut node, now, &out);
    assert!(
        out.iter()
            .any(|o| matches!(o, Output::Load { key: k, .. } if **k == *key)),
        "{out:?}"
    );
    // The next key it owns is loaded at once: the peer is known now.
    let other = (0..)
        .map(|i| format!("k{i}"))
        .filter(|k| node.owner(k) == Some(me))
        .nth(1)
        .unwrap();
    assert!(matches!(node.get(now, GROUP, &other), Get::Pending(_)));
    let out = drain(&mut node);
    assert!(matches!(&out[..], [Output::Load { .. }]), "{out:?}");
    assert_eq!(node.stats(GROUP).unwrap().handoff_misses, 1);
}

/// Keys `k0..n`, each asked once through the nodes in `via`, in turn.
fn ask_all(sim: &mut Sim, keys: &[String], via: &[usize]) {
    for (n, k) in keys.iter().enumerate() {
        let i = via[n % via.len()];
        assert_eq!(
            sim.get_and_wait(i, GROUP, k),
            Ok(value_of(k)),
            "{k} via {i}"
        );
    }
}

fn keys(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}{i}")).collect()
}

/// Origin loads since `since` of keys now owned by node `i`.
fn loads_of_keys_owned_by(sim: &Sim, since: usize, i: usize) -> Vec<String> {
    let addr = sim.nodes[i].addr.clone();
    sim.load_calls[since..]
        .iter()
        .filter(|(_, _, k)| sim.nodes[0].node.owner(k) == Some(addr.as_str()))
        .map(|(_, _, k)| k.clone())
        .collect()
}

/// Three members and a fourth node that runs outside the list (a pod that
/// is ready before DNS lists it): it forwards to the three, and gets go
/// through every node, its own included, for longer than a handoff window.
fn three_and_one_outside(keys: &[String]) -> Sim {
    let mut sim = Sim::new(3, config(true), setup, loader);
    sim.add_member(config(true), setup, loader(3));
    sim.set_peers_of(3, &[0, 1, 2]);
    ask_all(&mut sim, keys, &[0, 1, 2, 3]);
    assert!(
        sim.load_calls.iter().all(|(i, _, _)| *i < 3),
        "the node outside loads nothing"
    );
    sim.run_for(Duration::from_secs(61));
    sim
}

#[test]
fn a_node_that_served_outside_the_list_warms_its_moved_keys_by_handoff() {
    let keys = keys("k", 400);
    let mut sim = three_and_one_outside(&keys);
    let loads = sim.load_calls.len();
    sim.set_members(&[0, 1, 2, 3]);
    let moved = keys
        .iter()
        .filter(|k| sim.nodes[0].node.owner(k) == Some("node-3:9000"))
        .count();
    assert!(moved > 40, "{moved} keys moved");
    ask_all(&mut sim, &keys, &[1, 2, 3, 0]);
    assert_eq!(sim.load_calls[loads..], [], "origin loads after the change");
    // The moved keys it asked for as a forwarder may still be hot copies;
    // the others came from their previous owners.
    let hits = sim.nodes[3].node.stats(GROUP).unwrap().handoff_hits as usize;
    assert!(hits >= moved / 2 && hits <= moved, "{hits} of {moved}");
}

/// The list reaches the nodes one by one (each resolves DNS on its own
/// timer) while gets run: whichever learns first, no moved key is loaded
/// from the origin again.
#[test]
fn a_change_that_reaches_the_nodes_one_by_one_reloads_no_moved_key() {
    for order in [[0, 1, 2, 3], [3, 0, 1, 2], [1, 3, 2, 0]] {
        let keys = keys("k", 300);
        let mut sim = three_and_one_outside(&keys);
        let loads = sim.load_calls.len();
        for (step, &i) in order.iter().enumerate() {
            sim.set_peers_of(i, &[0, 1, 2, 3]);
            // Every key through every node while the rings disagree.
            let via: Vec<usize> = (0..4).map(|v| (v + step) % 4).collect();
            ask_all(&mut sim, &keys, &via);
            sim.run_for(Duration::from_secs(1));
        }
        assert_eq!(
            loads_of_keys_owned_by(&sim, loads, 3),
            Vec::<String>::new(),
            "order {order:?}"
        );
        assert_eq!(sim.load_calls.len(), loads, "order {order:?}");
    }
}

#[test]
fn a_node_dropped_from_the_list_and_added_back_is_warmed_by_handoff() {
    let first = keys("k", 300);
    let mut sim = Sim::new(4, config(true), setup, loader);
    ask_all(&mut sim, &first, &[0, 1, 2, 3]);
    sim.run_for(Duration::from_secs(61));
    // Dropped from the answer while it runs: it keeps serving, forwarding
    // to the three; its keys are handed to the three, and new keys arrive.
    sim.set_members(&[0, 1, 2]);
    sim.set_peers_of(3, &[0, 1, 2]);
    let loads = sim.load_calls.len();
    ask_all(&mut sim, &first, &[3, 2, 1, 0]);
    assert_eq!(sim.load_calls.len(), loads, "handed to the three");
    let second = keys("n", 300);
    ask_all(&mut sim, &second, &[0, 1, 2, 3]);
    sim.run_for(Duration::from_secs(61));
    // Back in the answer, long after the window of its leaving closed.
    let loads = sim.load_calls.len();
    sim.set_members(&[0, 1, 2, 3]);
    let all: Vec<String> = first.iter().chain(&second).cloned().collect();
    ask_all(&mut sim, &all, &[1, 2, 3, 0]);
    assert_eq!(
        sim.load_calls[loads..],
        [],
        "origin loads after coming back"
    );
}

#[test]
fn several_nodes_added_in_one_change_are_each_warmed_by_handoff() {
    let keys = keys("k", 400);
    let mut sim = Sim::new(3, config(true), setup, loader);
    for i in [3, 4] {
        sim.add_member(config(true), setup, loader(i));
        sim.set_peers_of(i, &[0, 1, 2]);
    }
    ask_all(&mut sim, &keys, &[0, 1, 2, 3, 4]);
    sim.run_for(Duration::from_secs(61));
    let loads = sim.load_calls.len();
    sim.set_members(&[0, 1, 2, 3, 4]);
    let moved = |sim: &Sim, i: usize| {
        keys.iter()
            .filter(|k| sim.nodes[0].node.owner(k) == Some(sim.nodes[i].addr.as_str()))
            .count()
    };
    assert!(moved(&sim, 3) > 20 && moved(&sim, 4) > 20);
    ask_all(&mut sim, &keys, &[4, 3, 2, 1, 0]);
    assert_eq!(sim.load_calls[loads..], [], "origin loads after the change");
}

#[test]
fn a_node_that_ran_alone_until_the_list_came_is_warmed_by_handoff() {
    // Discovery had not answered when it started: it served alone, on a
    // ring of itself only, which says nothing of where the keys were.
    let keys = keys("k", 300);
    let mut sim = Sim::new(3, config(true), setup, loader);
    sim.add_member(config(true), setup, loader(3));
    sim.set_peers_of(3, &[3]);
    ask_all(&mut sim, &keys, &[0, 1, 2]);
    sim.run_for(Duration::from_secs(61));
    let loads = sim.load_calls.len();
    sim.set_members(&[0, 1, 2, 3]);
    ask_all(&mut sim, &keys, &[3, 2, 1, 0]);
    assert_eq!(sim.load_calls[loads..], [], "origin loads after the change");
}

#[test]
fn peeks_never_wait_behind_gets_the_peer_is_loading() {
    // Two nodes that start together each take the other as the previous
    // ring. Cold keys asked through both at once make each node forward
    // gets to the other while it peeks at the other: were a peek queued on
    // a connection behind a get, each node's answer would wait on the
    // other's, until the handoff timeout broke the cycle.
    let mut sim = Sim::new(2, config(true), setup, loader);
    let keys = keys("k", 200);
    let start = sim.now;
    let mut pending = Vec::new();
    for k in &keys {
        for i in 0..2 {
            match sim.get(i, GROUP, k) {
                Ok(r) => panic!("{k} was cached: {r:?}"),
                Err(id) => pending.push((i, id, k)),
            }
        }
    }
    assert!(sim.run_until(Duration::from_secs(10), |s| pending
        .iter()
        .all(|&(i, id, _)| s.result(i, id).is_some())));
    for &(i, id, k) in &pending {
        assert_eq!(sim.result(i, id), Some(&Ok(value_of(k))));
    }
    assert_eq!(sim.load_calls.len(), keys.len(), "each key loaded once");
    // Every peek was answered (a miss: the cluster is cold), none waited
    // out its timeout.
    let timeout = Config::new("x").handoff_timeout;
    assert!(sim.now - start < timeout, "took {:?}", sim.now - start);
    let misses: u64 = (0..2)
        .map(|i| sim.nodes[i].node.stats(GROUP).unwrap().handoff_misses)
        .sum();
    assert_eq!(misses as usize, keys.len());
}
