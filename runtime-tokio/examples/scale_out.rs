//! Measures what growing a cluster from three nodes to four by DNS costs:
//! origin loads when every key is asked again, with and without warm
//! handoff, seconds until every node agrees, and failed gets meanwhile.
//! Everything runs on 127.0.0.1 with a DNS server in the process.
//!
//! `cargo run --release -p groupcache-tokio --example scale_out -- [KEYS] [INTERVAL_MS] [ROUNDS]`
//! (defaults: 10000 keys, a 1000 ms DNS interval, 3 rounds each way).

use std::time::Duration;

use groupcache_driver::conformance::discovery::measure_scale_out;
use groupcache_tokio::Tokio;

#[tokio::main]
async fn main() {
    let arg = |i: usize, d: u64| {
        std::env::args()
            .nth(i)
            .map_or(d, |a| a.parse().expect("a number"))
    };
    let (keys, interval, rounds) = (arg(1, 10_000) as usize, arg(2, 1000), arg(3, 3));
    let interval = Duration::from_millis(interval);
    println!("{keys} keys on 3 nodes, a 4th added by DNS, re-resolved every {interval:?}");
    println!("handoff  moved  origin loads  % of moved  converged  gets during  failed");
    for handoff in [true, false] {
        for _ in 0..rounds {
            let r = measure_scale_out(&Tokio::current(), keys, handoff, interval).await;
            println!(
                "{:<8} {:>6} {:>13} {:>10.2}% {:>9.3}s {:>12} {:>7}",
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
