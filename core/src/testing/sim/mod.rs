//! A deterministic cluster simulator: nodes, in-memory links with latency,
//! a fake clock, counted loaders and faults.

mod network;
mod node;

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::node::{
    Claim, Claimed, Config, ConnId, Error, Get, GetId, GroupCaches, Inbound, InboundOutput, Landed,
    LoadError, LoadId, Loaded, Node, Output, WriteId, WriteOp, WriteReport, Written,
};
use network::{Event, Network};
pub use node::SimNode;

/// A loader of the simulator: `(group, key) -> value`.
pub type SimLoader = Box<dyn FnMut(&str, &str) -> Result<Loaded, LoadError>>;

/// How a stopped or partitioned node looks from the others.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Connections are refused at once.
    Refuse,
    /// Connects never complete and bytes wait (see [`Sim::cut`]): only
    /// timeouts tell.
    Blackhole,
    /// A stopped process (SIGSTOP): connects complete, as the kernel accepts
    /// them, but the bytes sent to it wait until [`Sim::heal`], so nothing
    /// is answered before then.
    Frozen,
}

/// A deterministic cluster: nodes, in-memory links with latency, a fake
/// clock, loaders that are counted, and faults.
pub struct Sim {
    /// The fake clock.
    pub now: Instant,
    /// The nodes, by index.
    pub nodes: Vec<SimNode>,
    /// One-way delay of every link.
    pub latency: Duration,
    /// Time a loader takes.
    pub load_latency: Duration,
    /// Loaders never finish (a hung origin); only the load timeout ends them.
    pub hang_loads: bool,
    /// Every load the nodes cancelled: (node, load).
    pub cancelled: Vec<(usize, LoadId)>,
    /// Every loader call: (node, group, key).
    pub load_calls: Vec<(usize, String, String)>,
    /// When each loader call of [`Sim::load_calls`] was made.
    pub load_at: Vec<Instant>,
    /// Finished gets: (node, get) → result.
    pub results: HashMap<(usize, GetId), Result<Bytes, Error>>,
    /// Finished writes: (node, write) → outcome.
    pub writes: HashMap<(usize, WriteId), Result<WriteReport, Error>>,
    /// Nodes that are down, and how.
    pub faults: HashMap<usize, Fault>,
    /// Bytes sent per node (to count traffic).
    pub sent_bytes: Vec<u64>,
    /// Accepted connections keep their own state, in the simulator, as
    /// the driver's connection tasks do ([`Node::accept_inbound`]); when
    /// false the node keeps it ([`Node::accept`]). True by default.
    pub detached: bool,
    /// In-process misses claim their loads ([`GroupCaches::claim`]), as
    /// the driver's do; when false they go through [`Node::get`]. True by
    /// default.
    pub claims: bool,
    network: Network,
}

/// Shards each member's caches in [`SIM_SHARDS`] (of 1 KiB at least), as
/// the driver does on a machine with cores to spare, unless its config
/// already asks for shards.
pub fn sharded(mut c: Config) -> Config {
    if c.cache_shards == 0 {
        c.cache_shards = SIM_SHARDS;
        c.min_shard_bytes = 1024;
    }
    c
}

/// Cache shards of a simulated member: not a power of two, so nothing
/// leans on one.
pub const SIM_SHARDS: usize = 3;

impl Sim {
    /// `n` nodes named `node-0:9000`…, each knowing all of them, with groups
    /// added by `setup` and loaders made by `loader(i)`; their caches are
    /// sharded in [`SIM_SHARDS`] unless `config` asks for shards.
    pub fn new(
        n: usize,
        mut config: impl FnMut(&str) -> Config,
        mut setup: impl FnMut(&mut Node),
        mut loader: impl FnMut(usize) -> SimLoader,
    ) -> Self {
        let now = super::epoch();
        let addrs: Vec<String> = (0..n).map(|i| format!("node-{i}:9000")).collect();
        let nodes = addrs
            .iter()
            .enumerate()
            .map(|(i, a)| {
                let mut node = Node::new(sharded(config(a)));
                node.set_peers(now, &addrs);
                setup(&mut node);
                SimNode::new(node, a.clone(), loader(i))
            })
            .collect();
        Self {
            now,
            nodes,
            latency: Duration::from_millis(1),
            load_latency: Duration::from_millis(10),
            hang_loads: false,
            cancelled: Vec::new(),
            load_calls: Vec::new(),
            load_at: Vec::new(),
            results: HashMap::new(),
            writes: HashMap::new(),
            faults: HashMap::new(),
            sent_bytes: vec![0; n],
            detached: true,
            claims: true,
            network: Network::default(),
        }
    }

    /// Adds a process that is not a member (no group, no peer list), as
    /// the non-member client runs one; returns its index. It reaches the
    /// members with [`Node::get_via`] and [`Node::write_via`].
    pub fn add_client(&mut self) -> usize {
        let i = self.nodes.len();
        let addr = format!("client-{i}:0");
        let node = Node::new(Config::new(addr.clone()));
        let loader: SimLoader =
            Box::new(|_, _| Err(LoadError::Failed("a client loads nothing".into())));
        self.nodes.push(SimNode::new(node, addr, loader));
        self.sent_bytes.push(0);
        i
    }

    /// Adds a member no peer list names yet, as a node that scales the
    /// cluster out starts; returns its index. It joins when
    /// [`Sim::set_members`] names it.
    pub fn add_member(
        &mut self,
        config: impl FnOnce(&str) -> Config,
        setup: impl FnOnce(&mut Node),
        loader: SimLoader,
    ) -> usize {
        let i = self.nodes.len();
        let addr = format!("node-{i}:9000");
        let mut node = Node::new(sharded(config(&addr)));
        setup(&mut node);
        self.nodes.push(SimNode::new(node, addr, loader));
        self.sent_bytes.push(0);
        i
    }

    /// Gives every node in `members` the peer list naming exactly them,
    /// now; the others are left as they are.
    pub fn set_members(&mut self, members: &[usize]) {
        for &i in members {
            self.set_peers_of(i, members);
        }
    }

    /// Gives node `i` the peer list naming exactly `members`, now, whether
    /// or not it is one of them (a node outside a DNS answer forwards to
    /// the members it lists).
    pub fn set_peers_of(&mut self, i: usize, members: &[usize]) {
        let addrs: Vec<String> = members
            .iter()
            .map(|&m| self.nodes[m].addr.clone())
            .collect();
        self.nodes[i].node.set_peers(self.now, &addrs);
        self.drain(i);
    }

    /// Cuts the link between two nodes both ways: new connections never
    /// complete, and bytes on standing ones wait, as TCP retransmits them,
    /// until [`Sim::heal`] (lost if the connection closes first).
    pub fn cut(&mut self, a: usize, b: usize) {
        self.network.cut(a, b);
    }

    /// Stops the bytes from node `from` to node `to`, one way, as
    /// [`Sim::cut`] does.
    pub fn cut_one_way(&mut self, from: usize, to: usize) {
        self.network.cut_one_way(from, to);
    }

    /// Ends every fault: cuts mended, stopped nodes running again, and
    /// the bytes held meanwhile on links that still stand delivered.
    pub fn heal(&mut self) {
        self.network.mend();
        self.faults.clear();
        for to in self.network.held_ends() {
            for data in self.network.take_held(to) {
                self.network.deliver(to, self.now + self.latency, data);
            }
        }
    }

    /// Starts a get on node `i`: `Ok` if answered at once, else its id.
    /// With [`Sim::claims`], a miss claims its load as the driver's does.
    pub fn get(&mut self, i: usize, group: &str, key: &str) -> Result<Result<Bytes, Error>, GetId> {
        let now = self.now;
        let node = &mut self.nodes[i].node;
        let caches = (self.claims && !node.is_shutting_down())
            .then(|| node.caches(group))
            .flatten();
        let r = match caches.as_ref().map(|c| (c, c.claim(key, now))) {
            None => node.get(now, group, key),
            Some((_, Claim::Hit(hit))) => Get::Ready(Ok(hit.value)),
            Some((_, Claim::Node)) => node.get_missed(now, group, key),
            Some((c, Claim::Load(claimed))) => self.run_claim(i, c, group, key, claimed),
        };
        self.drain(i);
        match r {
            Get::Ready(r) => Ok(r),
            Get::Pending(id) => Err(id),
        }
    }

    /// Runs a claimed load of node `i` as the driver does: a loader that
    /// takes no time answers at once and lands in the shard; any other is
    /// adopted by the node.
    fn run_claim(
        &mut self,
        i: usize,
        caches: &GroupCaches,
        group: &str,
        key: &str,
        claimed: Claimed,
    ) -> Get {
        self.load_calls.push((i, group.into(), key.into()));
        self.load_at.push(self.now);
        let r = (self.nodes[i].loader)(group, key);
        let now = self.now;
        let node = &mut self.nodes[i].node;
        if self.load_latency.is_zero() && !self.hang_loads {
            return match caches.land_claimed(key, claimed, now, r) {
                Landed::Done { result, wake } => {
                    if wake {
                        node.wake(now);
                    }
                    Get::Ready(result)
                }
                Landed::Node(claimed, r) => node.land_claimed(now, group, key, claimed, r),
            };
        }
        let id = claimed.id;
        let Some(get) = node.adopt(now, group, key, claimed) else {
            return node.get_missed(now, group, key);
        };
        if !self.hang_loads {
            self.network
                .schedule(now + self.load_latency, Event::LoadDone(i, id, r));
        }
        Get::Pending(get)
    }

    /// Starts a write through node `i`: `Ok` if done at once, else its id.
    pub fn write(
        &mut self,
        i: usize,
        group: &str,
        op: WriteOp,
    ) -> Result<Result<WriteReport, Error>, WriteId> {
        let r = self.nodes[i].node.write(self.now, group, op);
        self.drain(i);
        match r {
            Written::Ready(r) => Ok(r),
            Written::Pending(id) => Err(id),
        }
    }

    /// Runs a write through node `i` to its end (at most a minute of
    /// simulated time) and returns its outcome.
    pub fn write_and_wait(
        &mut self,
        i: usize,
        group: &str,
        op: WriteOp,
    ) -> Result<WriteReport, Error> {
        match self.write(i, group, op) {
            Ok(r) => r,
            Err(id) => {
                let done =
                    self.run_until(Duration::from_secs(60), |s| s.writes.contains_key(&(i, id)));
                assert!(done, "write {id} through node {i} never finished");
                self.writes.remove(&(i, id)).expect("finished")
            }
        }
    }

    /// Runs a get through node `i` to its end (at most a minute of
    /// simulated time) and returns its outcome.
    pub fn get_and_wait(&mut self, i: usize, group: &str, key: &str) -> Result<Bytes, Error> {
        match self.get(i, group, key) {
            Ok(r) => r,
            Err(id) => {
                let done = self.run_until(Duration::from_secs(60), |s| {
                    s.results.contains_key(&(i, id))
                });
                assert!(done, "get {id} through node {i} never finished");
                self.results.remove(&(i, id)).expect("finished")
            }
        }
    }

    /// The result of a pending get, once finished.
    pub fn result(&self, i: usize, id: GetId) -> Option<&Result<Bytes, Error>> {
        self.results.get(&(i, id))
    }

    fn blocked(&self, from: usize, to: usize) -> bool {
        self.faults.contains_key(&to) || self.network.is_cut(from, to)
    }

    /// Carries out every output of node `i`.
    pub fn drain(&mut self, i: usize) {
        loop {
            let written = self.drain_once(i);
            if written.is_empty() {
                return;
            }
            // Links take every byte at once: report it all written.
            let now = self.now;
            for (conn, n) in written {
                self.nodes[i].node.handle_written(now, conn, n);
            }
        }
    }

    /// Carries out the outputs queued now; returns the bytes sent per
    /// connection, in the order the connections were first written.
    fn drain_once(&mut self, i: usize) -> Vec<(ConnId, usize)> {
        let mut written: Vec<(ConnId, usize)> = Vec::new();
        while let Some(o) = self.nodes[i].node.poll_output() {
            let arrive = self.now + self.latency;
            match o {
                Output::Load { id, group, key } => {
                    self.load_calls
                        .push((i, group.to_string(), key.to_string()));
                    self.load_at.push(self.now);
                    let r = (self.nodes[i].loader)(&group, &key);
                    if !self.hang_loads {
                        self.network
                            .schedule(self.now + self.load_latency, Event::LoadDone(i, id, r));
                    }
                }
                Output::CancelLoad { id } => self.cancelled.push((i, id)),
                Output::Connect { conn, addr } => {
                    let target = self.nodes.iter().position(|n| *n.addr == *addr);
                    // A stopped process's kernel still accepts: the link
                    // stands, and its bytes wait until the process runs.
                    let frozen = |j: usize| self.faults.get(&j) == Some(&Fault::Frozen);
                    match target {
                        Some(j)
                            if !self.network.is_cut(i, j)
                                && (!self.faults.contains_key(&j) || frozen(j)) =>
                        {
                            let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
                            let accepted = if self.detached {
                                let target = &mut self.nodes[j];
                                target.node.accept_inbound(self.now, ip).map(|inbound| {
                                    let cj = inbound.id();
                                    target.inbounds.insert(cj, inbound);
                                    cj
                                })
                            } else {
                                self.nodes[j].node.accept(self.now, ip)
                            };
                            match accepted {
                                Ok(cj) => {
                                    self.network.link((i, conn), (j, cj));
                                    self.network.schedule(arrive, Event::Connected(i, conn));
                                }
                                Err(_) => self.network.schedule(arrive, Event::Closed(i, conn)),
                            }
                        }
                        Some(j) if self.faults.get(&j) == Some(&Fault::Blackhole) => {}
                        Some(j) if self.network.is_cut(i, j) => {}
                        _ => self.network.schedule(arrive, Event::Closed(i, conn)),
                    }
                }
                Output::Send { conn, data } => {
                    match written.iter_mut().find(|(c, _)| *c == conn) {
                        Some((_, n)) => *n += data.len(),
                        None => written.push((conn, data.len())),
                    }
                    self.transmit(i, conn, data);
                }
                Output::Answer {
                    conn,
                    seq,
                    response,
                } => {
                    if let Some(mut inbound) = self.nodes[i].inbounds.remove(&conn) {
                        inbound.handle_answer(self.now, seq, response);
                        self.pump_inbound(i, inbound);
                    }
                }
                Output::Close { conn, .. } => {
                    self.nodes[i].inbounds.remove(&conn);
                    self.hang_up(i, conn);
                }
                Output::Done { get, result } => {
                    self.results.insert((i, get), result);
                }
                Output::Written { write, result } => {
                    self.writes.insert((i, write), result);
                }
            }
        }
        written
    }

    /// Sends `data` from node `i` on `conn` to the other end, if the link
    /// stands, in random pieces to exercise the decoders.
    fn transmit(&mut self, i: usize, conn: ConnId, data: Bytes) {
        self.sent_bytes[i] += data.len() as u64;
        let Some(to) = self.network.peer((i, conn)) else {
            return;
        };
        if self.blocked(i, to.0) {
            self.network.hold(to, data);
            return;
        }
        for held in self.network.take_held(to) {
            self.network.deliver(to, self.now + self.latency, held);
        }
        self.network.deliver(to, self.now + self.latency, data);
    }

    /// Node `i` closed `conn`: the other end sees it closed.
    fn hang_up(&mut self, i: usize, conn: ConnId) {
        if let Some((j, cj)) = self.network.unlink((i, conn)) {
            self.network
                .schedule(self.now + self.latency, Event::Closed(j, cj));
        }
    }

    /// Carries out what an inbound connection of node `i` whose state the
    /// simulator keeps asks, as the driver's connection task does: requests
    /// to the node, bytes to the link (written at once), a close to both.
    fn pump_inbound(&mut self, i: usize, mut inbound: Inbound) {
        let (now, conn) = (self.now, inbound.id());
        while let Some(o) = inbound.poll_output() {
            match o {
                InboundOutput::Request { seq, request } => {
                    self.nodes[i].node.serve(now, conn, seq, request);
                }
                InboundOutput::Send(data) => {
                    let n = data.len();
                    self.transmit(i, conn, data);
                    inbound.handle_written(now, n);
                }
                InboundOutput::Close(_) => {
                    self.nodes[i].node.handle_closed(now, conn);
                    self.hang_up(i, conn);
                    return;
                }
            }
        }
        self.nodes[i].inbounds.insert(conn, inbound);
    }

    /// Advances the clock to the next event or timeout and handles it.
    /// Returns false when nothing is scheduled before `until`.
    pub fn step(&mut self, until: Instant) -> bool {
        let next_event = self.network.next_at();
        let next_timer = self
            .nodes
            .iter()
            .enumerate()
            .filter_map(|(i, n)| n.next_timeout().map(|t| (t, i)))
            .min();
        let take_event = match (next_event, next_timer) {
            (None, None) => return false,
            (Some(e), Some((t, _))) => e <= t,
            (Some(_), None) => true,
            (None, Some(_)) => false,
        };
        if take_event {
            let Some((at, e)) = self.network.pop_due(until) else {
                return false;
            };
            self.now = self.now.max(at);
            let now = self.now;
            let i = match e {
                Event::Connected(i, c) => {
                    self.nodes[i].node.handle_connected(now, c);
                    i
                }
                Event::Data(i, c, d) => {
                    match self.nodes[i].inbounds.remove(&c) {
                        Some(mut inbound) => {
                            inbound.handle_data(now, &d);
                            self.pump_inbound(i, inbound);
                        }
                        None => self.nodes[i].node.handle_data(now, c, &d),
                    }
                    i
                }
                Event::Closed(i, c) => {
                    self.network.forget((i, c));
                    self.nodes[i].inbounds.remove(&c);
                    self.nodes[i].node.handle_closed(now, c);
                    i
                }
                Event::LoadDone(i, id, r) => {
                    self.nodes[i].node.handle_load(now, id, r);
                    i
                }
            };
            self.drain(i);
        } else {
            let (t, i) = next_timer.expect("timer");
            if t > until {
                return false;
            }
            self.now = self.now.max(t);
            let now = self.now;
            self.nodes[i].node.handle_timeout(now);
            let due: Vec<ConnId> = (self.nodes[i].inbounds.iter())
                .filter(|(_, inbound)| inbound.poll_timeout().is_some_and(|d| d <= now))
                .map(|(&c, _)| c)
                .collect();
            for c in due {
                if let Some(mut inbound) = self.nodes[i].inbounds.remove(&c) {
                    inbound.handle_timeout(now);
                    self.pump_inbound(i, inbound);
                }
            }
            self.drain(i);
        }
        for n in &self.nodes {
            if let Err(e) = n.node.validate() {
                panic!("{}: invariant broken: {e}", n.addr);
            }
        }
        true
    }

    /// Runs until `done()` holds or simulated time reaches `limit` from now.
    /// Returns whether `done()` held.
    pub fn run_until(&mut self, limit: Duration, mut done: impl FnMut(&Self) -> bool) -> bool {
        let until = self.now + limit;
        loop {
            if done(self) {
                return true;
            }
            if !self.step(until) {
                self.now = self.now.max(until);
                return done(self);
            }
        }
    }

    /// Runs for `d` of simulated time.
    pub fn run_for(&mut self, d: Duration) {
        self.run_until(d, |_| false);
    }

    /// The `skip`-th key (`key-0`, `key-1`, …) that the ring gives to node
    /// `owner`.
    pub fn key_owned_by(&self, owner: usize, skip: usize) -> String {
        let addr = self.nodes[owner].addr.as_str();
        (0..)
            .map(|i| format!("key-{i}"))
            .filter(|k| self.nodes[0].node.owner(k) == Some(addr))
            .nth(skip)
            .expect("some key is owned by every node")
    }

    /// Loader calls for one key across the cluster.
    pub fn loads_of(&self, group: &str, key: &str) -> usize {
        self.load_calls
            .iter()
            .filter(|(_, g, k)| g == group && k == key)
            .count()
    }
}
