//! The node fuzzer's harness: its fixed cast (this node, a peer, client
//! addresses, groups and keys) and its bookkeeping of what the node asked
//! for, checked after every step.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::net::Ipv4Addr;
use std::time::Instant;

use arbitrary::Unstructured;
use bytes::Bytes;

use crate::frame::decode_all;
use crate::node::{
    Claimed, ConnId, Get, GetId, Inbound, InboundOutput, LoadId, Node, Output, WriteId,
};
use crate::wire::Request;

pub(super) const SELF: &str = "self:1";
pub(super) const PEER: &str = "peer:1";
pub(super) const PEER_IP: &str = "127.0.0.3:1";
/// Client addresses: two plain clients and the peer's.
pub(super) const FROM: [Ipv4Addr; 3] = [
    Ipv4Addr::new(127, 0, 0, 1),
    Ipv4Addr::new(127, 0, 0, 2),
    Ipv4Addr::new(127, 0, 0, 3),
];
pub(super) const GROUPS: [&str; 3] = ["g", "h", "unknown"];
pub(super) const KEYS: [&str; 6] = ["a", "b", "c", "d", "e", "f"];

/// A key of a group.
pub(super) type Slot = (String, String);

/// The node fuzzer's bookkeeping of what the node asked for.
///
/// The origin is versioned: every write bumps the versions it touches, as
/// an application changes its database before the cache, and every value
/// (loaded, set, or answered by the fake owner) starts with the version it
/// was read at. After a write is acknowledged, the node must never hold a
/// value of those keys older than the write.
pub(super) struct Harness {
    /// Print every step and output (set `GROUPCACHE_FUZZ_TRACE` to debug a
    /// crash).
    pub(super) trace: bool,
    pub(super) node: Node,
    pub(super) now: Instant,
    pub(super) loads: Vec<LoadId>,
    pub(super) connecting: Vec<ConnId>,
    pub(super) inbound: Vec<ConnId>,
    /// The inbound connections whose state the harness keeps, as the
    /// driver's tasks do ([`Node::accept_inbound`]); also in `inbound`.
    pub(super) detached: BTreeMap<ConnId, Inbound>,
    pub(super) outbound: Vec<ConnId>,
    pub(super) gets: HashSet<GetId>,
    /// Versions at the origin.
    pub(super) origin: HashMap<Slot, u32>,
    /// The version each load reads: the origin's when it started.
    pub(super) load_version: HashMap<LoadId, u32>,
    /// Requests sent on each outbound connection, answered in order by the
    /// fake peer: the key and the version its answer holds.
    pub(super) asked: HashMap<ConnId, VecDeque<(Request, u32)>>,
    /// Writes under way: the versions they make the floor once
    /// acknowledged.
    pub(super) writes: HashMap<WriteId, Vec<(Slot, u32)>>,
    /// The oldest version of each key the node may still hold.
    pub(super) floor: HashMap<Slot, u32>,
    /// Misses whose loads the harness runs outside the node, as the
    /// driver's gets do ([`GroupCaches::claim`](crate::node::GroupCaches::claim)),
    /// with the origin's version when each began. They stay open across
    /// steps, as a claim on one thread does while others go on.
    pub(super) claims: Vec<(&'static str, &'static str, Claimed, u32)>,
}

pub(super) fn slot(group: &str, key: &str) -> Slot {
    (group.to_string(), key.to_string())
}

/// A value of `len` bytes (at least 4) that holds `version`.
pub(super) fn versioned(version: u32, len: usize) -> Bytes {
    let mut v = version.to_le_bytes().to_vec();
    v.resize(len.max(4), b'v');
    Bytes::from(v)
}

impl Harness {
    pub(super) fn version(&self, group: &str, key: &str) -> u32 {
        self.origin.get(&slot(group, key)).copied().unwrap_or(0)
    }

    /// The application changes keys at the origin before writing the
    /// cache; returns the new versions.
    pub(super) fn bump(&mut self, group: &str, key: Option<&str>) -> Vec<(Slot, u32)> {
        let keys: Vec<&str> = key.map_or(KEYS.to_vec(), |k| vec![k]);
        keys.into_iter()
            .map(|k| {
                let v = self.origin.entry(slot(group, k)).or_default();
                *v += 1;
                (slot(group, k), *v)
            })
            .collect()
    }

    pub(super) fn acknowledged(&mut self, fence: Vec<(Slot, u32)>) {
        for (s, v) in fence {
            let f = self.floor.entry(s).or_default();
            *f = (*f).max(v);
        }
    }

    /// Keeps a get that waits, to be answered exactly once.
    pub(super) fn pending(&mut self, r: Get) {
        if let Get::Pending(id) = r {
            assert!(self.gets.insert(id), "{id} given twice");
        }
    }

    /// No value older than an acknowledged write is held.
    pub(super) fn check_floor(&self) {
        for ((g, k), &floor) in &self.floor {
            let Some(v) = self.node.peek(g, k) else {
                continue;
            };
            assert!(v.len() >= 4, "{g}/{k}: unversioned value {v:?} cached");
            let version = u32::from_le_bytes(v[..4].try_into().expect("4 bytes"));
            assert!(
                version >= floor,
                "{g}/{k}: holds version {version} after a write of version {floor} was acknowledged"
            );
        }
    }

    pub(super) fn drain(&mut self) {
        while let Some(o) = self.node.poll_output() {
            if self.trace {
                eprintln!("  -> {o:?}");
            }
            match o {
                Output::Load { id, group, key } => {
                    self.loads.push(id);
                    let v = self.version(&group, &key);
                    self.load_version.insert(id, v);
                }
                // Kept in `loads`: reporting a cancelled load later must be
                // harmless.
                Output::CancelLoad { id } => assert!(self.loads.contains(&id), "cancel {id}"),
                Output::Connect { conn, .. } => self.connecting.push(conn),
                Output::Send { conn, data } => {
                    assert!(!data.is_empty(), "empty send");
                    assert!(
                        self.inbound.contains(&conn) || self.outbound.contains(&conn),
                        "send on unknown {conn}"
                    );
                    if self.outbound.contains(&conn) {
                        // The node sends whole request frames to peers.
                        let (frames, rest) = decode_all(&data, usize::MAX).expect("frames");
                        assert_eq!(rest, 0, "a partial request frame");
                        for f in frames {
                            let req = Request::decode_payload(&f).expect("a request");
                            let v = self.version(&req.group, &req.key);
                            self.asked.entry(conn).or_default().push_back((req, v));
                        }
                    }
                }
                Output::Answer {
                    conn,
                    seq,
                    response,
                } => {
                    let now = self.now;
                    if let Some(inbound) = self.detached.get_mut(&conn) {
                        inbound.handle_answer(now, seq, response);
                        self.pump(conn);
                    }
                }
                Output::Close { conn, .. } => self.forget(conn),
                Output::Done { get, .. } => {
                    assert!(self.gets.remove(&get), "{get} answered twice or unknown");
                }
                Output::Written { write, result } => {
                    let fence = self.writes.remove(&write);
                    assert!(fence.is_some(), "{write} answered twice or unknown");
                    if result.is_ok() {
                        self.acknowledged(fence.unwrap_or_default());
                    }
                }
            }
        }
        if let Err(e) = self.node.validate() {
            panic!("invariant broken: {e}");
        }
        self.check_floor();
        assert!(
            self.node.connections()
                <= self.inbound.len() + self.outbound.len() + self.connecting.len()
        );
    }

    /// Carries out what a detached inbound connection asks, as the
    /// driver's task does: requests to the node, a close to both.
    pub(super) fn pump(&mut self, conn: ConnId) {
        let now = self.now;
        while let Some(o) = self.detached.get_mut(&conn).and_then(Inbound::poll_output) {
            if self.trace {
                eprintln!("  {conn} -> {o:?}");
            }
            match o {
                InboundOutput::Request { seq, request } => {
                    self.node.serve(now, conn, seq, request);
                }
                InboundOutput::Send(data) => assert!(!data.is_empty(), "empty send"),
                InboundOutput::Close(_) => {
                    self.forget(conn);
                    self.node.handle_closed(now, conn);
                }
            }
        }
    }

    pub(super) fn forget(&mut self, conn: ConnId) {
        self.detached.remove(&conn);
        self.asked.remove(&conn);
        self.inbound.retain(|&c| c != conn);
        self.outbound.retain(|&c| c != conn);
        self.connecting.retain(|&c| c != conn);
    }
}

pub(super) fn pick<T: Copy>(u: &mut Unstructured<'_>, items: &[T]) -> arbitrary::Result<Option<T>> {
    if items.is_empty() {
        return Ok(None);
    }
    Ok(Some(*u.choose(items)?))
}
