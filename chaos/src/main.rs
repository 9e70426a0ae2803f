//! `groupcache-chaos`: runs real nodes under a nemesis and checks what
//! their clients saw. See the crate's README.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use groupcache_chaos::{find_groupcache, run, write_report, Settings};

/// Runs `groupcache serve` processes under a nemesis and checks the
/// history their clients saw against docs/consistency.md.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// How long clients and the nemesis run: 90s, 30m, 2h.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    duration: Duration,
    /// Nodes.
    #[arg(long, default_value_t = 5)]
    nodes: usize,
    /// Concurrent clients of mixed operations.
    #[arg(long, default_value_t = 8)]
    clients: usize,
    /// Concurrent readers of the hot keys, without pause.
    #[arg(long, default_value_t = 4)]
    readers: usize,
    /// Seed of the workload and the fault schedule.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Run without faults.
    #[arg(long)]
    no_faults: bool,
    /// Keep every node on loopback, even where network namespaces can be
    /// made (no network faults then).
    #[arg(long)]
    loopback: bool,
    /// The `groupcache` binary (default: the one built beside this one).
    #[arg(long)]
    groupcache: Option<PathBuf>,
    /// Where to write the JSON report.
    #[arg(long, default_value = "chaos-report.json")]
    out: PathBuf,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let (n, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = n.parse().map_err(|_| format!("not a duration: {s}"))?;
    match unit {
        "ms" => Ok(Duration::from_millis(n)),
        "s" | "" => Ok(Duration::from_secs(n)),
        "m" => Ok(Duration::from_secs(n * 60)),
        "h" => Ok(Duration::from_secs(n * 3600)),
        _ => Err(format!("unknown unit in {s}: use ms, s, m or h")),
    }
}

fn main() -> ExitCode {
    let a = Args::parse();
    let Some(bin) = a.groupcache.or_else(find_groupcache) else {
        eprintln!(
            "groupcache-chaos: no groupcache binary beside this one; build it first \
             (cargo build --release -p groupcache-cli) or pass --groupcache PATH"
        );
        return ExitCode::from(2);
    };
    let mut s = Settings::new(bin);
    (s.duration, s.nodes, s.seed) = (a.duration, a.nodes, a.seed);
    (s.clients, s.readers) = (a.clients, a.readers);
    s.faults = !a.no_faults;
    s.namespaces = !a.loopback;
    let rt = tokio::runtime::Runtime::new().expect("a tokio runtime");
    let outcome = match rt.block_on(run(&s)) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("groupcache-chaos: {e}");
            return ExitCode::from(2);
        }
    };
    println!("network: {}", outcome.network);
    for (f, from, until) in &outcome.faults {
        let node = f.node().map_or(String::new(), |n| format!(" node {n}"));
        println!(
            "fault {}{node}: {:.1}s..{:.1}s",
            f.name(),
            from.as_secs_f64(),
            until.as_secs_f64()
        );
    }
    print!("{}", outcome.report.table());
    print!("{}", outcome.report.explain(&outcome.history));
    if let Err(e) = write_report(&outcome, &s, &a.out) {
        eprintln!("groupcache-chaos: cannot write {}: {e}", a.out.display());
    }
    if outcome.report.is_clean() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
