//! Measures what growing a cluster from three nodes to four by DNS costs:
//! origin loads when every key is asked again, with and without warm
//! handoff, seconds until every node agrees, and failed gets meanwhile.
//! Everything runs on loopback addresses with a DNS server in the process.
//!
//! Two ways for the fourth node to join ([`Joiner`]): `idle`, started and
//! idle outside SRV records until they add it; and `served`, the
//! Kubernetes layout (each node on its own loopback address at one port,
//! named by A records), where the fourth is ready and serves by forwarding
//! before the answer lists it.
//!
//! `cargo run --release -p groupcache-tokio --example scale_out -- [KEYS] [INTERVAL_MS] [ROUNDS] [idle|served|both]`
//! (defaults: 10000 keys, a 1000 ms DNS interval, 3 rounds each way, both).

use std::time::Duration;

use groupcache_driver::conformance::discovery::{measure_scale_out, Joiner};
use groupcache_driver::conformance::Suite;
use groupcache_tokio::Tokio;

#[tokio::main]
async fn main() {
    let arg = |i: usize, d: u64| {
        std::env::args()
            .nth(i)
            .map_or(d, |a| a.parse().expect("a number"))
    };
    let (keys, interval, rounds) = (arg(1, 10_000) as usize, arg(2, 1000), arg(3, 3));
    let joiners = match std::env::args().nth(4).as_deref() {
        None | Some("both") => vec![Joiner::Idle, Joiner::ServedOutside],
        Some("idle") => vec![Joiner::Idle],
        Some("served") => vec![Joiner::ServedOutside],
        Some(other) => panic!("expected idle, served or both, not {other:?}"),
    };
    let interval = Duration::from_millis(interval);
    println!("{keys} keys on 3 nodes, a 4th added by DNS, re-resolved every {interval:?}");
    println!("joiner  handoff  moved  origin loads  % of moved  converged  gets during  failed");
    for joiner in joiners {
        for handoff in [true, false] {
            for _ in 0..rounds {
                let r = measure_scale_out(
                    &Suite::plain(Tokio::current()),
                    keys,
                    handoff,
                    interval,
                    joiner,
                )
                .await;
                println!(
                    "{:<7} {:<8} {:>6} {:>13} {:>10.2}% {:>9.3}s {:>12} {:>7}",
                    if joiner == Joiner::Idle {
                        "idle"
                    } else {
                        "served"
                    },
                    if handoff { "on" } else { "off" },
                    r.moved,
                    r.reloads,
                    100.0 * r.reloads as f64 / r.moved as f64,
                    r.converged.as_secs_f64(),
                    r.gets_during_change,
                    r.failed_gets
                );
            }
        }
    }
}
