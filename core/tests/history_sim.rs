//! The consistency model, checked on the simulator: random schedules of
//! gets, writes and origin changes on a few keys, with links cut, nodes
//! stopped and a node dropped from the peer lists, recorded as histories
//! and read by the same checker the chaos harness uses.

use groupcache_core::testing::history::schedule::{self, Step};
use groupcache_core::testing::history::{check, Rule};
use proptest::prelude::*;

fn step() -> impl Strategy<Value = Step> {
    let nk = || (0u8..3, 0u8..4);
    prop_oneof![
        4 => nk().prop_map(|(node, key)| Step::Get { node, key }),
        1 => nk().prop_map(|(node, key)| Step::Set { node, key }),
        2 => nk().prop_map(|(node, key)| Step::UpdateThenRemove { node, key }),
        1 => nk().prop_map(|(node, key)| Step::UpdateThenPurge { node, key }),
        3 => (0u16..3000).prop_map(|ms| Step::Advance { ms }),
        1 => (0u8..3).prop_map(|node| Step::Stop { node }),
        1 => (0u8..3, 0u8..3).prop_map(|(a, b)| Step::Cut { a, b }),
        1 => (0u8..3, 0u8..3).prop_map(|(from, to)| Step::CutOneWay { from, to }),
        1 => (0u8..3).prop_map(|node| Step::Leave { node }),
        1 => Just(Step::Heal),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn every_history_keeps_the_model(steps in prop::collection::vec(step(), 1..60)) {
        let h = schedule::run(&steps);
        let r = check(&h, &schedule::model());
        prop_assert!(r.is_clean(), "{}\n{}", r.explain(&h), r.table());
    }
}

/// The remove race the chaos harness found, as a schedule: with the fix
/// in place it is clean; the checker would name it `stale` otherwise.
#[test]
fn update_then_remove_beside_gets_through_every_node_is_clean() {
    let mut steps = Vec::new();
    for round in 0..20u8 {
        for node in 0..3 {
            steps.push(Step::Get {
                node,
                key: round % 4,
            });
        }
        steps.push(Step::UpdateThenRemove {
            node: round % 3,
            key: round % 4,
        });
        steps.push(Step::Advance { ms: 1 });
        for node in 0..3 {
            steps.push(Step::Get {
                node,
                key: round % 4,
            });
        }
        steps.push(Step::Advance { ms: 30 });
    }
    let h = schedule::run(&steps);
    let r = check(&h, &schedule::model());
    assert!(r.is_clean(), "{}", r.explain(&h));
    assert_eq!(r.of(Rule::Stale).count(), 0);
    assert!(r.stats.writes_complete >= 20, "{}", r.table());
}
