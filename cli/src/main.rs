//! `groupcache`: serve a node, get a key, check ring placement, or run a
//! demo cluster, without writing Rust.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clap::{Parser, Subcommand};
use groupcache_cli::check;
use groupcache_cli::config::{ServeConfig, TlsSpec};
use groupcache_cli::http::{self, HttpLimits};
use groupcache_driver::core::ring::Ring;
use groupcache_tokio::{sample, Bytes, Client, CoreThreads, Node, Tokio, WriteOp};

/// A distributed read-through cache, wire-compatible with go-needle/groupcache.
#[derive(Parser)]
#[command(name = "groupcache", version, about)]
struct Cli {
    /// Worker threads (default: one per core; 1 runs everything on one thread).
    #[arg(long, global = true)]
    threads: Option<usize>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run a node (peer port, and optionally an HTTP front) from flags and/or a TOML file.
    Serve(Box<ServeArgs>),
    /// Ask a node for one key; print the value, or the error and exit non-zero.
    Get {
        #[command(flatten)]
        to: NodeArgs,
        /// Group name.
        group: String,
        /// Keys: one prints its value; several are fetched in one
        /// pipelined batch and print a line `KEY<TAB>VALUE` each, in order
        /// (errors on standard error; exit 1 if any failed).
        #[arg(required = true)]
        keys: Vec<String>,
    },
    /// Store a value at its key's owner; every other node drops its copy.
    /// Exits 0 when every node was told, 3 when the owner stored it but some
    /// peers were not reached (printed; their copies expire within the hot
    /// TTL), 1 on failure.
    Set {
        #[command(flatten)]
        to: NodeArgs,
        /// Group name.
        group: String,
        /// Key.
        key: String,
        /// The value; `-` reads it from standard input.
        value: String,
        /// Seconds to serve it (capped by the group's TTL; default: the
        /// group's TTL).
        #[arg(long)]
        ttl: Option<u64>,
    },
    /// Remove a key from every node. Exit codes as for `set`.
    Remove {
        #[command(flatten)]
        to: NodeArgs,
        /// Group name.
        group: String,
        /// Key.
        key: String,
    },
    /// Forget every key of a group on every node. Exit codes as for `set`.
    Purge {
        #[command(flatten)]
        to: NodeArgs,
        /// Group name.
        group: String,
    },
    /// Print which peer owns each key (same placement as the Go original).
    Ring {
        /// Ring points per peer.
        #[arg(long, default_value_t = 50)]
        replicas: usize,
        /// Peers in cluster order, comma-separated.
        #[arg(long, value_delimiter = ',', required = true)]
        peers: Vec<String>,
        /// Keys to place.
        #[arg(required = true)]
        keys: Vec<String>,
    },
    /// Start three nodes and the HTTP front with the sample data, run the
    /// original README's requests, then serve until Ctrl-C.
    Demo {
        /// HTTP front address.
        #[arg(long, default_value = "127.0.0.1:9999")]
        http: SocketAddr,
        /// Let the OS choose every port (instead of 8001-8003 and --http).
        #[arg(long)]
        any_port: bool,
        /// Exit after the request script instead of serving.
        #[arg(long)]
        exit: bool,
    },
}

/// The node a client command talks to, and how.
#[derive(clap::Args)]
struct NodeArgs {
    /// Peer address of any node, e.g. 127.0.0.1:8001.
    #[arg(long)]
    node: String,
    #[command(flatten)]
    tls: TlsSpec,
}

impl NodeArgs {
    /// A client of the node, speaking TLS if the files are named.
    fn client(&self) -> Result<Client, String> {
        let c = Client::new(&self.node);
        Ok(match self.tls.load()? {
            Some(t) => c.tls(t),
            None => c,
        })
    }
}

#[derive(clap::Args)]
struct ServeArgs {
    /// TOML file with the settings; flags override it.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Check the configuration (groups, origins, peers, DNS), print what the
    /// node would run with, and exit: 0 if it would start, 1 with the
    /// reason if not.
    #[arg(long)]
    check: bool,
    #[command(flatten)]
    settings: ServeConfig,
}

impl ServeArgs {
    fn config(self) -> Result<ServeConfig, String> {
        let file = match &self.config {
            Some(p) => ServeConfig::from_file(p)?,
            None => ServeConfig::default(),
        };
        ServeConfig::layered(file, self.settings)
    }
}

/// The allocator: see the dependency's note in Cargo.toml.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    // Every connection costs a descriptor: take what the hard limit allows,
    // so the connection caps, not the descriptor limit, are what binds.
    #[cfg(unix)]
    if let Err(e) = rlimit::increase_nofile_limit(u64::MAX) {
        tracing::warn!("cannot raise the open-file limit: {e}");
    }
    if let Cmd::Ring {
        replicas,
        peers,
        keys,
    } = &cli.cmd
    {
        let ring = Ring::with_peers(*replicas, peers);
        let mut out = std::io::stdout().lock();
        for k in keys {
            let _ = writeln!(out, "{k}\t{}", ring.owner(k).unwrap_or_default());
        }
        return ExitCode::SUCCESS;
    }
    let rt = match cli.threads {
        Some(1) => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build(),
        Some(n) => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(n)
            .enable_all()
            .build(),
        None => tokio::runtime::Runtime::new(),
    };
    let rt = match rt {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("groupcache: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = rt.block_on(async {
        match cli.cmd {
            Cmd::Serve(args) if args.check => {
                let report = check::check(&(*args).config()?).await?;
                print!("{report}");
                Ok(())
            }
            Cmd::Serve(args) => serve((*args).config()?).await,
            Cmd::Get { to, group, keys } => get(&to.client()?, &group, &keys).await,
            Cmd::Set {
                to,
                group,
                key,
                value,
                ttl,
            } => {
                let value = read_value(value)?;
                let ttl = ttl.map(Duration::from_secs);
                let op = WriteOp::set(&key, value, ttl);
                return Ok(write(&to.client()?, &group, op).await);
            }
            Cmd::Remove { to, group, key } => {
                let op = WriteOp::remove(&key);
                return Ok(write(&to.client()?, &group, op).await);
            }
            Cmd::Purge { to, group } => {
                return Ok(write(&to.client()?, &group, WriteOp::Purge).await)
            }
            Cmd::Demo {
                http,
                any_port,
                exit,
            } => demo(http, any_port, exit).await,
            Cmd::Ring { .. } => unreachable!("handled above"),
        }
        .map(|()| ExitCode::SUCCESS)
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("groupcache: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Completes on Ctrl-C or SIGTERM.
async fn stop_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}

/// Starts the HTTP front on `addr` in the background; returns its address.
async fn start_front(
    addr: SocketAddr,
    api: Node,
    all: Vec<Node>,
    limits: HttpLimits,
) -> Result<SocketAddr, String> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| format!("HTTP front on {addr}: {e}"))?;
    let bound = listener.local_addr().map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        if let Err(e) = http::serve(listener, api, all, limits, stop_signal()).await {
            tracing::error!("HTTP front stopped: {e}");
        }
    });
    Ok(bound)
}

async fn serve(mut cfg: ServeConfig) -> Result<(), String> {
    #[cfg(unix)]
    if let Ok((soft, _)) = rlimit::getrlimit(rlimit::Resource::NOFILE) {
        if let Some(warning) = cfg.fit_descriptors(soft) {
            tracing::warn!("{warning}");
        }
    }
    let mut builder = cfg.builder()?;
    // Kept until the node has shut down: dropping it stops its threads.
    let cores = match cfg.accept_threads {
        Some(n) if n > 0 => Some(
            CoreThreads::start(n).map_err(|e| format!("cannot start the accept threads: {e}"))?,
        ),
        _ => None,
    };
    if let Some(cores) = &cores {
        builder = builder.accept_on(cores.runtimes());
    }
    let node = builder.start().await.map_err(|e| e.to_string())?;
    println!(
        "node {} listening on {}",
        node.self_addr(),
        node.local_addr()
    );
    if let Some(addr) = cfg.http {
        let https = cfg.http_tls.then(|| node.tls()).flatten();
        let scheme = if https.is_some() { "https" } else { "http" };
        let limits = cfg.http_limits(https);
        let bound = start_front(addr, node.clone(), vec![node.clone()], limits).await?;
        println!("http front on {scheme}://{bound}");
    }
    stop_signal().await;
    eprintln!("groupcache: shutting down");
    node.shutdown().await;
    drop(cores);
    Ok(())
}

async fn get(client: &Client, group: &str, keys: &[String]) -> Result<(), String> {
    if let [key] = keys {
        let value = client.get(group, key).await.map_err(|e| e.to_string())?;
        let mut out = std::io::stdout().lock();
        return out
            .write_all(&value)
            .and_then(|()| out.write_all(b"\n"))
            .map_err(|e| e.to_string());
    }
    let results = client.get_many(group, keys).await;
    let mut out = std::io::stdout().lock();
    let mut failed = 0;
    for (key, r) in keys.iter().zip(results) {
        match r {
            Ok(v) => {
                let line = [key.as_bytes(), b"\t", &v, b"\n"].concat();
                out.write_all(&line).map_err(|e| e.to_string())?;
            }
            Err(e) => {
                failed += 1;
                eprintln!("{key}\t{e}");
            }
        }
    }
    match failed {
        0 => Ok(()),
        n => Err(format!("{n} of {} keys failed", keys.len())),
    }
}

/// The value argument of `set`: itself, or standard input for `-`.
fn read_value(arg: String) -> Result<Bytes, String> {
    if arg != "-" {
        return Ok(arg.into());
    }
    let mut v = Vec::new();
    std::io::Read::read_to_end(&mut std::io::stdin().lock(), &mut v)
        .map_err(|e| format!("reading the value from standard input: {e}"))?;
    Ok(v.into())
}

/// Carries out a write through `node`: 0 when every node was told, 3 when
/// it took effect but some peers were not reached, 1 on failure.
async fn write(client: &Client, group: &str, op: WriteOp) -> ExitCode {
    match client.write(group, op).await {
        Ok(r) if r.not_reached.is_empty() => ExitCode::SUCCESS,
        Ok(r) => {
            let peers: Vec<&str> = r.not_reached.iter().map(|p| &**p).collect();
            eprintln!(
                "groupcache: not reached: {} (their copies expire within the hot TTL)",
                peers.join(", ")
            );
            ExitCode::from(3)
        }
        Err(e) => {
            eprintln!("groupcache: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn demo(http: SocketAddr, any_port: bool, exit: bool) -> Result<(), String> {
    let rt = Tokio::current();
    let addrs = if any_port {
        vec![SocketAddr::from(([127, 0, 0, 1], 0)); 3]
    } else {
        sample::default_addrs(&rt).await
    };
    let loaded: Arc<Mutex<Vec<(String, usize)>>> = Arc::default();
    let log = loaded.clone();
    let nodes = sample::start_cluster(&rt, &addrs, move |node, group, key| {
        log.lock().unwrap().push((format!("{group}/{key}"), node));
    })
    .await
    .map_err(|e| e.to_string())?;
    for (i, n) in nodes.iter().enumerate() {
        println!("node {i}: {}", n.self_addr());
    }
    let http = if any_port {
        SocketAddr::from(([127, 0, 0, 1], 0))
    } else {
        http
    };
    let front = start_front(http, nodes[0].clone(), nodes.clone(), HttpLimits::default()).await?;
    println!("http front: http://{front}/api?group=score&key=Tom  (also /metrics, /healthz)");
    let client = reqwest::Client::new();
    let mut seen = std::collections::HashSet::new();
    for (group, key) in sample::SCRIPT {
        let url = format!("http://{front}/api?group={group}&key={key}");
        let (status, body) = match client.get(&url).send().await {
            Ok(r) => (r.status().as_u16(), r.text().await.unwrap_or_default()),
            Err(e) => return Err(format!("GET {url}: {e}")),
        };
        let what = format!("{group}/{key}");
        let loads: Vec<usize> = loaded
            .lock()
            .unwrap()
            .iter()
            .filter(|(k, _)| *k == what)
            .map(|(_, n)| *n)
            .collect();
        let how = match loads[..] {
            [] => "not loaded".to_string(),
            [n] if seen.insert(what.clone()) => format!("loaded by node {n}"),
            [n, ..] => format!("cached, loaded earlier by node {n}"),
        };
        println!(
            "GET /api?group={group}&key={key} -> {status} {} ({how})",
            body.trim_end()
        );
    }
    if !exit {
        println!("serving; Ctrl-C to stop");
        stop_signal().await;
    }
    for n in &nodes {
        n.shutdown().await;
    }
    Ok(())
}
