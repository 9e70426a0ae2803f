//! Claims: a miss of a key this node owns, loaded without the node
//! ([`GroupCaches::claim`]), and every way such a load goes back to the
//! node: others joined its flight, its loader must wait, a write or a
//! shutdown passed it over, a load waits for its slot. A fake clock
//! throughout.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use groupcache_core::node::{
    Claim, Claimed, Config, Error, Get, GroupCaches, GroupConfig, Landed, LoadError, LoadId,
    Loaded, Node, Output, WriteOp, Written,
};
use groupcache_core::testing::{drain, epoch};

const GROUP: &str = "g";

/// A node alone (it owns every key) with one group, set by `set`, and
/// that group's caches.
fn node_with(set: impl FnOnce(&mut GroupConfig, &mut Config)) -> (Node, Arc<GroupCaches>) {
    let mut cfg = Config::new("self");
    let mut g = GroupConfig::new(GROUP, 1 << 20);
    set(&mut g, &mut cfg);
    let mut node = Node::new(cfg);
    node.add_group(g).unwrap();
    let caches = node.caches(GROUP).unwrap();
    (node, caches)
}

fn node() -> (Node, Arc<GroupCaches>) {
    node_with(|_, _| {})
}

fn loaded(v: &str) -> Result<Loaded, LoadError> {
    Ok(Bytes::from(v.to_string()).into())
}

fn claimed(caches: &GroupCaches, key: &str, now: Instant) -> Claimed {
    match caches.claim(key, now) {
        Claim::Load(c) => c,
        other => panic!("{key}: {other:?}, not a claim"),
    }
}

/// Claims `key` and lands its loader's `result` at once, alone: the
/// answer, and whether the node must wake.
fn load_at_once(
    caches: &GroupCaches,
    key: &str,
    now: Instant,
    result: Result<Loaded, LoadError>,
) -> (Result<Bytes, Error>, bool) {
    let c = claimed(caches, key, now);
    match caches.land_claimed(key, c, now, result) {
        Landed::Done { result, wake } => (result, wake),
        other => panic!("{key}: {other:?}, not landed alone"),
    }
}

/// Lands claim `c` of `key`, which the shard leaves to the node.
fn land_through_node(
    node: &mut Node,
    caches: &GroupCaches,
    key: &str,
    c: Claimed,
    now: Instant,
    result: Result<Loaded, LoadError>,
) -> Get {
    match caches.land_claimed(key, c, now, result) {
        Landed::Node(c, result) => node.land_claimed(now, GROUP, key, c, result),
        other => panic!("{key}: {other:?}, not left to the node"),
    }
}

/// The loads among `out`.
fn loads(out: &[Output]) -> Vec<LoadId> {
    (out.iter())
        .filter_map(|o| match o {
            Output::Load { id, .. } => Some(*id),
            _ => None,
        })
        .collect()
}

/// The answers to gets among `out`.
fn done(out: &[Output]) -> Vec<(u64, Result<Bytes, Error>)> {
    (out.iter())
        .filter_map(|o| match o {
            Output::Done { get, result } => Some((get.0, result.clone())),
            _ => None,
        })
        .collect()
}

#[test]
fn a_claimed_miss_is_loaded_and_cached_without_the_node() {
    let (mut node, caches) = node();
    let now = epoch();
    let c = claimed(&caches, "k", now);
    node.validate().unwrap();
    assert!(!node.is_idle(), "the claim's flight is under way");
    let landed = caches.land_claimed("k", c, now, loaded("v"));
    let Landed::Done { result, wake } = landed else {
        panic!("{landed:?}");
    };
    assert_eq!(result, Ok(Bytes::from("v")));
    assert!(!wake, "no load waits and no TTL");
    assert!(drain(&mut node).is_empty(), "the node heard nothing");
    assert!(matches!(caches.claim("k", now), Claim::Hit(h) if h.value == "v"));
    let s = node.stats(GROUP).unwrap();
    assert_eq!((s.gets, s.cache_hits, s.loads, s.local_loads), (2, 1, 1, 1));
    node.validate().unwrap();
    assert!(node.is_idle());
}

#[test]
fn a_key_another_node_owns_or_an_open_handoff_window_goes_to_the_node() {
    let (mut node, caches) = node_with(|_, c| c.handoff_period = Duration::from_secs(10));
    let now = epoch();
    node.set_peers(now, ["self", "other"]);
    let theirs = (0..)
        .map(|i| format!("k{i}"))
        .find(|k| node.owner(k) == Some("other"));
    let ours = (0..)
        .map(|i| format!("k{i}"))
        .find(|k| node.owner(k) == Some("self"));
    let (theirs, ours) = (theirs.unwrap(), ours.unwrap());
    assert!(matches!(caches.claim(&theirs, now), Claim::Node));
    // The window the change opened holds every miss to the node.
    assert!(matches!(caches.claim(&ours, now), Claim::Node));
    let later = now + Duration::from_secs(10);
    let Get::Pending(_) = node.get_missed(later, GROUP, "x") else {
        panic!("a miss");
    };
    drain(&mut node);
    assert!(matches!(caches.claim(&theirs, later), Claim::Node));
    let c = claimed(&caches, &ours, later);
    assert!(matches!(
        caches.land_claimed(&ours, c, later, loaded("v")),
        Landed::Done { result: Ok(_), .. }
    ));
}

#[test]
fn a_get_that_finds_a_claimed_flight_joins_it_and_gets_its_value() {
    let (mut node, caches) = node();
    let now = epoch();
    let c = claimed(&caches, "k", now);
    assert!(
        matches!(caches.claim("k", now), Claim::Node),
        "one claim a key"
    );
    let Get::Pending(get) = node.get_missed(now, GROUP, "k") else {
        panic!("a miss");
    };
    assert!(
        loads(&drain(&mut node)).is_empty(),
        "joined, not loaded again"
    );
    node.validate().unwrap();
    let got = land_through_node(&mut node, &caches, "k", c, now, loaded("v"));
    assert_eq!(got, Get::Ready(Ok(Bytes::from("v"))));
    assert_eq!(done(&drain(&mut node)), vec![(get.0, Ok(Bytes::from("v")))]);
    assert_eq!(node.peek(GROUP, "k"), Some(Bytes::from("v")));
    let s = node.stats(GROUP).unwrap();
    assert_eq!((s.loads, s.loads_deduped, s.local_loads), (1, 1, 1));
    node.validate().unwrap();
    assert!(node.is_idle());
}

#[test]
fn a_claim_holds_a_load_slot_and_hands_it_to_the_load_that_waits() {
    let (mut node, caches) = node_with(|g, _| g.max_loads = 1);
    let now = epoch();
    let c = claimed(&caches, "a", now);
    let Get::Pending(get) = node.get_missed(now, GROUP, "b") else {
        panic!("a miss");
    };
    assert!(loads(&drain(&mut node)).is_empty(), "b waits for the slot");
    assert!(
        matches!(caches.claim("c", now), Claim::Node),
        "no jumping b"
    );
    node.validate().unwrap();
    let Landed::Done { wake, .. } = caches.land_claimed("a", c, now, loaded("va")) else {
        panic!("a's alone");
    };
    assert!(wake, "b waits");
    node.wake(now);
    let [id] = loads(&drain(&mut node))[..] else {
        unreachable!()
    };
    node.validate().unwrap();
    node.handle_load(now, id, loaded("vb"));
    assert_eq!(
        done(&drain(&mut node)),
        vec![(get.0, Ok(Bytes::from("vb")))]
    );
    assert!(load_at_once(&caches, "c", now, loaded("vc")).0.is_ok());
    node.validate().unwrap();
}

#[test]
fn a_loader_that_must_wait_is_adopted_and_times_out_as_a_load_of_the_nodes() {
    let (mut node, caches) = node();
    let now = epoch();
    let c = claimed(&caches, "k", now);
    let id = c.id;
    let Get::Pending(follower) = node.get_missed(now, GROUP, "k") else {
        panic!("a miss");
    };
    let get = node.adopt(now, GROUP, "k", c).expect("still the claim's");
    node.validate().unwrap();
    let timeout = GroupConfig::new(GROUP, 1).load_timeout;
    assert_eq!(node.poll_timeout(), Some(now + timeout));
    node.handle_timeout(now + timeout);
    let out = drain(&mut node);
    assert!(out.contains(&Output::CancelLoad { id }));
    let answers = done(&out);
    assert_eq!(answers.len(), 2);
    for (g, r) in answers {
        assert!([follower.0, get.0].contains(&g));
        assert!(matches!(r, Err(Error::Load(_))), "{r:?}");
    }
    // Reported late, it is ignored.
    node.handle_load(now + timeout, id, loaded("late"));
    assert!(drain(&mut node).is_empty());
    assert_eq!(node.peek(GROUP, "k"), None);
    assert_eq!(node.stats(GROUP).unwrap().load_timeouts, 1);
    node.validate().unwrap();
    assert!(node.is_idle());
}

#[test]
fn an_adopted_load_lands_as_any_of_the_nodes() {
    let (mut node, caches) = node_with(|g, _| g.max_loads = 1);
    let now = epoch();
    let c = claimed(&caches, "k", now);
    let id = c.id;
    let get = node.adopt(now, GROUP, "k", c).expect("still the claim's");
    let Get::Pending(_) = node.get_missed(now, GROUP, "other") else {
        panic!("a miss");
    };
    assert!(
        loads(&drain(&mut node)).is_empty(),
        "the adopted load holds the slot"
    );
    node.handle_load(now, id, loaded("v"));
    let out = drain(&mut node);
    assert_eq!(done(&out), vec![(get.0, Ok(Bytes::from("v")))]);
    assert_eq!(loads(&out).len(), 1, "the slot went to the load waiting");
    assert_eq!(node.peek(GROUP, "k"), Some(Bytes::from("v")));
    node.validate().unwrap();
}

#[test]
fn a_set_during_a_claim_wins_and_the_claimed_value_is_dropped() {
    let (mut node, caches) = node();
    let now = epoch();
    let c = claimed(&caches, "k", now);
    let set = WriteOp::Set {
        key: "k".into(),
        value: "new".into(),
        ttl: None,
    };
    assert!(matches!(node.write(now, GROUP, set), Written::Ready(Ok(_))));
    drain(&mut node);
    let got = land_through_node(&mut node, &caches, "k", c, now, loaded("old"));
    assert_eq!(got, Get::Ready(Ok(Bytes::from("new"))));
    assert_eq!(node.peek(GROUP, "k"), Some(Bytes::from("new")));
    node.validate().unwrap();
    assert!(node.is_idle());
}

#[test]
fn a_remove_during_a_claim_reloads_and_the_get_waits_for_the_reload() {
    let (mut node, caches) = node();
    let now = epoch();
    let c = claimed(&caches, "k", now);
    let remove = WriteOp::Remove { key: "k".into() };
    assert!(matches!(
        node.write(now, GROUP, remove),
        Written::Ready(Ok(_))
    ));
    let [reload] = loads(&drain(&mut node))[..] else {
        panic!("the remove starts the key's load again");
    };
    node.validate().unwrap();
    // Its loader came back with what the origin held before the remove.
    let Get::Pending(get) = land_through_node(&mut node, &caches, "k", c, now, loaded("old"))
    else {
        panic!("the get joins the reload");
    };
    node.handle_load(now, reload, loaded("fresh"));
    assert_eq!(
        done(&drain(&mut node)),
        vec![(get.0, Ok(Bytes::from("fresh")))]
    );
    assert_eq!(node.peek(GROUP, "k"), Some(Bytes::from("fresh")));
    node.validate().unwrap();
}

#[test]
fn a_claim_passed_over_is_not_adopted_and_gives_its_slot_back() {
    let (mut node, caches) = node_with(|g, _| g.max_loads = 1);
    let now = epoch();
    let c = claimed(&caches, "k", now);
    let set = WriteOp::Set {
        key: "k".into(),
        value: "new".into(),
        ttl: None,
    };
    assert!(matches!(node.write(now, GROUP, set), Written::Ready(Ok(_))));
    assert_eq!(node.adopt(now, GROUP, "k", c), None);
    node.validate().unwrap();
    assert!(load_at_once(&caches, "other", now, loaded("v")).0.is_ok());
    node.validate().unwrap();
}

#[test]
fn shutdown_closes_the_gate_and_an_abort_fails_the_claim() {
    let (mut node, caches) = node();
    let now = epoch();
    let c = claimed(&caches, "k", now);
    node.shutdown(now);
    assert!(matches!(caches.claim("j", now), Claim::Node));
    assert!(!node.is_idle(), "the claim is in flight");
    node.abort(now);
    let got = land_through_node(&mut node, &caches, "k", c, now, loaded("v"));
    assert_eq!(got, Get::Ready(Err(Error::Shutdown)));
    assert_eq!(node.peek(GROUP, "k"), None);
    node.validate().unwrap();
    assert!(node.is_idle());
}

#[test]
fn a_value_too_large_or_a_failure_is_answered_and_not_cached() {
    let (mut node, caches) = node_with(|g, _| g.max_value = 4);
    let now = epoch();
    let (result, _) = load_at_once(&caches, "big", now, loaded("too large"));
    assert!(matches!(result, Err(Error::Load(m)) if m.contains("g/big")));
    let nf = Err(LoadError::NotFound("no such".into()));
    let (result, _) = load_at_once(&caches, "missing", now, nf);
    assert!(matches!(result, Err(Error::NotFound(_))));
    let s = node.stats(GROUP).unwrap();
    assert_eq!(
        (s.values_too_large, s.local_load_errs, s.local_loads),
        (1, 2, 0)
    );
    assert!(
        matches!(caches.claim("big", now), Claim::Load(_)),
        "nothing cached"
    );
    node.abort(now);
}

#[test]
fn a_ttl_that_moves_the_sweep_earlier_wakes_the_node() {
    let (mut node, caches) = node_with(|g, _| g.ttl = Some(Duration::from_secs(5)));
    let now = epoch();
    assert_eq!(node.poll_timeout(), None);
    let (_, wake) = load_at_once(&caches, "k", now, loaded("v"));
    assert!(wake, "the first expiry");
    node.wake(now);
    assert_eq!(node.poll_timeout(), Some(now + Duration::from_secs(5)));
    let (_, wake) = load_at_once(&caches, "j", now, loaded("v"));
    assert!(!wake, "a later expiry moves nothing");
    let later = now + Duration::from_secs(5);
    node.handle_timeout(later);
    assert!(
        matches!(caches.claim("k", later), Claim::Load(_)),
        "expired"
    );
}

#[test]
fn a_claim_whose_key_moved_to_another_node_lands_through_the_node() {
    let (mut node, caches) = node_with(|_, c| c.handoff_period = Duration::ZERO);
    let now = epoch();
    let mut other = Node::new(Config::new("self"));
    other.set_peers(now, ["self", "other"]);
    let key = (0..)
        .map(|i| format!("k{i}"))
        .find(|k| other.owner(k) == Some("other"))
        .unwrap();
    // Alone, the node owns it and claims it; then the ring moves it.
    let c = claimed(&caches, &key, now);
    node.set_peers(now, ["self", "other"]);
    let got = land_through_node(&mut node, &caches, &key, c, now, loaded("v"));
    assert_eq!(got, Get::Ready(Ok(Bytes::from("v"))));
    // Kept, as any key loaded here that another node owns: for the hot TTL
    // at most.
    assert_eq!(node.peek(GROUP, &key), Some(Bytes::from("v")));
    let hot_ttl = GroupConfig::new(GROUP, 1).hot_ttl;
    assert_eq!(node.poll_timeout(), Some(now + hot_ttl));
    node.validate().unwrap();
}
