//! Members from DNS: a test DNS server in the process whose records change
//! while the cluster runs; and warm handoff when the cluster grows.

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::bounded;
use super::dns::{Mode, TestDns};
use crate::{Builder, DnsConfig, DnsDiscovery, Node, PeerSource, Runtime};

const SRV: &str = "_peer._tcp.gc.test";
const INTERVAL: Duration = Duration::from_millis(50);

fn discovery(dns: &TestDns, entry: &str) -> DnsDiscovery {
    let cfg = DnsConfig::default()
        .server(dns.addr())
        .timeout(Duration::from_millis(200));
    DnsDiscovery::new(PeerSource::parse_all([entry]).unwrap(), cfg).expect("resolver")
}

/// A node whose group "g" answers `v-KEY` and counts its loads; its group
/// "live" answers the same without counting, for gets that run meanwhile.
async fn node<R: Runtime>(b: Builder<R>, loads: &Arc<AtomicUsize>) -> Node<R> {
    let l = loads.clone();
    b.request_timeout(Duration::from_millis(500))
        .group("live", 1 << 20, None, |key: String| async move {
            Ok(format!("v-{key}"))
        })
        .group("g", 64 << 20, None, move |key: String| {
            l.fetch_add(1, Ordering::SeqCst);
            async move { Ok(format!("v-{key}")) }
        })
        .start()
        .await
        .expect("node starts")
}

/// Waits until every node uses exactly `want` (sorted) as its members;
/// returns how long that took.
async fn converge<R: Runtime>(rt: &R, nodes: &[Node<R>], want: &[String]) -> Duration {
    let start = rt.now();
    bounded(rt, "members to agree", async {
        loop {
            let agree = nodes.iter().all(|n| {
                let mut m = n.members();
                m.sort();
                m == want
            });
            if agree {
                return;
            }
            rt.sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    rt.now() - start
}

/// Waits until every node has failed `n` more discovery rounds.
async fn rounds_fail<R: Runtime>(rt: &R, nodes: &[Node<R>], n: u64) {
    let base: Vec<u64> = nodes.iter().map(|x| x.discovery_stats().failures).collect();
    bounded(rt, "discovery rounds to fail", async {
        while !nodes
            .iter()
            .zip(&base)
            .all(|(x, b)| x.discovery_stats().failures >= b + n)
        {
            rt.sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

/// SRV records name the members; they change while gets run. Every node
/// follows within a few intervals, no get fails meanwhile, and a failed,
/// empty or missing answer keeps the last good list.
pub async fn dns_members_follow_the_records_and_survive_a_blip<R: Runtime>(rt: R) {
    let dns = TestDns::start();
    let loads = Arc::new(AtomicUsize::new(0));
    let mut nodes = Vec::new();
    for _ in 0..3 {
        let b = Builder::with_runtime(rt.clone())
            .discovery(discovery(&dns, &format!("dnssrv+{SRV}")))
            .discovery_interval(INTERVAL);
        nodes.push(node(b, &loads).await);
    }
    // The records were empty: every node started alone.
    for n in &nodes {
        assert_eq!(n.members(), vec![n.self_addr()]);
    }
    let port = |i: usize| nodes[i].local_addr().port();
    let addrs: Vec<String> = nodes.iter().map(|n| n.self_addr()).collect();
    dns.set_ips("n0.gc.test", &["127.0.0.1".parse().unwrap()]);
    dns.set_srv(SRV, &[("n0.gc.test", port(0)), ("n0.gc.test", port(1))]);
    let two = sorted(addrs[..2].to_vec());
    converge(&rt, &nodes, &two).await;
    // Node 2 is not listed: it forwards every key to the two members.
    assert!(!nodes[2].members().contains(&addrs[2]));
    // Grow to three while gets run through every node.
    let stop = Arc::new(AtomicBool::new(false));
    let failed = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    for (i, n) in nodes.iter().enumerate() {
        let (n, stop, failed, done) = (n.clone(), stop.clone(), failed.clone(), done.clone());
        rt.spawn(async move {
            let mut k = 0;
            while !stop.load(Ordering::SeqCst) {
                let key = format!("k{i}-{k}");
                if n.get("g", &key).await != Ok(format!("v-{key}").into()) {
                    failed.fetch_add(1, Ordering::SeqCst);
                }
                k = (k + 1) % 500;
                // A hit completes without waiting: yield, or these loops
                // would hold every worker thread.
                futures_lite::future::yield_now().await;
            }
            done.fetch_add(1, Ordering::SeqCst);
        });
    }
    dns.set_srv(
        SRV,
        &[
            ("n0.gc.test", port(0)),
            ("n0.gc.test", port(1)),
            ("n0.gc.test", port(2)),
        ],
    );
    let all = sorted(addrs.clone());
    let took = converge(&rt, &nodes, &all).await;
    stop.store(true, Ordering::SeqCst);
    bounded(&rt, "gets to stop", async {
        while done.load(Ordering::SeqCst) < 3 {
            rt.sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    assert_eq!(
        failed.load(Ordering::SeqCst),
        0,
        "gets failed during the change"
    );
    println!("three nodes agreed on the new members {took:?} after the change");
    // A blip of each kind: every node fails rounds and keeps its list.
    for mode in [Mode::Fail, Mode::Empty, Mode::Silent] {
        dns.set_mode(mode);
        rounds_fail(&rt, &nodes, 2).await;
        for n in &nodes {
            assert_eq!(sorted(n.members()), all, "{mode:?} changed the members");
        }
    }
    // A name that resolves to nothing is a failed round too.
    dns.set_mode(Mode::Answer);
    dns.set_ips("n0.gc.test", &[]);
    rounds_fail(&rt, &nodes, 2).await;
    for n in &nodes {
        assert_eq!(sorted(n.members()), all);
    }
    // Back to answers, without node 1: the others drop it.
    dns.set_ips("n0.gc.test", &["127.0.0.1".parse().unwrap()]);
    dns.set_srv(SRV, &[("n0.gc.test", port(0)), ("n0.gc.test", port(2))]);
    let without_1 = sorted(vec![addrs[0].clone(), addrs[2].clone()]);
    converge(&rt, &[nodes[0].clone(), nodes[2].clone()], &without_1).await;
    for n in &nodes {
        n.shutdown().await;
    }
}

/// A and AAAA records at one port: each node, on its own loopback address,
/// finds itself in the answers, and keys are routed to their owners.
pub async fn dns_a_records_name_each_node_by_its_address<R: Runtime>(rt: R) {
    let dns = TestDns::start();
    let loads = Arc::new(AtomicUsize::new(0));
    // One port on three loopback addresses: the first is the OS's choice;
    // if another process holds it on the others, choose again.
    let ips: Vec<IpAddr> = ["127.0.0.1", "127.0.0.2", "127.0.0.3"]
        .iter()
        .map(|s| s.parse().unwrap())
        .collect();
    let nodes = 'pick: loop {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = probe.local_addr().unwrap().port();
        drop(probe);
        dns.set_ips("all.gc.test", &ips);
        let mut nodes = Vec::new();
        for ip in &ips {
            let b = Builder::with_runtime(rt.clone())
                .listen(std::net::SocketAddr::new(*ip, port))
                .discovery(discovery(&dns, &format!("dns+all.gc.test:{port}")));
            let l = loads.clone();
            let started = b
                .request_timeout(Duration::from_millis(500))
                .discovery_interval(INTERVAL)
                .group("g", 1 << 20, None, move |key: String| {
                    l.fetch_add(1, Ordering::SeqCst);
                    async move { Ok(format!("v-{key}")) }
                })
                .start()
                .await;
            match started {
                Ok(n) => nodes.push(n),
                Err(_) => {
                    for n in &nodes {
                        n.shutdown().await;
                    }
                    continue 'pick;
                }
            }
        }
        break nodes;
    };
    let port = nodes[0].local_addr().port();
    let want: Vec<String> = sorted(ips.iter().map(|ip| format!("{ip}:{port}")).collect());
    // The first round ran before each node served: they agree at once.
    for (n, ip) in nodes.iter().zip(&ips) {
        assert_eq!(n.self_addr(), format!("{ip}:{port}"));
        assert_eq!(sorted(n.members()), want);
    }
    let key = (0..)
        .map(|i| format!("k{i}"))
        .find(|k| nodes[0].owner(k).as_deref() == Some(want[2].as_str()))
        .unwrap();
    assert_eq!(nodes[0].get("g", &key).await, Ok(format!("v-{key}").into()));
    assert_eq!(
        nodes[2].stats("g").unwrap().local_loads,
        1,
        "loaded at its owner"
    );
    assert_eq!(loads.load(Ordering::SeqCst), 1);
    for n in &nodes {
        n.shutdown().await;
    }
}

/// A node whose configured name is not what DNS says (it listens on all
/// addresses, or was named otherwise) finds itself as the answer at its
/// listen port on this machine, and takes that name on the ring.
pub async fn dns_answer_renames_a_node_found_by_its_port<R: Runtime>(rt: R) {
    let dns = TestDns::start();
    let loads = Arc::new(AtomicUsize::new(0));
    let mut nodes = Vec::new();
    for name in ["first", "second"] {
        let b = Builder::with_runtime(rt.clone())
            .self_addr(name)
            .discovery(discovery(&dns, &format!("dnssrv+{SRV}")))
            .discovery_interval(INTERVAL);
        nodes.push(node(b, &loads).await);
    }
    assert_eq!(nodes[0].self_addr(), "first", "alone until DNS lists it");
    dns.set_ips("n.gc.test", &["127.0.0.1".parse().unwrap()]);
    let ports: Vec<u16> = nodes.iter().map(|n| n.local_addr().port()).collect();
    dns.set_srv(SRV, &[("n.gc.test", ports[0]), ("n.gc.test", ports[1])]);
    let want = sorted(ports.iter().map(|p| format!("127.0.0.1:{p}")).collect());
    converge(&rt, &nodes, &want).await;
    for (n, p) in nodes.iter().zip(&ports) {
        assert_eq!(n.self_addr(), format!("127.0.0.1:{p}"));
    }
    // Each owns its share: a key the second owns is loaded there.
    let key = (0..)
        .map(|i| format!("k{i}"))
        .find(|k| nodes[0].owner(k).as_deref() == Some(want[1].as_str()))
        .unwrap();
    let owner = nodes.iter().position(|n| n.self_addr() == want[1]).unwrap();
    assert_eq!(nodes[0].get("g", &key).await, Ok(format!("v-{key}").into()));
    assert_eq!(nodes[owner].stats("g").unwrap().local_loads, 1);
    for n in &nodes {
        n.shutdown().await;
    }
}

/// What growing a cluster from three nodes to four by DNS cost
/// ([`measure_scale_out`]).
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct ScaleOut {
    /// Keys the three nodes served before the change.
    pub keys: usize,
    /// Keys whose owner changed.
    pub moved: usize,
    /// Origin loads while every key was asked again after the change.
    pub reloads: usize,
    /// From the DNS change until all four nodes used the new members.
    pub converged: Duration,
    /// Gets run through every node while the nodes converged, and how
    /// many of them failed.
    pub gets_during_change: usize,
    /// See `gets_during_change`.
    pub failed_gets: usize,
}

/// Three nodes found by DNS (SRV records, re-resolved every `interval`)
/// serve `keys` keys; the records then add a fourth. Gets keep running
/// through every node until all four agree; then every key is asked again
/// and the origin loads are counted. `handoff` turns warm handoff on or off.
pub async fn measure_scale_out<R: Runtime>(
    rt: &R,
    keys: usize,
    handoff: bool,
    interval: Duration,
) -> ScaleOut {
    let dns = TestDns::start();
    let loads = Arc::new(AtomicUsize::new(0));
    let mut nodes = Vec::new();
    for _ in 0..4 {
        let mut b = Builder::with_runtime(rt.clone())
            .discovery(discovery(&dns, &format!("dnssrv+{SRV}")))
            .discovery_interval(interval);
        if !handoff {
            b = b.handoff(Duration::ZERO, Duration::ZERO);
        }
        nodes.push(node(b, &loads).await);
    }
    let addrs: Vec<String> = nodes.iter().map(|n| n.self_addr()).collect();
    let port = |i: usize| nodes[i].local_addr().port();
    let target = |n: usize| (0..n).map(|i| ("n.gc.test", port(i))).collect::<Vec<_>>();
    dns.set_ips("n.gc.test", &["127.0.0.1".parse().unwrap()]);
    dns.set_srv(SRV, &target(3));
    converge(rt, &nodes, &sorted(addrs[..3].to_vec())).await;
    let names: Vec<String> = (0..keys).map(|i| format!("k{i}")).collect();
    ask_all(rt, &nodes[..3], &names).await;
    assert_eq!(loads.load(Ordering::SeqCst), keys, "each key loaded once");
    let before: Vec<Option<String>> = names.iter().map(|k| nodes[0].owner(k)).collect();
    // Gets through every node while the change spreads.
    let stop = Arc::new(AtomicBool::new(false));
    let (gets, failed, done) = (
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
    );
    for (i, n) in nodes.iter().enumerate() {
        let (n, stop, gets, failed, done) = (
            n.clone(),
            stop.clone(),
            gets.clone(),
            failed.clone(),
            done.clone(),
        );
        rt.spawn(async move {
            // Keys of their own group: these gets must not warm the
            // measured keys' hot copies.
            let mut k = i * 7919;
            while !stop.load(Ordering::SeqCst) {
                let key = format!("c{}", k % 1000);
                if n.get("live", &key).await != Ok(format!("v-{key}").into()) {
                    failed.fetch_add(1, Ordering::SeqCst);
                }
                gets.fetch_add(1, Ordering::SeqCst);
                k += 1;
                futures_lite::future::yield_now().await;
            }
            done.fetch_add(1, Ordering::SeqCst);
        });
    }
    dns.set_srv(SRV, &target(4));
    let converged = converge(rt, &nodes, &sorted(addrs.clone())).await;
    stop.store(true, Ordering::SeqCst);
    bounded(rt, "gets to stop", async {
        while done.load(Ordering::SeqCst) < nodes.len() {
            rt.sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    let moved = names
        .iter()
        .zip(&before)
        .filter(|(k, b)| nodes[0].owner(k) != **b)
        .count();
    ask_all(rt, &nodes, &names).await;
    for n in &nodes {
        n.shutdown().await;
    }
    ScaleOut {
        keys,
        moved,
        reloads: loads.load(Ordering::SeqCst) - keys,
        converged,
        gets_during_change: gets.load(Ordering::SeqCst),
        failed_gets: failed.load(Ordering::SeqCst),
    }
}

/// Asks every key once, through the nodes in turn, 64 at a time.
async fn ask_all<R: Runtime>(rt: &R, nodes: &[Node<R>], keys: &[String]) {
    for (c, chunk) in keys.chunks(64).enumerate() {
        let (tx, rx) = async_channel::unbounded();
        for (i, k) in chunk.iter().enumerate() {
            let (n, k, tx) = (
                nodes[(c * 64 + i) % nodes.len()].clone(),
                k.clone(),
                tx.clone(),
            );
            rt.spawn(async move {
                let r = n.get("g", &k).await;
                let _ = tx.send((k, r)).await;
            });
        }
        drop(tx);
        while let Ok((k, r)) = bounded(rt, "get", rx.recv()).await {
            assert_eq!(r, Ok(format!("v-{k}").into()), "{k}");
        }
    }
}

/// Three nodes holding 2,000 keys grow to four by DNS: no get fails while
/// they converge; with handoff almost no moved key goes to the origin
/// again; without, most do.
pub async fn dns_scale_out_hands_moved_keys_over<R: Runtime>(rt: R) {
    let with = measure_scale_out(&rt, 2_000, true, INTERVAL).await;
    // Ports, so ring positions, differ from run to run: each run counts
    // its own moved keys.
    let without = measure_scale_out(&rt, 2_000, false, INTERVAL).await;
    println!("with handoff {with:?}\nwithout {without:?}");
    for r in [&with, &without] {
        // About a quarter moves; how many depends on the ports' ring points.
        assert!(r.moved > 0, "{r:?}");
        assert_eq!(r.failed_gets, 0, "{r:?}");
    }
    assert!(with.reloads * 100 < with.moved, "{with:?}");
    // Without handoff every moved key reloads unless it is asked through
    // its old owner or a node holding a hot copy.
    assert!(without.reloads * 4 > without.moved, "{without:?}");
}
