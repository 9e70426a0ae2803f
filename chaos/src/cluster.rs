//! The node processes: `groupcache serve` on loopback ports the OS chose,
//! started, killed, stopped and continued, watched for exits and sampled
//! for resident memory.

use std::net::{IpAddr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::process::{Child, Command};

use crate::Error;

/// Where a node runs: its address, and its network namespace if it has
/// one.
#[derive(Debug, Clone)]
pub struct Place {
    /// The address it listens on.
    pub ip: IpAddr,
    /// Its network namespace; `None`: the harness's own (loopback).
    pub ns: Option<String>,
}

/// One node: its addresses and its process, if running.
#[derive(Debug)]
pub struct NodeProc {
    /// Peer port.
    pub peer: SocketAddr,
    /// HTTP front.
    pub http: SocketAddr,
    ns: Option<String>,
    child: Option<Child>,
    /// The nemesis stopped or killed it: an exit now is expected.
    pub expected_exit: bool,
    log: PathBuf,
}

/// The cluster's processes and how to start them.
#[derive(Debug)]
pub struct Cluster {
    /// The nodes, by index.
    pub nodes: Vec<NodeProc>,
    bin: PathBuf,
    args: Vec<String>,
    peers: String,
}

/// Two ports the OS chose on 127.0.0.1, free when this returns.
fn free_ports(n: usize) -> Result<Vec<SocketAddr>, Error> {
    // Held together, so the OS gives distinct ports; released for the
    // nodes to bind (std's listeners set SO_REUSEADDR, so a restarted node
    // can bind its port again at once).
    let held: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<Result<_, _>>()
        .map_err(|e| Error::Setup(format!("cannot pick a port: {e}")))?;
    held.iter()
        .map(|l| l.local_addr())
        .collect::<Result<_, _>>()
        .map_err(|e| Error::Setup(format!("cannot pick a port: {e}")))
}

impl Cluster {
    /// A node at each of `places`, serving one group `spec`
    /// (`NAME:MAX_BYTES:TTL_SECS:ORIGIN`) with `extra` flags, logging into
    /// `dir`. Nothing runs yet. Ports are ones the OS gave the harness,
    /// free in a node's own namespace too.
    ///
    /// With `dns` (a name, and the server that answers it), the nodes
    /// find each other in its A records, every one on the same peer port,
    /// and look again every half second; else each is given the list.
    pub fn new(
        bin: &Path,
        places: &[Place],
        spec: &str,
        extra: &[String],
        dir: &Path,
        dns: Option<(&str, SocketAddr)>,
    ) -> Result<Self, Error> {
        let n = places.len();
        let ports = free_ports(2 * n)?;
        // One peer port for all when found by DNS: an A record has none.
        let peer_port = |i: usize| match dns {
            Some(_) => ports[0].port(),
            None => ports[2 * i].port(),
        };
        let nodes: Vec<NodeProc> = (0..n)
            .map(|i| NodeProc {
                peer: SocketAddr::new(places[i].ip, peer_port(i)),
                http: SocketAddr::new(places[i].ip, ports[2 * i + 1].port()),
                ns: places[i].ns.clone(),
                child: None,
                expected_exit: false,
                log: dir.join(format!("node-{i}.log")),
            })
            .collect();
        let mut args = vec!["--group".to_string(), spec.to_string()];
        args.extend(extra.iter().cloned());
        let peers = match dns {
            Some((name, server)) => {
                args.extend(["--dns-server".into(), server.to_string()]);
                args.extend(["--dns-interval".into(), "500ms".into()]);
                format!("dns+{name}:{}", ports[0].port())
            }
            None => (nodes.iter())
                .map(|n| n.peer.to_string())
                .collect::<Vec<_>>()
                .join(","),
        };
        Ok(Self {
            nodes,
            bin: bin.to_path_buf(),
            args,
            peers,
        })
    }

    /// Starts node `i` (cold: a new process), logging to its file.
    pub fn start(&mut self, i: usize) -> Result<(), Error> {
        let n = &mut self.nodes[i];
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&n.log)
            .map_err(|e| Error::Setup(format!("{}: {e}", n.log.display())))?;
        let err = log
            .try_clone()
            .map_err(|e| Error::Setup(format!("{}: {e}", n.log.display())))?;
        let mut cmd = match &n.ns {
            Some(ns) => {
                // `ip netns exec` becomes the node: the same process id.
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(&self.bin);
                c
            }
            None => Command::new(&self.bin),
        };
        let child = cmd
            .arg("serve")
            .args(["--listen", &n.peer.to_string()])
            .args(["--http", &n.http.to_string()])
            .args(["--peers", &self.peers])
            .args(&self.args)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| Error::Setup(format!("cannot start {}: {e}", self.bin.display())))?;
        n.child = Some(child);
        n.expected_exit = false;
        Ok(())
    }

    /// Waits until node `i`'s HTTP front answers `/healthz`, at most
    /// `limit`.
    pub async fn wait_ready(
        &self,
        i: usize,
        http: &reqwest::Client,
        limit: Duration,
    ) -> Result<(), Error> {
        let url = format!("http://{}/healthz", self.nodes[i].http);
        let until = Instant::now() + limit;
        loop {
            if let Ok(r) = http.get(&url).send().await {
                if r.status().is_success() {
                    return Ok(());
                }
            }
            if Instant::now() > until {
                return Err(Error::Setup(format!(
                    "node {i} not ready within {limit:?}; its log: {}",
                    self.nodes[i].log.display()
                )));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGKILL: the process ends at once, its caches with it.
    pub async fn kill(&mut self, i: usize) {
        let n = &mut self.nodes[i];
        n.expected_exit = true;
        if let Some(mut c) = n.child.take() {
            let _ = c.kill().await;
        }
    }

    /// Sends `signal` (`STOP`, `CONT`) to node `i`'s process.
    pub async fn signal(&mut self, i: usize, signal: &str) -> Result<(), Error> {
        let Some(pid) = self.nodes[i].child.as_ref().and_then(Child::id) else {
            return Ok(());
        };
        let status = Command::new("kill")
            .args([format!("-{signal}"), pid.to_string()])
            .status()
            .await
            .map_err(|e| Error::Setup(format!("kill -{signal}: {e}")))?;
        if !status.success() {
            return Err(Error::Setup(format!("kill -{signal} {pid}: {status}")));
        }
        Ok(())
    }

    /// Nodes whose process ended since the last look, with how; each is
    /// reported once.
    pub fn exited(&mut self) -> Vec<(usize, bool, String)> {
        let mut out = Vec::new();
        for (i, n) in self.nodes.iter_mut().enumerate() {
            let Some(c) = n.child.as_mut() else { continue };
            if let Ok(Some(status)) = c.try_wait() {
                out.push((i, n.expected_exit, status.to_string()));
                n.child = None;
            }
        }
        out
    }

    /// Each running node's resident memory in bytes and open descriptors,
    /// from `/proc`.
    pub fn sample(&self) -> Vec<(usize, u64, u64)> {
        let mut out = Vec::new();
        for (i, n) in self.nodes.iter().enumerate() {
            let Some(pid) = n.child.as_ref().and_then(Child::id) else {
                continue;
            };
            let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
                continue;
            };
            let kb = (status.lines())
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok());
            let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count() as u64);
            if let Some(kb) = kb {
                out.push((i, kb * 1024, fds));
            }
        }
        out
    }

    /// The last lines of node `i`'s log, for a report.
    pub fn log_tail(&self, i: usize, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.nodes[i].log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Continues every stopped process and kills every one.
    pub async fn stop_all(&mut self) {
        for i in 0..self.nodes.len() {
            let _ = self.signal(i, "CONT").await;
            self.kill(i).await;
        }
    }
}
