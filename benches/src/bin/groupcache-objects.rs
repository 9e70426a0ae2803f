//! `groupcache-objects`: three nodes in front of an S3 API server (moto,
//! started here on a loopback port), and one large object read twice in
//! ranges by concurrent readers through random nodes. A counting proxy
//! between the nodes and the store measures what the store sent; the
//! same reads straight from the store give the baseline.
//!
//! ```sh
//! cargo run --release -p groupcache-benches --bin groupcache-objects -- --size-mib 256
//! ```

use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use groupcache_object_store::object_store::{path::Path, ObjectStore, ObjectStoreExt, PutPayload};
use groupcache_object_store::testing::{options_for, Moto};
use groupcache_object_store::ObjectStoreSource;
use groupcache_tokio::{Builder, GroupConfig, Node, PageConfig};
use rand::seq::SliceRandom;
use rand::Rng;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Reads one object through three nodes, twice, and counts what the
/// store sent.
#[derive(Parser, Debug)]
#[command(name = "groupcache-objects", version)]
struct Args {
    /// Size of the object, in MiB.
    #[arg(long, default_value_t = 256)]
    size_mib: u64,
    /// Page size and read size, in MiB.
    #[arg(long, default_value_t = 1)]
    page_mib: u64,
    /// Concurrent readers.
    #[arg(long, default_value_t = 8)]
    readers: usize,
    /// Nodes.
    #[arg(long, default_value_t = 3)]
    nodes: usize,
}

/// A TCP proxy to `upstream` that counts the bytes `upstream` sends.
async fn counting_proxy(upstream: String) -> (String, Arc<AtomicU64>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = format!("http://{}", listener.local_addr().unwrap());
    let sent = Arc::new(AtomicU64::new(0));
    let counter = sent.clone();
    tokio::spawn(async move {
        loop {
            let Ok((client, _)) = listener.accept().await else {
                continue;
            };
            let (upstream, counter) = (upstream.clone(), counter.clone());
            tokio::spawn(async move {
                let Ok(server) = TcpStream::connect(&upstream).await else {
                    return;
                };
                let (mut cr, mut cw) = client.into_split();
                let (mut sr, mut sw) = server.into_split();
                let up = tokio::spawn(async move {
                    let _ = tokio::io::copy(&mut cr, &mut sw).await;
                    let _ = sw.shutdown().await;
                });
                let mut buf = vec![0u8; 256 << 10];
                loop {
                    match sr.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            counter.fetch_add(n as u64, Ordering::Relaxed);
                            if cw.write_all(&buf[..n]).await.is_err() {
                                break;
                            }
                        }
                    }
                }
                let _ = cw.shutdown().await;
                up.abort();
            });
        }
    });
    (addr, sent)
}

/// This process's CPU time so far (user + system).
fn cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks: u64 = fields
        .get(11..13)
        .map_or(0, |f| f.iter().filter_map(|t| t.parse::<u64>().ok()).sum());
    Duration::from_millis(ticks * 10)
}

/// The ranges of a pass, shuffled and dealt to `readers`.
fn deal(size: u64, read: u64, readers: usize) -> Vec<Vec<Range<u64>>> {
    let mut all: Vec<Range<u64>> = (0..size.div_ceil(read))
        .map(|i| i * read..((i + 1) * read).min(size))
        .collect();
    all.shuffle(&mut rand::thread_rng());
    let mut dealt = vec![Vec::new(); readers];
    for (i, r) in all.into_iter().enumerate() {
        dealt[i % readers].push(r);
    }
    dealt
}

/// One pass through the nodes: every range once, checked; its time.
async fn pass(nodes: &[Node], data: &Arc<Vec<u8>>, read: u64, readers: usize) -> Duration {
    let start = Instant::now();
    let mut tasks = Vec::new();
    for ranges in deal(data.len() as u64, read, readers) {
        let groups: Vec<_> = nodes.iter().map(|n| n.group("objects").unwrap()).collect();
        let data = data.clone();
        tasks.push(tokio::spawn(async move {
            for r in ranges {
                let g = &groups[rand::thread_rng().gen_range(0..groups.len())];
                let got = g.get_range("big", r.clone()).await.expect("range read");
                assert!(
                    got[..] == data[r.start as usize..r.end as usize],
                    "bytes of {r:?}"
                );
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    start.elapsed()
}

/// The same reads straight from the store: its time.
async fn direct(store: Arc<dyn ObjectStore>, size: u64, read: u64, readers: usize) -> Duration {
    let start = Instant::now();
    let mut tasks = Vec::new();
    for ranges in deal(size, read, readers) {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            for r in ranges {
                let got = store
                    .get_range(&Path::parse("big").unwrap(), r.clone())
                    .await
                    .unwrap();
                assert_eq!(got.len() as u64, r.end - r.start);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    start.elapsed()
}

fn mib_s(bytes: u64, d: Duration) -> f64 {
    bytes as f64 / (1 << 20) as f64 / d.as_secs_f64()
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let size = args.size_mib << 20;
    let page = args.page_mib << 20;
    let moto = Moto::start(&["bkt"]).unwrap_or_else(|e| panic!("{e}"));
    let data: Arc<Vec<u8>> = Arc::new(
        (0..size)
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
            .collect(),
    );
    moto.store("bkt")
        .put(
            &Path::parse("big").unwrap(),
            PutPayload::from(data.to_vec()),
        )
        .await
        .unwrap();
    let upstream = moto.endpoint().trim_start_matches("http://").to_string();
    let (proxy, sent) = counting_proxy(upstream).await;
    let mut nodes = Vec::new();
    for _ in 0..args.nodes {
        let source = ObjectStoreSource::from_url("s3://bkt", options_for(&proxy)).unwrap();
        let mut group = GroupConfig::new("objects", (size as usize) * 2);
        group.load_timeout = Duration::from_secs(60);
        let node = Builder::new()
            .listen("127.0.0.1:0".parse().unwrap())
            .configure(|c| c.request_timeout = Duration::from_secs(60))
            .paged_group(group, PageConfig::new(page), source)
            .start()
            .await
            .unwrap();
        nodes.push(node);
    }
    let members: Vec<String> = nodes.iter().map(|n| n.self_addr()).collect();
    for n in &nodes {
        n.set_peers(&members);
    }
    println!(
        "object {} MiB, pages and reads of {} MiB, {} readers, {} nodes",
        args.size_mib, args.page_mib, args.readers, args.nodes
    );
    let (c0, s0) = (cpu(), sent.load(Ordering::Relaxed));
    let cold = pass(&nodes, &data, page, args.readers).await;
    let (c1, s1) = (cpu(), sent.load(Ordering::Relaxed));
    let warm = pass(&nodes, &data, page, args.readers).await;
    let (c2, s2) = (cpu(), sent.load(Ordering::Relaxed));
    let store = moto.store("bkt");
    let base = direct(store, size, page, args.readers).await;
    let c3 = cpu();
    let loads: u64 = nodes
        .iter()
        .map(|n| n.group("objects").unwrap().stats().local_loads)
        .sum();
    println!("pass   | time s | MiB/s | store sent MiB | CPU s (this process)");
    let mib = |b: u64| format!("{:.2}", b as f64 / (1 << 20) as f64);
    let row = |pass: &str, t: Duration, sent: String, cpu: Duration| {
        let (secs, rate, cpu) = (t.as_secs_f64(), mib_s(size, t), cpu.as_secs_f64());
        println!("{pass:<6} | {secs:6.2} | {rate:5.0} | {sent:>14} | {cpu:.2}");
    };
    row("cold", cold, mib(s1 - s0), c1 - c0);
    row("warm", warm, mib(s2 - s1), c2 - c1);
    row("direct", base, "(not counted)".into(), c3 - c2);
    println!(
        "store sent {:.4}x the object over both passes ({} bytes more than the object, page {} bytes); page loads in the cluster: {loads} of {} pages",
        (s2 - s0) as f64 / size as f64,
        (s2 - s0) as i64 - size as i64,
        page,
        size.div_ceil(page)
    );
    for n in &nodes {
        n.shutdown().await;
    }
}
