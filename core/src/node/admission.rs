//! Admission: which inbound connections a node takes. Peers (addresses of
//! the peer list) have a budget of their own; every other address shares
//! the clients' budget, of which one address may take only its share.

use std::net::IpAddr;

use hashbrown::{HashMap, HashSet};

use super::{Config, Refused};

/// The budgets of inbound connections, and who counts as a peer.
#[derive(Debug, Default)]
pub(super) struct Admission {
    /// Inbound connections from clients.
    clients: usize,
    /// Inbound connections from peers.
    peers: usize,
    /// Inbound connections per client address (peers' are not counted).
    per_addr: HashMap<IpAddr, usize>,
    /// The IP addresses of the peer list's entries that are IP literals.
    peer_ips: HashSet<IpAddr>,
}

/// An IPv4-mapped IPv6 address as the IPv4 address it is, so one client
/// has one address whichever way it connects.
pub(super) fn canonical(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(addr, IpAddr::V4),
        v4 => v4,
    }
}

impl Admission {
    /// The peer list changed: these are its entries.
    pub(super) fn set_peers<'a>(&mut self, peers: impl IntoIterator<Item = &'a str>) {
        self.peer_ips = peers
            .into_iter()
            .filter_map(|p| p.parse::<std::net::SocketAddr>().ok())
            .map(|a| canonical(a.ip()))
            .collect();
    }

    /// Takes a place for a connection from `from` (canonical) if the
    /// allowlist and the budgets let it in; true if `from` is a peer's.
    pub(super) fn admit(&mut self, cfg: &Config, from: IpAddr) -> Result<bool, Refused> {
        if let Some(allow) = &cfg.allow {
            if !allow.iter().any(|n| n.contains(&from)) {
                return Err(Refused::NotAllowed);
            }
        }
        if self.peer_ips.contains(&from) {
            if self.peers >= cfg.max_peer_inbound {
                return Err(Refused::TooMany);
            }
            self.peers += 1;
            return Ok(true);
        }
        if self.clients >= cfg.max_inbound {
            return Err(Refused::TooMany);
        }
        let n = self.per_addr.entry(from).or_default();
        if *n >= cfg.max_inbound_per_addr {
            if *n == 0 {
                self.per_addr.remove(&from);
            }
            return Err(Refused::TooManyFromAddr);
        }
        *n += 1;
        self.clients += 1;
        Ok(false)
    }

    /// Gives back the place of a connection from `from` (a peer's if
    /// `peer`).
    pub(super) fn release(&mut self, from: IpAddr, peer: bool) {
        if peer {
            self.peers -= 1;
            return;
        }
        self.clients -= 1;
        if let Some(n) = self.per_addr.get_mut(&from) {
            *n -= 1;
            if *n == 0 {
                self.per_addr.remove(&from);
            }
        }
    }

    /// Checks the counts against the connections held, given as
    /// `(from, peer)`; for `validate`.
    pub(super) fn validate(
        &self,
        held: impl Iterator<Item = (IpAddr, bool)>,
    ) -> Result<(), String> {
        let (mut clients, mut peers) = (0, 0);
        let mut per_addr: HashMap<IpAddr, usize> = HashMap::new();
        for (from, peer) in held {
            if peer {
                peers += 1;
            } else {
                clients += 1;
                *per_addr.entry(from).or_default() += 1;
            }
        }
        if (clients, peers) != (self.clients, self.peers) {
            return Err(format!(
                "inbound counts {}/{} != {clients}/{peers}",
                self.clients, self.peers
            ));
        }
        if per_addr != self.per_addr {
            return Err(format!(
                "per-address counts {:?} != {per_addr:?}",
                self.per_addr
            ));
        }
        Ok(())
    }
}
