//! `scaling`: in-process gets at 1..=cores threads, on tokio, smol and
//! compio, beside `quick_cache::sync`, `moka::sync` and per-thread hash
//! maps (the ceiling: no sharing at all).
//!
//! - **hits**: 10,000 keys, all cached; each thread walks them from its
//!   own offset.
//! - **misses**: distinct keys per thread, a loader that answers at once;
//!   each get is a load (the cache evicts to stay in its budget). The
//!   crates' misses are a failed lookup and an insert, in caches of their
//!   own; the ceiling is a `quick_cache::unsync` cache per thread.
//! - **served**: the core alone, no runtime and no socket: each thread
//!   plays one inbound connection sending a get frame for a cached key,
//!   and takes the answer's bytes. "under the node's lock" is a
//!   connection the node keeps ([`Node::accept`], all threads sharing the
//!   node behind one mutex); "by its own task" is one whose state the
//!   thread keeps ([`Node::accept_inbound`]), which takes only a cache
//!   shard's lock.
//!
//! Each figure is the median of `--rounds` rounds of `--secs` seconds, the
//! contenders alternating within a round, with the CPU time per op of that
//! round (every thread of the process, from `/proc/self/stat`, so in 10 ms
//! ticks: read it over rounds of a second or more). Caller threads drive
//! the gets with `futures_lite::future::block_on`; a load that answers at
//! once runs in the caller's get, and each node's own tasks run on its
//! runtime's threads.
//!
//! ```sh
//! cargo bench -p groupcache-benches --bench scaling                 # 1..=cores threads
//! cargo bench -p groupcache-benches --bench scaling -- --threads 1,2,4 --secs 2 --rounds 5
//! cargo bench -p groupcache-benches --bench scaling -- --only "tokio hits,maps"
//! cargo bench -p groupcache-benches --bench scaling -- --shards 32   # the nodes' caches in 32 shards
//! ```

#![allow(missing_docs)]

use std::collections::HashMap;
use std::hint::black_box;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_lite::future::block_on;
use groupcache_benches::keys;
use groupcache_core::node::{
    Config, ConnId, Get, GroupConfig, Inbound, InboundOutput, Node, Output,
};
use groupcache_core::testing::request_frame;
use groupcache_driver::{Builder, Group, LoadError, Runtime};

const KEYS: usize = 10_000;

/// Where the next measurement's steps start: steps never repeat, so a
/// miss's key is never one an earlier round loaded.
static NEXT_STEP: AtomicU64 = AtomicU64::new(0);

/// CPU time this process has used, all threads: user and system, from
/// `/proc/self/stat` (Linux; in ticks of 10 ms, the kernel's `USER_HZ` of
/// 100). `None` elsewhere.
fn process_cpu() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name, which may hold spaces: state is the
    // first, utime the 12th and stime the 13th.
    let rest = stat.rsplit_once(") ")?.1;
    let mut f = rest.split(' ').skip(11);
    let ticks: u64 = f.next()?.parse::<u64>().ok()? + f.next()?.parse::<u64>().ok()?;
    Some(Duration::from_millis(ticks * 10))
}

/// One measurement: ops per second, and CPU time per op (every thread of
/// the process: callers and the runtimes' own).
#[derive(Debug, Clone, Copy)]
struct Measured {
    ops_per_s: f64,
    cpu_per_op: Option<Duration>,
}

/// Ops per second of `threads` threads each running `op(thread, i)` for
/// `secs`, and the CPU each op cost.
fn measure(threads: usize, secs: f64, op: &(dyn Fn(usize, u64) + Sync)) -> Measured {
    let cpu_before = process_cpu();
    let base = NEXT_STEP.fetch_add(1 << 40, Ordering::Relaxed);
    let stop = AtomicBool::new(false);
    let total = AtomicU64::new(0);
    let start = Instant::now();
    std::thread::scope(|s| {
        for t in 0..threads {
            let (stop, total) = (&stop, &total);
            s.spawn(move || {
                let mut i = base;
                while !stop.load(Ordering::Relaxed) {
                    for _ in 0..256 {
                        op(t, i);
                        i += 1;
                    }
                }
                total.fetch_add(i - base, Ordering::Relaxed);
            });
        }
        std::thread::sleep(Duration::from_secs_f64(secs));
        stop.store(true, Ordering::Relaxed);
    });
    let ops = total.load(Ordering::Relaxed);
    let cpu = cpu_before
        .zip(process_cpu())
        .map(|(a, b)| b.saturating_sub(a));
    Measured {
        ops_per_s: ops as f64 / start.elapsed().as_secs_f64(),
        cpu_per_op: cpu.map(|c| c / ops.max(1) as u32),
    }
}

/// The value every contender's loader gives `key`.
fn loaded(key: &str) -> Bytes {
    Bytes::from(format!("value of {key}"))
}

/// The key a miss of thread `t` asks for at step `i`: never asked before.
fn miss_key(t: usize, i: u64) -> String {
    format!("miss-{t}-{i}")
}

/// A crate's miss of thread `t` at step `i`: a lookup through `held`
/// that fails, then the loaded value `put` in.
fn load_on_miss(t: usize, i: u64, held: impl Fn(&str) -> bool, put: impl Fn(String, Bytes)) {
    let key = miss_key(t, i);
    if !held(&key) {
        let value = loaded(&key);
        put(key, value);
    }
}

/// The key a hit of thread `t` asks for at step `i`.
fn hit_key(ks: &[String], t: usize, i: u64) -> &str {
    &ks[(t * 7919 + i as usize) % ks.len()]
}

/// A node's group on `rt` whose loader answers at once, with every key of
/// `ks` loaded; a budget that holds them and a share of misses; its caches
/// in `shards` shards (0: the driver's default).
async fn group<R: Runtime>(rt: R, ks: &[String], shards: usize) -> Group<R> {
    let node = Builder::with_runtime(rt)
        .listen("127.0.0.1:0".parse().unwrap())
        .configure(|c| c.cache_shards = shards)
        .group("g", 64 << 20, None, |key: String| async move {
            Ok::<_, LoadError>(loaded(&key))
        })
        .start()
        .await
        .unwrap();
    let g = node.group("g").unwrap();
    for k in ks {
        g.get(k).await.unwrap();
    }
    g
}

/// A core node holding every key of `ks`, its caches in `shards` shards.
fn core_node(ks: &[String], now: Instant) -> Node {
    let mut cfg = Config::new("self");
    cfg.cache_shards = 16;
    let mut node = Node::new(cfg);
    node.add_group(GroupConfig::new("g", 64 << 20)).unwrap();
    for k in ks {
        if let Get::Pending(_) = node.get(now, "g", k) {
            while let Some(o) = node.poll_output() {
                if let Output::Load { id, .. } = o {
                    let v = loaded(k);
                    node.handle_load(now, id, Ok(v.into()));
                }
            }
        }
    }
    while node.poll_output().is_some() {}
    node
}

/// Serving contenders: one inbound connection per thread, each op a get
/// frame in and its answer out, through the node's lock or by itself.
fn served_ops<'a>(
    locked: &'a Mutex<(Node, Vec<ConnId>)>,
    inbounds: &'a [Mutex<Inbound>],
    frames: &'a [Bytes],
    now: Instant,
) -> Vec<Contender<'a>> {
    let frame = move |t: usize, i: u64| &frames[(t * 7919 + i as usize) % frames.len()];
    vec![
        (
            "served under the node's lock".into(),
            Box::new(move |t, i| {
                let mut guard = locked.lock().unwrap();
                let (node, conns) = &mut *guard;
                node.handle_data(now, conns[t], frame(t, i));
                let mut n = 0;
                while let Some(o) = node.poll_output() {
                    if let Output::Send { data, .. } = o {
                        n += data.len();
                    }
                }
                node.handle_written(now, conns[t], black_box(n));
            }),
        ),
        (
            "served by its own task".into(),
            Box::new(move |t, i| {
                let mut inbound = inbounds[t].lock().unwrap();
                inbound.handle_data(now, frame(t, i));
                let mut n = 0;
                while let Some(o) = inbound.poll_output() {
                    if let InboundOutput::Send(data) = o {
                        n += data.len();
                    }
                }
                inbound.handle_written(now, black_box(n));
            }),
        ),
    ]
}

/// A contender: a name and what one op of thread `t` at step `i` does.
type Contender<'a> = (String, Box<dyn Fn(usize, u64) + Sync + 'a>);

fn node_ops<'a, R: Runtime>(name: &str, g: &'a Group<R>, ks: &'a [String]) -> Vec<Contender<'a>> {
    vec![
        (
            format!("{name} hits"),
            Box::new(move |t, i| {
                black_box(block_on(g.get(hit_key(ks, t, i))).unwrap());
            }),
        ),
        (
            format!("{name} misses"),
            Box::new(move |t, i| {
                black_box(block_on(g.get(&miss_key(t, i))).unwrap());
            }),
        ),
    ]
}

struct Args {
    threads: Vec<usize>,
    secs: f64,
    rounds: usize,
    /// Only the contenders whose names contain one of these.
    only: Vec<String>,
    /// The nodes' `cache_shards`; 0 leaves it to the driver.
    shards: usize,
}

fn args() -> Args {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut a = Args {
        threads: (1..=cores).collect(),
        secs: 1.0,
        rounds: 3,
        only: Vec::new(),
        shards: 0,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = || it.next().expect("a value after the flag");
        match arg.as_str() {
            "--threads" => {
                a.threads = value()
                    .split(',')
                    .map(|n| n.parse().expect("a thread count"))
                    .collect()
            }
            "--secs" => a.secs = value().parse().expect("seconds"),
            "--rounds" => a.rounds = value().parse().expect("rounds"),
            "--only" => a.only = value().split(',').map(str::to_string).collect(),
            "--shards" => a.shards = value().parse().expect("a shard count"),
            // `cargo bench` passes `--bench`; criterion-style filters are
            // not used here.
            _ => {}
        }
    }
    a
}

fn main() {
    let a = args();
    let max_threads = a.threads.iter().copied().max().unwrap_or(1);
    let ks = keys(KEYS);

    let tokio_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(max_threads)
        .enable_all()
        .build()
        .unwrap();
    let on_tokio = {
        let _in = tokio_rt.enter();
        tokio_rt.block_on(group(groupcache_tokio::Tokio::current(), &ks, a.shards))
    };
    let on_smol = block_on(group(
        groupcache_async_std::AsyncIo::default(),
        &ks,
        a.shards,
    ));
    let compio = groupcache_compio::CompioThreads::start(1).unwrap();
    let on_compio = block_on(group(compio.runtimes()[0].clone(), &ks, a.shards));

    let quick: quick_cache::sync::Cache<String, Bytes> = quick_cache::sync::Cache::new(KEYS * 2);
    let moka: moka::sync::Cache<String, Bytes> = moka::sync::Cache::new(KEYS as u64 * 2);
    for k in &ks {
        quick.insert(k.clone(), loaded(k));
        moka.insert(k.clone(), loaded(k));
    }
    let quick_misses: quick_cache::sync::Cache<String, Bytes> =
        quick_cache::sync::Cache::new(KEYS * 2);
    let moka_misses: moka::sync::Cache<String, Bytes> = moka::sync::Cache::new(KEYS as u64 * 2);
    let own: Vec<Mutex<quick_cache::unsync::Cache<String, Bytes>>> = (0..max_threads)
        .map(|_| Mutex::new(quick_cache::unsync::Cache::new(KEYS * 2)))
        .collect();
    let maps: Vec<HashMap<String, Bytes>> = (0..max_threads)
        .map(|_| ks.iter().map(|k| (k.clone(), loaded(k))).collect())
        .collect();

    #[allow(clippy::disallowed_methods)]
    let now = Instant::now();
    let client = std::net::IpAddr::from([127, 0, 0, 1]);
    let mut node = core_node(&ks, now);
    let conns: Vec<ConnId> = (0..max_threads)
        .map(|_| node.accept(now, client).unwrap())
        .collect();
    let inbounds: Vec<Mutex<Inbound>> = (0..max_threads)
        .map(|_| Mutex::new(node.accept_inbound(now, client).unwrap()))
        .collect();
    let locked = Mutex::new((node, conns));
    let frames: Vec<Bytes> = ks.iter().map(|k| request_frame("g", k).freeze()).collect();

    let mut contenders: Vec<Contender> = Vec::new();
    contenders.extend(served_ops(&locked, &inbounds, &frames, now));
    contenders.extend(node_ops("tokio", &on_tokio, &ks));
    contenders.extend(node_ops("smol", &on_smol, &ks));
    contenders.extend(node_ops("compio", &on_compio, &ks));
    let ks = &ks;
    contenders.push((
        "quick_cache::sync hits".into(),
        Box::new(|t, i| {
            black_box(quick.get(hit_key(ks, t, i)));
        }),
    ));
    contenders.push((
        "moka::sync hits".into(),
        Box::new(|t, i| {
            black_box(moka.get(hit_key(ks, t, i)));
        }),
    ));
    contenders.push((
        "per-thread maps hits".into(),
        Box::new(|t, i| {
            black_box(maps[t].get(hit_key(ks, t, i)));
        }),
    ));
    // What a miss costs the crates: a lookup that fails, then the insert
    // of the loaded value, in caches of their own (so that the hits'
    // caches keep their keys), as large as the hits' ones.
    contenders.push((
        "quick_cache::sync misses".into(),
        Box::new(|t, i| {
            load_on_miss(
                t,
                i,
                |k| quick_misses.get(k).is_some(),
                |k, v| quick_misses.insert(k, v),
            )
        }),
    ));
    contenders.push((
        "moka::sync misses".into(),
        Box::new(|t, i| {
            load_on_miss(
                t,
                i,
                |k| moka_misses.get(k).is_some(),
                |k, v| moka_misses.insert(k, v),
            )
        }),
    ));
    // The ceiling for misses: a cache per thread that no other touches.
    contenders.push((
        "per-thread caches misses".into(),
        Box::new(|t, i| {
            let mut c = own[t].lock().unwrap();
            let c = std::cell::RefCell::new(&mut *c);
            load_on_miss(
                t,
                i,
                |k| c.borrow_mut().get(k).is_some(),
                |k, v| c.borrow_mut().insert(k, v),
            )
        }),
    ));

    if !a.only.is_empty() {
        contenders.retain(|(name, _)| a.only.iter().any(|o| name.contains(o.as_str())));
    }
    // results[contender][threads] = each round's ops/s
    let mut results = vec![vec![Vec::new(); a.threads.len()]; contenders.len()];
    for _ in 0..a.rounds {
        for (ti, &threads) in a.threads.iter().enumerate() {
            for (ci, (_, op)) in contenders.iter().enumerate() {
                results[ci][ti].push(measure(threads, a.secs, op.as_ref()));
            }
        }
    }
    let header: Vec<String> = (a.threads.iter())
        .map(|t| format!("{t} thr Mops/s"))
        .chain(a.threads.iter().map(|t| format!("{t} thr CPU ns/op")))
        .collect();
    println!(
        "| contender | {} | {} / 1 thread |",
        header.join(" | "),
        a.threads.last().unwrap()
    );
    println!("|---|{}---:|", "---:|".repeat(header.len()));
    for (ci, (name, _)) in contenders.iter().enumerate() {
        // Each cell is the median round by ops/s, with that round's CPU.
        let medians: Vec<Measured> = (results[ci].iter_mut())
            .map(|r| {
                r.sort_by(|x, y| x.ops_per_s.total_cmp(&y.ops_per_s));
                r[r.len() / 2]
            })
            .collect();
        let cells: Vec<String> = (medians.iter())
            .map(|m| format!("{:.3}", m.ops_per_s / 1e6))
            .chain(medians.iter().map(|m| match m.cpu_per_op {
                Some(c) => c.as_nanos().to_string(),
                None => "-".into(),
            }))
            .collect();
        let ratio = medians.last().unwrap().ops_per_s / medians[0].ops_per_s;
        println!("| {name} | {} | {ratio:.2}x |", cells.join(" | "));
    }
}
