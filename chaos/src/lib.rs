//! Real `groupcache serve` processes under a nemesis, and a check of what
//! their clients saw.
//!
//! [`run`] starts N nodes on loopback ports the OS picks, an origin it
//! controls ([`origin`]: versioned values, counted loads, slow or down on
//! demand), and K clients ([`workload`]) that get, set, remove, purge and
//! "change the origin, then remove" through the nodes' HTTP fronts and the
//! non-member `Client`. Meanwhile the [`nemesis`] kills, stops and
//! continues nodes and slows or downs the origin on a seeded schedule.
//! Every operation is recorded as a [`History`]; at the end every fault is
//! healed, the cluster gets a quiet period, every key is read through
//! every node, and the history is checked against the consistency model
//! (`docs/consistency.md`) by the same checker the core's simulator uses.
//!
//! Where the harness may make network namespaces (root, `ip`, `nft`),
//! each node runs in one of its own ([`net`]) and the nemesis also
//! isolates a node, splits the cluster in two and drops one way, with nft
//! rules; elsewhere the nodes run on loopback with process and origin
//! faults only, and the run says so. Either way the nodes find each other
//! through a DNS server the harness runs (`dns+` peers), and the nemesis
//! takes a node out of its answer and puts it back.

pub mod cluster;
pub mod nemesis;
pub mod net;
pub mod origin;
pub mod workload;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use groupcache_core::testing::history::{check, Exit, History, Model, Report, Window};
use rand::rngs::StdRng;
use rand::SeedableRng;

use cluster::{Cluster, Place};
use groupcache_driver::conformance::dns::TestDns;
use nemesis::Fault;
use origin::{value_of, Mode, Origin};
use workload::{Shared, CLIENT_TIMEOUT, GROUP};

/// What can stop a run before it has a history to check.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The harness could not set up or drive the cluster.
    Setup(String),
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Setup(m) => write!(f, "setup: {m}"),
        }
    }
}

impl std::error::Error for Error {}

/// How long after a fault is healed it still counts as active: peers come
/// out of back-off (1 s) and requests under way end (3 s).
pub const SETTLE: Duration = Duration::from_secs(6);

/// What a run does.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The `groupcache` binary.
    pub bin: PathBuf,
    /// Nodes.
    pub nodes: usize,
    /// Concurrent clients of mixed operations.
    pub clients: usize,
    /// Concurrent readers of the hot keys, without pause.
    pub readers: usize,
    /// How long clients and the nemesis run, before the quiet period.
    pub duration: Duration,
    /// Seed of the workload and the fault schedule.
    pub seed: u64,
    /// Hot keys and tail keys.
    pub keys: (usize, usize),
    /// The group's byte budget on each node.
    pub budget: usize,
    /// Whether the nemesis runs at all.
    pub faults: bool,
    /// Whether to put the nodes in network namespaces when possible.
    pub namespaces: bool,
    /// A node's resident memory, at most: by default the budget twice,
    /// what a debug build and its runtime hold, and what a churned segment
    /// cache may strand.
    pub rss_bound: u64,
    /// Where node logs go.
    pub dir: PathBuf,
}

impl Settings {
    /// The defaults: 5 nodes, 8 clients and 4 readers, 60 s, seed 1, 4 hot keys and 200
    /// in the tail, 16 MiB per node, logs under the system's temp folder.
    pub fn new(bin: PathBuf) -> Self {
        Self {
            bin,
            nodes: 5,
            clients: 8,
            readers: 4,
            duration: Duration::from_secs(60),
            seed: 1,
            keys: (4, 200),
            budget: 16 << 20,
            faults: true,
            namespaces: true,
            rss_bound: 2 * (16 << 20) + (96 << 20),
            dir: std::env::temp_dir().join(format!("groupcache-chaos-{}", std::process::id())),
        }
    }

    /// The model a run is checked against: the nodes' defaults, with the
    /// deadline a client waits.
    pub fn model(&self) -> Model {
        let mut m = Model::default();
        m.hot_ttl = Duration::from_secs(60);
        m.deadline = CLIENT_TIMEOUT + Duration::from_secs(1);
        m.recovery = Duration::from_secs(10);
        // Times are taken when the harness sees an event, not when it
        // happened in a node.
        m.slack = Duration::from_millis(50);
        m.rss_bound = Some(self.rss_bound);
        m
    }
}

/// A finished run: the history, the faults caused, and the check.
#[derive(Debug)]
pub struct Outcome {
    /// What the clients saw.
    pub history: History,
    /// Every fault: what, from, until healed.
    pub faults: Vec<(Fault, Duration, Duration)>,
    /// The check against [`Settings::model`].
    pub report: Report,
    /// Where the nodes ran: namespaces, or loopback and why.
    pub network: String,
}

/// The `groupcache` binary beside this executable (or one folder up, for
/// a test binary in `deps/`), unless `GROUPCACHE_BIN` names one.
pub fn find_groupcache() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("GROUPCACHE_BIN") {
        return Some(PathBuf::from(p));
    }
    let exe = std::env::current_exe().ok()?;
    let dir = exe.parent()?;
    let found = [Some(dir), dir.parent()]
        .into_iter()
        .flatten()
        .map(|d| d.join("groupcache"))
        .find(|p| p.is_file());
    found
}

/// Runs the scenario of `s` and checks its history.
pub async fn run(s: &Settings) -> Result<Outcome, Error> {
    std::fs::create_dir_all(&s.dir)
        .map_err(|e| Error::Setup(format!("{}: {e}", s.dir.display())))?;
    let (net, network) = match s.namespaces.then(|| net::Net::new(s.nodes)) {
        Some(Ok(net)) => (
            Some(net),
            "network namespaces: process, origin, network and DNS faults".to_string(),
        ),
        Some(Err(e)) => (
            None,
            format!("loopback (no namespaces: {e}): process, origin and DNS faults"),
        ),
        None => (None, "loopback: process, origin and DNS faults".to_string()),
    };
    let places: Vec<Place> = (0..s.nodes)
        .map(|i| match &net {
            Some(n) => Place {
                ip: n.addr(i),
                ns: Some(n.ns(i)),
            },
            // One peer port for all (DNS): an address of the loopback
            // range each.
            None => Place {
                ip: std::net::Ipv4Addr::new(127, 0, 0, 10 + i as u8).into(),
                ns: None,
            },
        })
        .collect();
    let host = net
        .as_ref()
        .map_or(std::net::Ipv4Addr::LOCALHOST.into(), net::Net::host);
    let start = Instant::now();
    let origin = Origin::new(start);
    let origin_addr =
        (origin.serve(host).await).map_err(|e| Error::Setup(format!("origin: {e}")))?;
    let spec = format!("{GROUP}:{}:0:http://{origin_addr}/v/{{key}}", s.budget);
    let extra = ["--load-timeout-ms".to_string(), "5000".to_string()];
    let dns = TestDns::start_on(host);
    let all: Vec<std::net::IpAddr> = places.iter().map(|p| p.ip).collect();
    dns.set_ips(DNS_NAME, &all);
    let dns_at = Some((DNS_NAME, dns.addr()));
    let mut cluster = Cluster::new(&s.bin, &places, &spec, &extra, &s.dir, dns_at)?;
    let http = reqwest::Client::new();
    for i in 0..s.nodes {
        cluster.start(i)?;
    }
    for i in 0..s.nodes {
        cluster
            .wait_ready(i, &http, Duration::from_secs(20))
            .await?;
    }
    // Four DNS rounds: every node has found every other. Until then the
    // cluster is forming, a membership change of its own.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let formed = start.elapsed();
    let keys = workload::keys(s.keys.0, s.keys.1);
    let mut history = History::default();
    for k in &keys {
        history.origin(Duration::ZERO, k, value_of(k, 0));
    }
    let shared = Arc::new(Shared {
        nodes: cluster.nodes.iter().map(|n| (n.http, n.peer)).collect(),
        origin: origin.clone(),
        history: Mutex::new(history),
        start,
        keys,
        hot: s.keys.0,
    });
    let until = start.elapsed() + s.duration;
    let mut clients: Vec<_> = (0..s.clients)
        .map(|p| tokio::spawn(workload::client(shared.clone(), p, s.seed, until)))
        .collect();
    clients.extend((0..s.readers).map(|r| {
        let p = s.clients + r;
        tokio::spawn(workload::reader(shared.clone(), p, s.seed, until))
    }));
    let cluster = Arc::new(tokio::sync::Mutex::new(cluster));
    let watch = tokio::spawn(watch(cluster.clone(), shared.clone()));
    let faults = if s.faults {
        let env = Env {
            cluster: &cluster,
            origin: &origin,
            net: net.as_ref(),
            dns: &dns,
            all: &all,
            http: &http,
        };
        nemesis(s, &env, start, until).await?
    } else {
        Vec::new()
    };
    for c in clients {
        let _ = c.await;
    }
    let healed_at = faults.iter().map(|f| f.2).max();
    quiet_then_read_all(&shared, &http, healed_at, s.model().recovery).await;
    watch.abort();
    cluster.lock().await.stop_all().await;
    drop(net);
    let mut history = std::mem::take(&mut *shared.history.lock().expect("history"));
    history.loads = origin.loads();
    history.healed_at = healed_at;
    let window = |&(_, from, until): &(Fault, Duration, Duration)| Window {
        from,
        until: until + SETTLE,
    };
    let unlisted = |f: &&(Fault, Duration, Duration)| matches!(f.0, Fault::Unlisted(_));
    history.faults = faults.iter().filter(|f| !unlisted(f)).map(window).collect();
    history.membership = faults.iter().filter(unlisted).map(window).collect();
    history.membership.push(Window {
        from: Duration::ZERO,
        until: formed + SETTLE,
    });
    let report = check(&history, &s.model());
    Ok(Outcome {
        history,
        faults,
        report,
        network,
    })
}

/// Records node exits and samples resident memory, until aborted.
async fn watch(cluster: Arc<tokio::sync::Mutex<Cluster>>, s: Arc<Shared>) {
    let mut tick = 0u64;
    loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        tick += 1;
        let mut c = cluster.lock().await;
        let at = s.start.elapsed();
        let exits = c.exited();
        let samples = if tick % 4 == 0 {
            c.sample()
        } else {
            Vec::new()
        };
        drop(c);
        let mut h = s.history.lock().expect("history");
        for (node, killed, status) in exits {
            h.exits.push(Exit {
                node,
                at,
                killed,
                status,
            });
        }
        for (n, bytes, fds) in samples {
            h.rss.push((at, n, bytes));
            h.fds.push((at, n, fds));
        }
    }
}

/// Causes faults one after another until `until`; returns each with when
/// it began and when it was healed.
async fn nemesis(
    s: &Settings,
    env: &Env<'_>,
    start: Instant,
    until: Duration,
) -> Result<Vec<(Fault, Duration, Duration)>, Error> {
    let Env {
        cluster,
        origin,
        net,
        dns,
        all,
        http,
    } = *env;
    let mut rng = StdRng::seed_from_u64(s.seed);
    let order = nemesis::order(&mut rng, net.is_some());
    let mut done = Vec::new();
    for n in 0.. {
        let p = nemesis::plan(&mut rng, n, s.nodes, &order);
        if start.elapsed() + p.after + p.hold + SETTLE > until {
            break;
        }
        tokio::time::sleep(p.after).await;
        let from = start.elapsed();
        match p.fault {
            Fault::Kill(i) => cluster.lock().await.kill(i).await,
            Fault::Pause(i) => cluster.lock().await.signal(i, "STOP").await?,
            Fault::OriginSlow => origin.set_mode(Mode::Slow),
            Fault::OriginDown => origin.set_mode(Mode::Down),
            Fault::Isolate(_) | Fault::Split(_) | Fault::OneWay { .. } => {
                let net = net.expect("network faults are planned only with namespaces");
                cut(net, p.fault, s.nodes)?;
            }
            Fault::Unlisted(i) => {
                let rest: Vec<std::net::IpAddr> = (all.iter().enumerate())
                    .filter(|&(j, _)| j != i)
                    .map(|(_, ip)| *ip)
                    .collect();
                dns.set_ips(DNS_NAME, &rest);
            }
        }
        tokio::time::sleep(p.hold).await;
        match p.fault {
            Fault::Kill(i) => {
                cluster.lock().await.start(i)?;
                let c = cluster.lock().await;
                c.wait_ready(i, http, Duration::from_secs(20)).await?;
            }
            Fault::Pause(i) => cluster.lock().await.signal(i, "CONT").await?,
            Fault::OriginSlow | Fault::OriginDown => origin.set_mode(Mode::Up),
            Fault::Isolate(_) | Fault::Split(_) | Fault::OneWay { .. } => {
                net.expect("planned with namespaces").heal()?;
            }
            Fault::Unlisted(_) => dns.set_ips(DNS_NAME, all),
        }
        done.push((p.fault, from, start.elapsed()));
    }
    Ok(done)
}

/// The name the nodes find each other by.
const DNS_NAME: &str = "nodes.chaos.test";

/// What the nemesis acts on.
#[derive(Clone, Copy)]
struct Env<'a> {
    cluster: &'a tokio::sync::Mutex<Cluster>,
    origin: &'a Origin,
    net: Option<&'a net::Net>,
    dns: &'a TestDns,
    all: &'a [std::net::IpAddr],
    http: &'a reqwest::Client,
}

/// Sets the nft rules of a network fault.
fn cut(net: &net::Net, fault: Fault, nodes: usize) -> Result<(), Error> {
    let all: Vec<usize> = (0..nodes).collect();
    match fault {
        Fault::Isolate(i) => {
            let others: Vec<usize> = all.iter().copied().filter(|&j| j != i).collect();
            net.drop_from(i, &others)?;
            for &j in &others {
                net.drop_from(j, &[i])?;
            }
        }
        Fault::Split(mask) => {
            let (a, b): (Vec<usize>, Vec<usize>) = all.iter().partition(|&&i| mask & (1 << i) != 0);
            for &i in &a {
                net.drop_from(i, &b)?;
            }
            for &i in &b {
                net.drop_from(i, &a)?;
            }
        }
        Fault::OneWay { from, to } => net.drop_from(to, &[from])?,
        _ => {}
    }
    Ok(())
}

/// Waits out the recovery bound after the last heal, then reads every key
/// through every node's HTTP front.
async fn quiet_then_read_all(
    s: &Arc<Shared>,
    http: &reqwest::Client,
    healed: Option<Duration>,
    recovery: Duration,
) {
    let ready = healed.unwrap_or_default() + recovery;
    if let Some(wait) = ready.checked_sub(s.start.elapsed()) {
        tokio::time::sleep(wait).await;
    }
    let reads: Vec<_> = (0..s.nodes.len())
        .map(|node| {
            let (s, http) = (s.clone(), http.clone());
            tokio::spawn(async move {
                for key in s.keys.clone() {
                    workload::get_http(&s, &http, 1_000_000 + node, node, &key).await;
                }
            })
        })
        .collect();
    for r in reads {
        let _ = r.await;
    }
}

/// Writes `o`'s report: the JSON (figures, faults, every violation with
/// its operations) to `path`.
pub fn write_report(o: &Outcome, s: &Settings, path: &Path) -> std::io::Result<()> {
    let mut json = o.report.to_json(&o.history);
    json["settings"] = serde_json::json!({
        "nodes": s.nodes,
        "clients": s.clients,
        "readers": s.readers,
        "duration_s": s.duration.as_secs_f64(),
        "seed": s.seed,
        "network": o.network,
    });
    json["faults"] = (o.faults.iter())
        .map(|(f, from, until)| {
            serde_json::json!({
                "fault": f.name(),
                "node": f.node(),
                "from_s": from.as_secs_f64(),
                "healed_s": until.as_secs_f64(),
            })
        })
        .collect();
    // The soak's curves: every node's RSS and descriptors, each second.
    json["samples"] = (o.history.rss.iter().zip(&o.history.fds))
        .map(|(&(at, node, rss), &(_, _, fds))| {
            serde_json::json!({ "t_s": at.as_secs_f64(), "node": node, "rss": rss, "fds": fds })
        })
        .collect();
    let text = serde_json::to_string_pretty(&json).map_err(std::io::Error::other)?;
    std::fs::write(path, text)
}
