//! The node fuzz target: a sequence of inputs to the node state machine,
//! with the harness's checks after every step.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::IpAddr;
use std::time::Duration;

use arbitrary::Unstructured;
use bytes::{Bytes, BytesMut};

use crate::node::{
    Claim, Claimed, Config, ConnId, Get, GroupConfig, Landed, LoadError, Loaded, Node, WriteOp,
    Written,
};
use crate::testing::epoch;
use crate::wire::{encode_frame, Request, Response, OP_GET, OP_PEEK, OP_PURGE, OP_REMOVE, OP_SET};

use super::harness::{pick, versioned, Harness, FROM, GROUPS, KEYS, PEER, PEER_IP, SELF};

/// A sequence of inputs to the node state machine (gets, bytes on
/// connections, valid frames and garbage, load results, closes, time),
/// with its invariants checked after every step. At the end every load is
/// completed and time runs past every timeout: then every get must have
/// been answered and the node must be idle (nothing leaks or wedges).
pub fn node(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let mut cfg = Config::new(SELF);
    cfg.max_frame = 512;
    cfg.max_pipeline = 8;
    cfg.max_conns_per_peer = 2;
    cfg.max_inbound = 4;
    cfg.max_inbound_per_addr = 2;
    cfg.max_peer_inbound = 2;
    cfg.max_unwritten = 64;
    // Group g (1200 bytes) keeps one shard; h (4096 bytes, values of at
    // most 120, a shard at least 16 of them) two.
    cfg.cache_shards = 3;
    cfg.min_shard_bytes = 1024;
    let mut node = Node::new(cfg);
    node.set_peers(epoch(), [SELF, PEER, PEER_IP]);
    // Room for a handful of entries, each charged its overhead too.
    let mut g = GroupConfig::new("g", 1200).ttl(Duration::from_secs(5));
    g.max_loads = 2;
    g.load_timeout = Duration::from_secs(10);
    node.add_group(g).unwrap();
    let mut h = GroupConfig::new("h", 4096);
    h.max_value = 120;
    node.add_group(h).unwrap();
    let mut h = Harness {
        trace: std::env::var_os("GROUPCACHE_FUZZ_TRACE").is_some(),
        node,
        now: epoch(),
        loads: Vec::new(),
        connecting: Vec::new(),
        inbound: Vec::new(),
        detached: BTreeMap::new(),
        outbound: Vec::new(),
        gets: HashSet::new(),
        origin: HashMap::new(),
        load_version: HashMap::new(),
        asked: HashMap::new(),
        writes: HashMap::new(),
        floor: HashMap::new(),
        claims: Vec::new(),
    };
    let mut steps = 0;
    while !u.is_empty() && steps < 400 {
        steps += 1;
        if step(&mut u, &mut h).is_err() {
            break;
        }
        h.drain();
    }
    // Liveness: finish every load, let every timeout pass.
    if h.trace {
        eprintln!("final phase: pending gets {:?}", h.gets);
    }
    for (g, k, c, v) in std::mem::take(&mut h.claims) {
        land_claim(&mut h, g, k, c, Ok(versioned(v, 4).into()));
        h.drain();
    }
    for _ in 0..64 {
        for c in h.inbound.clone() {
            written(&mut h, c, usize::MAX);
            h.drain();
        }
        for id in std::mem::take(&mut h.loads) {
            let now = h.now;
            let v = versioned(h.load_version[&id], 4);
            h.node.handle_load(now, id, Ok(v.into()));
            h.drain();
        }
        h.now += Duration::from_secs(120);
        timeout(&mut h);
        h.drain();
        if h.loads.is_empty() && h.gets.is_empty() && h.node.is_idle() {
            break;
        }
    }
    assert!(h.gets.is_empty(), "gets never answered: {:?}", h.gets);
    assert!(h.writes.is_empty(), "writes never answered: {:?}", h.writes);
    assert!(
        h.node.is_idle(),
        "node not idle after every load and timeout"
    );
    for (c, inbound) in &h.detached {
        assert!(inbound.owes_nothing(), "{c} still owed an answer");
    }
}

/// What a loader returns for a key whose origin holds `version`.
fn load_result(
    u: &mut Unstructured<'_>,
    version: u32,
) -> arbitrary::Result<Result<Loaded, LoadError>> {
    Ok(match u.int_in_range(0..=3u8)? {
        0 => Err(LoadError::NotFound("nf".into())),
        1 => Err(LoadError::Failed("boom".into())),
        _ => Ok(versioned(version, u.int_in_range(0..=300)?).into()),
    })
}

/// A get as the driver makes it: a hit or a claim without the node, else
/// on through it.
fn claim_get(h: &mut Harness, g: &'static str, k: &'static str) {
    let now = h.now;
    let caches = (h.node.caches(g)).filter(|_| !h.node.is_shutting_down());
    let claim = caches.map(|c| c.claim(k, now));
    match claim {
        Some(Claim::Hit(_)) => {}
        Some(Claim::Load(c)) => {
            let v = h.version(g, k);
            h.claims.push((g, k, c, v));
        }
        Some(Claim::Node) | None => {
            let r = h.node.get_missed(now, g, k);
            h.pending(r);
        }
    }
}

/// A claim's loader answered at once: it lands in its shard, or through
/// the node if others joined its flight or it was passed over.
fn land_claim(
    h: &mut Harness,
    g: &'static str,
    k: &'static str,
    c: Claimed,
    r: Result<Loaded, LoadError>,
) {
    let now = h.now;
    let caches = h.node.caches(g).expect("a claim's group");
    match caches.land_claimed(k, c, now, r) {
        Landed::Done { wake, .. } => {
            // The driver looks again when closing too, for its idle check.
            if wake || h.node.is_shutting_down() {
                h.node.wake(now);
            }
        }
        Landed::Node(c, r) => {
            let r = h.node.land_claimed(now, g, k, c, r);
            h.pending(r);
        }
    }
}

/// A request from a client or peer; a write in it changes the origin first,
/// as an application would.
fn request_bytes(u: &mut Unstructured<'_>, h: &mut Harness) -> arbitrary::Result<BytesMut> {
    let mut b = BytesMut::new();
    let (group, key) = (*u.choose(&GROUPS)?, *u.choose(&KEYS)?);
    let op = *u.choose(&[OP_GET, OP_GET, OP_SET, OP_REMOVE, OP_PURGE, OP_PEEK, 9])?;
    let value = match op {
        OP_SET => {
            let v = h.bump(group, Some(key))[0].1;
            versioned(v, u.int_in_range(4..=40)?)
        }
        OP_REMOVE => {
            h.bump(group, Some(key));
            Bytes::new()
        }
        OP_PURGE => {
            h.bump(group, None);
            Bytes::new()
        }
        _ => Bytes::new(),
    };
    let req = Request {
        group: group.to_string(),
        key: key.to_string(),
        from_peer: u.arbitrary()?,
        ext: u.arbitrary()?,
        progress: u.arbitrary()?,
        op,
        value,
        ttl_ms: u.int_in_range(0..=3)? * 1000,
    };
    encode_frame(&req, &mut b);
    Ok(b)
}

/// The fake peer's answer to the oldest request it has not answered on
/// `conn`: a get's value is the version the origin had when it was asked.
fn response_bytes(
    u: &mut Unstructured<'_>,
    h: &mut Harness,
    conn: ConnId,
) -> arbitrary::Result<BytesMut> {
    let mut b = BytesMut::new();
    let keepalive = u.ratio(1, 4)?;
    let code = *u.choose(&[200, 404, 500, 0, -1, 302])?;
    let asked = if keepalive {
        None
    } else {
        h.asked.get_mut(&conn).and_then(|q| q.pop_front())
    };
    let value = match asked {
        // A peek (warm handoff) is answered like a get: the owner's copy.
        Some((req, v))
            if code == 200 && matches!(req.op, OP_GET | OP_PEEK) && !req.group.is_empty() =>
        {
            versioned(v, u.int_in_range(4..=8)?)
        }
        _ => {
            let len = u.int_in_range(0..=8)?;
            Bytes::copy_from_slice(u.bytes(len)?)
        }
    };
    let resp = Response {
        value,
        code,
        ttl_ms: u.int_in_range(0..=10_000)?,
        not_found: u.arbitrary()?,
        pipelining: u.arbitrary()?,
        load_failed: u.arbitrary()?,
        keepalive,
        writes: u.ratio(3, 4)?,
        not_reached: Vec::new(),
    };
    encode_frame(&resp, &mut b);
    Ok(b)
}

/// A write through the node (or, now and then, through the peer as a
/// client would), with the origin changed first.
fn write_step(u: &mut Unstructured<'_>, h: &mut Harness) -> arbitrary::Result<()> {
    let now = h.now;
    let (group, key) = (*u.choose(&GROUPS)?, *u.choose(&KEYS)?);
    let (op, fence) = match u.int_in_range(0..=2u8)? {
        0 => {
            let fence = h.bump(group, Some(key));
            let value = versioned(fence[0].1, u.int_in_range(4..=300)?);
            let ttl = u.ratio(1, 3)?.then_some(Duration::from_secs(2));
            let op = WriteOp::Set {
                key: key.into(),
                value,
                ttl,
            };
            (op, fence)
        }
        1 => (
            WriteOp::Remove { key: key.into() },
            h.bump(group, Some(key)),
        ),
        _ => (WriteOp::Purge, h.bump(group, None)),
    };
    if u.ratio(1, 8)? {
        // Carried out by another node: nothing to check here.
        let id = h.node.write_via(now, PEER, group, op);
        h.writes.insert(id, Vec::new());
        return Ok(());
    }
    match h.node.write(now, group, op) {
        Written::Ready(r) => {
            if h.trace {
                eprintln!("  write {group}/{key}: {r:?}");
            }
            if r.is_ok() {
                h.acknowledged(fence);
            }
        }
        Written::Pending(id) => {
            h.writes.insert(id, fence);
        }
    }
    Ok(())
}

/// The driver wrote `n` more bytes of what it sent on inbound `conn`.
fn written(h: &mut Harness, conn: ConnId, n: usize) {
    let now = h.now;
    match h.detached.get_mut(&conn) {
        Some(inbound) => {
            inbound.handle_written(now, n);
            h.pump(conn);
        }
        None => h.node.handle_written(now, conn, n),
    }
}

/// Time passed: the node's deadlines, and those of the connections the
/// harness keeps.
fn timeout(h: &mut Harness) {
    let now = h.now;
    h.node.handle_timeout(now);
    for c in h.detached.keys().copied().collect::<Vec<_>>() {
        if let Some(inbound) = h.detached.get_mut(&c) {
            inbound.handle_timeout(now);
        }
        h.pump(c);
    }
}

/// Feeds `data` to `conn` in pieces the input chooses.
fn feed(
    u: &mut Unstructured<'_>,
    h: &mut Harness,
    conn: ConnId,
    data: &[u8],
) -> arbitrary::Result<()> {
    let mut rest = data;
    // A driver reads nothing from a connection the node paused.
    loop {
        let wants = match h.detached.get(&conn) {
            Some(inbound) => inbound.wants_read(),
            None => h.node.wants_read(conn),
        };
        if rest.is_empty() || !wants {
            return Ok(());
        }
        let n = u.int_in_range(1..=rest.len())?;
        let now = h.now;
        match h.detached.get_mut(&conn) {
            Some(inbound) => {
                inbound.handle_data(now, &rest[..n]);
                h.pump(conn);
                h.drain();
            }
            None => h.node.handle_data(now, conn, &rest[..n]),
        }
        rest = &rest[n..];
    }
}

fn step(u: &mut Unstructured<'_>, h: &mut Harness) -> arbitrary::Result<()> {
    let now = h.now;
    let op = u.int_in_range(0..=19u8)?;
    if h.trace {
        eprintln!(
            "step op {op}: loads {:?} connecting {:?} in {:?} out {:?}",
            h.loads, h.connecting, h.inbound, h.outbound
        );
    }
    match op {
        0 | 1 => {
            let (g, k) = (*u.choose(&GROUPS)?, *u.choose(&KEYS)?);
            if u.arbitrary()? {
                claim_get(h, g, k);
                return Ok(());
            }
            let r = h.node.get(now, g, k);
            if h.trace {
                eprintln!("  get {g}/{k}: {r:?}");
            }
            if let Get::Pending(id) = r {
                assert!(h.gets.insert(id));
            }
        }
        2 => {
            let from = *u.choose(&FROM)?;
            if u.arbitrary()? {
                if let Ok(inbound) = h.node.accept_inbound(now, IpAddr::V4(from)) {
                    h.inbound.push(inbound.id());
                    h.detached.insert(inbound.id(), inbound);
                }
            } else if let Ok(c) = h.node.accept(now, IpAddr::V4(from)) {
                h.inbound.push(c);
            }
        }
        16 | 17 => write_step(u, h)?,
        18 | 19 => {
            if !h.claims.is_empty() {
                let i = u.choose_index(h.claims.len())?;
                let (g, k, c, version) = h.claims.swap_remove(i);
                let r = load_result(u, version)?;
                if u.ratio(2, 3)? {
                    land_claim(h, g, k, c, r);
                } else {
                    // The loader must wait: the node takes the load over.
                    let id = c.id;
                    match h.node.adopt(now, g, k, c) {
                        Some(get) => {
                            assert!(h.gets.insert(get));
                            h.loads.push(id);
                            h.load_version.insert(id, version);
                        }
                        None => {
                            let r = h.node.get_missed(now, g, k);
                            h.pending(r);
                        }
                    }
                }
            }
        }
        13 | 14 => {
            if let Some(c) = pick(u, &h.inbound)? {
                let n = u.int_in_range(0..=200)?;
                written(h, c, n);
            }
        }
        3 => {
            if let Some(c) = pick(u, &h.inbound)? {
                let frame = request_bytes(u, h)?;
                feed(u, h, c, &frame)?;
            }
        }
        4 => {
            if let Some(c) = pick(u, &h.outbound)? {
                let frame = response_bytes(u, h, c)?;
                feed(u, h, c, &frame)?;
            }
        }
        5 => {
            let all: Vec<ConnId> = h.inbound.iter().chain(&h.outbound).copied().collect();
            if let Some(c) = pick(u, &all)? {
                let n = u.int_in_range(0..=24)?;
                let mut junk = u.bytes(n)?.to_vec();
                if h.outbound.contains(&c) {
                    // Never a valid answer by chance: the fake peer's
                    // answers must hold honest versions. A length over the
                    // maximum frame breaks the connection.
                    let mut bad = (u32::MAX as i64).to_le_bytes().to_vec();
                    bad.append(&mut junk);
                    junk = bad;
                }
                feed(u, h, c, &junk)?;
            }
        }
        6 | 7 => {
            if !h.loads.is_empty() {
                let i = u.choose_index(h.loads.len())?;
                let id = h.loads.swap_remove(i);
                let version = h.load_version[&id];
                let r = load_result(u, version)?;
                h.node.handle_load(now, id, r);
            }
        }
        8 => {
            let all: Vec<ConnId> = h
                .inbound
                .iter()
                .chain(&h.outbound)
                .chain(&h.connecting)
                .copied()
                .collect();
            if let Some(c) = pick(u, &all)? {
                h.forget(c);
                h.node.handle_closed(now, c);
            }
        }
        9 => {
            if let Some(c) = pick(u, &h.connecting)? {
                h.connecting.retain(|&x| x != c);
                h.outbound.push(c);
                h.node.handle_connected(now, c);
            }
        }
        10 | 11 => {
            h.now += Duration::from_millis(u64::from(u.arbitrary::<u16>()?));
            timeout(h);
        }
        _ => {
            if u.ratio(1, 16)? {
                h.node.abort(now);
            } else if u.ratio(1, 8)? {
                h.node.shutdown(now);
                // The driver then tells the connections it keeps.
                for c in h.detached.keys().copied().collect::<Vec<_>>() {
                    if let Some(inbound) = h.detached.get_mut(&c) {
                        inbound.handle_shutdown(now);
                    }
                    h.pump(c);
                }
            } else {
                let peers: &[&str] = u.choose(&[&[SELF, PEER][..], &[PEER], &[SELF], &[]])?;
                h.node.set_peers(now, peers);
            }
        }
    }
    Ok(())
}
