//! The history checker is tested: a crafted history that breaks each rule
//! of the consistency model is caught, and one that keeps them is not.

use std::time::Duration;

use groupcache_core::testing::history::{
    check, Exit, History, Kind, Model, OpId, Outcome, Report, Rule, Window,
};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn get(key: &str) -> Kind {
    Kind::Get { key: key.into() }
}

fn remove(key: &str) -> Kind {
    Kind::Remove { key: key.into() }
}

fn set(key: &str, value: &str) -> Kind {
    Kind::Set {
        key: key.into(),
        value: value.to_string().into(),
    }
}

/// One key `k` that the origin holds as `k@0` from the start.
fn start() -> History {
    let mut h = History::default();
    h.origin(ms(0), "k", "k@0");
    h
}

fn op(h: &mut History, node: usize, from: u64, to: u64, kind: Kind, outcome: Outcome) -> OpId {
    let id = h.invoke(node, node, ms(from), kind);
    h.complete(id, ms(to), outcome);
    id
}

fn value(v: &str) -> Outcome {
    Outcome::Value(v.to_string().into())
}

fn reached(n: usize) -> Outcome {
    Outcome::Written { not_reached: n }
}

/// The pattern applications use: change the origin, then remove the key.
fn update_then_remove(h: &mut History, at: u64, version: u32, not_reached: usize) -> OpId {
    op(
        h,
        9,
        at,
        at + 1,
        Kind::origin("k", format!("k@{version}")),
        Outcome::Done,
    );
    op(h, 9, at + 2, at + 10, remove("k"), reached(not_reached))
}

fn rules(r: &Report) -> Vec<Rule> {
    r.violations.iter().map(|v| v.rule).collect()
}

fn model() -> Model {
    let mut m = Model::default();
    m.hot_ttl = ms(1000);
    m.deadline = ms(500);
    m
}

#[test]
fn a_history_that_keeps_every_promise_is_clean() {
    let mut h = start();
    op(&mut h, 0, 1, 2, get("k"), value("k@0"));
    let w = update_then_remove(&mut h, 10, 1, 0);
    // Beside the remove, either value may be seen.
    op(&mut h, 1, 15, 16, get("k"), value("k@0"));
    op(&mut h, 1, 19, 25, get("k"), value("k@1"));
    op(&mut h, 0, 30, 31, get("k"), value("k@1"));
    op(&mut h, 0, 40, 45, set("k", "s1"), reached(0));
    op(&mut h, 1, 50, 51, get("k"), value("s1"));
    h.loads = vec![(ms(1), "k".into()), (ms(21), "k".into())];
    let r = check(&h, &model());
    assert!(r.is_clean(), "{}", r.explain(&h));
    assert_eq!(r.stats.writes_complete, 2);
    assert_eq!(r.stats.gets_ok, 5);
    let _ = w;
}

#[test]
fn the_old_value_after_a_complete_remove_is_stale() {
    let mut h = start();
    let w = update_then_remove(&mut h, 10, 1, 0);
    let g = op(&mut h, 1, 30, 31, get("k"), value("k@0"));
    let r = check(&h, &model());
    assert_eq!(rules(&r), [Rule::Stale], "{}", r.explain(&h));
    // The violation shows the value's write, the remove and the get.
    assert!(r.violations[0].ops.contains(&w) && r.violations[0].ops.contains(&g));
    assert!(r.explain(&h).contains("get k -> k@0"), "{}", r.explain(&h));
}

#[test]
fn a_remove_that_missed_a_node_allows_the_old_value_for_hot_ttl_only() {
    let mut h = start();
    update_then_remove(&mut h, 10, 1, 1);
    op(&mut h, 1, 500, 501, get("k"), value("k@0"));
    assert!(check(&h, &model()).is_clean());
    op(&mut h, 1, 1100, 1101, get("k"), value("k@0"));
    assert_eq!(rules(&check(&h, &model())), [Rule::Stale]);
}

#[test]
fn a_set_replaces_an_earlier_set_and_a_purge_replaces_everything() {
    let mut h = start();
    op(&mut h, 0, 1, 5, set("k", "s1"), reached(0));
    op(&mut h, 1, 6, 9, set("k", "s2"), reached(0));
    op(&mut h, 2, 10, 11, get("k"), value("s1"));
    assert_eq!(rules(&check(&h, &model())), [Rule::Stale]);

    let mut h = start();
    op(&mut h, 0, 1, 2, Kind::origin("k", "k@1"), Outcome::Done);
    op(&mut h, 0, 3, 6, Kind::Purge, reached(0));
    op(&mut h, 2, 10, 11, get("k"), value("k@0"));
    assert_eq!(rules(&check(&h, &model())), [Rule::Stale]);
}

#[test]
fn a_purge_that_missed_a_node_promises_only_the_ttl() {
    let mut h = start();
    op(&mut h, 0, 1, 2, Kind::origin("k", "k@1"), Outcome::Done);
    op(&mut h, 0, 3, 6, Kind::Purge, reached(1));
    op(&mut h, 2, 5000, 5001, get("k"), value("k@0"));
    let mut m = model();
    assert!(check(&h, &m).is_clean());
    m.ttl = Some(ms(1000));
    assert_eq!(rules(&check(&h, &m)), [Rule::Stale]);
}

#[test]
fn a_write_that_overlaps_a_membership_change_promises_only_the_ttl() {
    let mut h = start();
    update_then_remove(&mut h, 10, 1, 0);
    op(&mut h, 1, 30, 31, get("k"), value("k@0"));
    h.membership.push(Window {
        from: ms(5),
        until: ms(15),
    });
    let mut m = model();
    assert!(check(&h, &m).is_clean());
    // The TTL still bounds it.
    m.ttl = Some(ms(100));
    op(&mut h, 1, 200, 201, get("k"), value("k@0"));
    assert_eq!(rules(&check(&h, &m)), [Rule::Stale]);
}

#[test]
fn values_nobody_wrote_or_wrote_later_and_a_missing_key_are_caught() {
    let mut h = start();
    op(&mut h, 0, 1, 2, get("k"), value("k@7"));
    op(&mut h, 0, 3, 4, get("k"), value("k@1"));
    op(&mut h, 0, 10, 11, Kind::origin("k", "k@1"), Outcome::Done);
    op(&mut h, 0, 12, 13, get("k"), Outcome::NotFound);
    assert_eq!(
        rules(&check(&h, &model())),
        [Rule::UnknownValue, Rule::UnknownValue, Rule::Missing]
    );
}

#[test]
fn slow_and_unfinished_operations_are_caught() {
    let mut h = start();
    op(&mut h, 0, 1, 900, get("k"), value("k@0"));
    h.invoke(0, 0, ms(950), get("k"));
    let r = check(&h, &model());
    assert_eq!(
        rules(&r),
        [Rule::TooSlow, Rule::TooSlow],
        "{}",
        r.explain(&h)
    );
}

#[test]
fn failures_count_only_outside_faults_and_after_recovery() {
    let mut h = start();
    let failed = || Outcome::Failed("timed out".into());
    op(&mut h, 0, 10, 20, get("k"), failed());
    h.faults.push(Window {
        from: ms(5),
        until: ms(30),
    });
    h.healed_at = Some(ms(30));
    let m = model();
    assert!(check(&h, &m).is_clean());
    op(&mut h, 0, 100, 110, get("k"), failed());
    assert_eq!(rules(&check(&h, &m)), [Rule::Unavailable]);
    op(&mut h, 0, 30 + 10_000, 30 + 10_001, get("k"), failed());
    assert_eq!(
        rules(&check(&h, &m)),
        [Rule::Unavailable, Rule::NotRecovered]
    );
}

#[test]
fn extra_origin_loads_in_a_fault_free_window_are_caught() {
    let mut h = start();
    h.loads = vec![(ms(1), "k".into()), (ms(2), "k".into())];
    assert_eq!(rules(&check(&h, &model())), [Rule::ExtraLoads]);
    // A remove allows a load to start again, and one more after it.
    update_then_remove(&mut h, 1, 1, 0);
    h.loads.push((ms(20), "k".into()));
    assert!(check(&h, &model()).is_clean());
    // Under a fault, loads are reported, not judged.
    let mut h = start();
    h.loads = vec![(ms(10), "k".into()), (ms(11), "k".into())];
    h.faults.push(Window {
        from: ms(5),
        until: ms(30),
    });
    let r = check(&h, &model());
    assert!(r.is_clean());
    assert_eq!(r.stats.max_loads_per_key, 2);
}

#[test]
fn an_exit_without_the_nemesis_and_memory_over_its_bound_are_caught() {
    let mut h = start();
    h.exits.push(Exit {
        node: 1,
        at: ms(5),
        killed: true,
        status: "signal 9".into(),
    });
    let mut m = model();
    m.rss_bound = Some(1 << 20);
    h.rss.push((ms(5), 0, 1 << 19));
    assert!(check(&h, &m).is_clean());
    h.exits.push(Exit {
        node: 2,
        at: ms(6),
        killed: false,
        status: "exit 101".into(),
    });
    h.rss.push((ms(7), 0, 2 << 20));
    assert_eq!(rules(&check(&h, &m)), [Rule::UnexpectedExit, Rule::Memory]);
}

#[test]
fn the_report_has_a_table_and_json_naming_each_violation() {
    let mut h = start();
    update_then_remove(&mut h, 10, 1, 0);
    op(&mut h, 1, 30, 31, get("k"), value("k@0"));
    let r = check(&h, &model());
    let json = r.to_json(&h);
    assert_eq!(json["violations"][0]["rule"], "stale");
    assert_eq!(json["violations"][0]["ops"].as_array().unwrap().len(), 3);
    assert!(r.table().contains("| violations"));
}
