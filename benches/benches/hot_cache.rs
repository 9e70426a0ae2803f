//! Peer round trips through three nodes of the deterministic simulator:
//! gets of Zipf-distributed keys, each through a node picked at random,
//! where a key another node owns costs a round trip unless the node's hot
//! cache (copies of peer-owned keys) holds it. The hot share holds 1 % of
//! the keys; the main caches hold every key, so the round trips count the
//! hot cache's misses alone. Not a timing benchmark: it prints a table.
//!
//! Run: `cargo bench -p groupcache-benches --bench hot_cache`

#![allow(missing_docs)]

use std::time::Duration;

use bytes::Bytes;
use groupcache_benches::{keys, zipf};
use groupcache_core::cache::ENTRY_OVERHEAD;
use groupcache_core::node::{Config, GroupConfig, Node};
use groupcache_core::testing::{Sim, SimLoader};

const KEYS: usize = 20_000;
const GETS: usize = 60_000;
const VALUE_LEN: usize = 32;
const KEY_LEN: usize = 12;
const GROUP: &str = "g";

fn loader(_: usize) -> SimLoader {
    Box::new(|_, _| Ok(Bytes::from(vec![b'v'; VALUE_LEN]).into()))
}

/// Peer round trips over the second half of `GETS` gets (the first warms
/// the caches); the share of gets they are; and the fewest a hot cache of
/// that size could cost by keeping, on each node, the peer-owned keys most
/// asked through it in that half (the static optimum, which no cache
/// beats on a trace whose popularity does not change).
fn round_trips(exponent: f64) -> (u64, f64, u64) {
    let entry = KEY_LEN + VALUE_LEN + ENTRY_OVERHEAD;
    let hot = KEYS / 100 * entry;
    let mut sim = Sim::new(
        3,
        |a: &str| {
            let mut c = Config::new(a);
            c.handoff_period = Duration::ZERO;
            c
        },
        |n: &mut Node| {
            let mut g = GroupConfig::new(GROUP, 2 * KEYS * entry + hot);
            g.hot_bytes = hot;
            n.add_group(g).expect("group");
        },
        loader,
    );
    let names = keys(KEYS);
    let trace = zipf(KEYS, GETS, exponent, 21);
    let through = zipf(3, GETS, 0.0, 22);
    let peer_loads = |sim: &Sim| -> u64 {
        sim.nodes
            .iter()
            .map(|n| n.node.stats(GROUP).expect("group").peer_loads)
            .sum()
    };
    let mut warm = 0;
    // Per node, gets of each peer-owned key in the counted half.
    let mut asked = vec![std::collections::HashMap::<usize, u64>::new(); 3];
    for (i, (&k, &node)) in trace.iter().zip(&through).enumerate() {
        if i == GETS / 2 {
            warm = peer_loads(&sim);
        }
        let n = &sim.nodes[node];
        if i >= GETS / 2 && n.node.owner(&names[k]) != Some(n.addr.as_str()) {
            *asked[node].entry(k).or_default() += 1;
        }
        sim.get_and_wait(node, GROUP, &names[k]).expect("get");
    }
    let trips = peer_loads(&sim) - warm;
    let floor = asked
        .iter()
        .map(|counts| {
            let mut c: Vec<u64> = counts.values().copied().collect();
            c.sort_unstable_by(|a, b| b.cmp(a));
            let kept: u64 = c.iter().take(KEYS / 100).sum();
            c.iter().sum::<u64>() - kept
        })
        .sum();
    (trips, trips as f64 / (GETS / 2) as f64, floor)
}

fn main() {
    println!("| keys | Zipf exponent | peer round trips | share of gets | static optimum |");
    println!("|---:|---:|---:|---:|---:|");
    for exponent in [0.8, 1.0, 1.2] {
        let (trips, share, floor) = round_trips(exponent);
        println!(
            "| {KEYS} | {exponent} | {trips} | {:.1} % | {floor} |",
            share * 100.0
        );
    }
}
