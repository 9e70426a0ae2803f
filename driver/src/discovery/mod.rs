//! Where a node learns its members: a fixed list, DNS names resolved again
//! every interval, or any [`Discovery`] of the caller's.
//!
//! A peer list entry ([`PeerSource`]) is one of:
//!
//! - `host:port`: that member, as written;
//! - `dns+NAME:PORT`: every A and AAAA record of `NAME`, each at `PORT`
//!   (a Kubernetes headless Service, a Docker Compose service);
//! - `dnssrv+_service._proto.NAME`: every SRV record of the name, then the
//!   A and AAAA records of each target, at the port the SRV record gives.
//!
//! A round that fails, or that finds no address for a name, keeps the last
//! good list: a DNS blip never empties the ring.

#[cfg(feature = "dns")]
mod dns;

use std::fmt;
use std::future::Future;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::pin::Pin;
use std::str::FromStr;

#[cfg(feature = "dns")]
pub use dns::{DnsConfig, DnsDiscovery};

/// One entry of a peer list: a fixed address or a DNS name.
///
/// ```
/// use groupcache_driver::PeerSource;
///
/// let s: PeerSource = "dns+groupcache.default.svc:8000".parse().unwrap();
/// assert_eq!(s, PeerSource::Dns { name: "groupcache.default.svc".into(), port: 8000 });
/// assert!("dns+no-port".parse::<PeerSource>().is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PeerSource {
    /// A member's address exactly as written, `host:port`.
    Static(String),
    /// `dns+NAME:PORT`: the A and AAAA records of `name`, each at `port`.
    Dns {
        /// The name to resolve.
        name: String,
        /// The peer port of every address found.
        port: u16,
    },
    /// `dnssrv+NAME`: the SRV records of `name`, then the addresses of
    /// each target at the record's port.
    DnsSrv {
        /// The SRV name, e.g. `_peer._tcp.groupcache.default.svc`.
        name: String,
    },
}

impl PeerSource {
    /// Whether the entry needs DNS.
    pub fn is_dns(&self) -> bool {
        !matches!(self, PeerSource::Static(_))
    }

    /// Parses every entry of a peer list.
    pub fn parse_all<I, S>(entries: I) -> Result<Vec<PeerSource>, PeerSourceError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        entries.into_iter().map(|e| e.as_ref().parse()).collect()
    }
}

/// A peer list entry that cannot be understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("peer entry {entry:?}: {why}")]
pub struct PeerSourceError {
    entry: String,
    why: &'static str,
}

impl FromStr for PeerSource {
    type Err = PeerSourceError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |why| PeerSourceError {
            entry: s.to_string(),
            why,
        };
        if let Some(rest) = s.strip_prefix("dnssrv+") {
            if rest.is_empty() || rest.contains(':') || rest.contains('/') {
                return Err(err("expected dnssrv+_service._proto.NAME, with no port"));
            }
            return Ok(PeerSource::DnsSrv { name: rest.into() });
        }
        if let Some(rest) = s.strip_prefix("dns+") {
            let (name, port) = rest
                .rsplit_once(':')
                .ok_or_else(|| err("expected dns+NAME:PORT"))?;
            let port = port
                .parse::<u16>()
                .ok()
                .filter(|&p| p != 0)
                .ok_or_else(|| err("the port must be a number from 1 to 65535"))?;
            if name.is_empty() || name.contains('/') {
                return Err(err("expected dns+NAME:PORT"));
            }
            return Ok(PeerSource::Dns {
                name: name.into(),
                port,
            });
        }
        if s.contains('+') && s.split_once('+').is_some_and(|(p, _)| !p.contains(':')) {
            return Err(err(
                "unknown scheme; use host:port, dns+NAME:PORT or dnssrv+NAME",
            ));
        }
        match s.rsplit_once(':') {
            Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => {
                Ok(PeerSource::Static(s.into()))
            }
            _ => Err(err("expected host:port")),
        }
    }
}

impl fmt::Display for PeerSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PeerSource::Static(a) => f.write_str(a),
            PeerSource::Dns { name, port } => write!(f, "dns+{name}:{port}"),
            PeerSource::DnsSrv { name } => write!(f, "dnssrv+{name}"),
        }
    }
}

/// Why a round of discovery found no members. The node keeps its last
/// good list.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DiscoveryError {
    /// A name did not resolve: no answer, an error, or a timeout.
    #[error("resolving {name}: {reason}")]
    Resolve {
        /// The entry that failed.
        name: String,
        /// What the resolver said.
        reason: String,
    },
    /// A name resolved to no address.
    #[error("{name} has no address")]
    Empty {
        /// The entry that found nothing.
        name: String,
    },
    /// The resolver is gone (its thread ended).
    #[error("the resolver stopped")]
    Stopped,
}

/// The future a [`Discovery`] round returns.
pub type MembersFuture<'a> =
    Pin<Box<dyn Future<Output = Result<Vec<String>, DiscoveryError>> + Send + 'a>>;

/// A source of the cluster's members, asked again every discovery interval
/// ([`Builder::discovery`](crate::Builder::discovery)). It runs on whatever
/// runtime the node runs on, so it must not need a particular one.
pub trait Discovery: Send + Sync + 'static {
    /// The members now, as `host:port` strings in any order; an error (or
    /// an empty list) keeps the previous members.
    fn members(&self) -> MembersFuture<'_>;
}

/// A fixed list is a discovery that always answers the same.
impl Discovery for Vec<String> {
    fn members(&self) -> MembersFuture<'_> {
        let list = self.clone();
        Box::pin(async move { Ok(list) })
    }
}

/// Which of `members` is this node: its own name if listed, else the
/// address it listens on; a node listening on every address (`0.0.0.0`,
/// `::`) is any address of this machine at its listen port. Returns the
/// member list to use, sorted so every node builds the same ring, and this
/// node's name in it, if it is listed.
///
/// A node bound to one address never takes another local address for its
/// own: several nodes on one machine (127.0.0.1, 127.0.0.2, … at one port)
/// are each other's peers, and a node not yet in the answer is outside it.
pub(crate) fn recognise_self(
    mut members: Vec<String>,
    self_addr: &str,
    listen: SocketAddr,
) -> (Vec<String>, Option<String>) {
    members.sort();
    members.dedup();
    let want = self_addr.parse::<SocketAddr>().ok();
    let is_me = |a: SocketAddr| {
        a.port() == listen.port()
            && if listen.ip().is_unspecified() {
                is_local(a.ip())
            } else {
                a.ip() == listen.ip()
            }
    };
    let me = members
        .iter()
        .find(|m| *m == self_addr || (want.is_some() && m.parse::<SocketAddr>().ok() == want))
        .or_else(|| {
            members
                .iter()
                .find(|m| m.parse::<SocketAddr>().is_ok_and(is_me))
        })
        .cloned();
    (members, me)
}

/// Whether `ip` belongs to this machine: only then can a socket bind it.
fn is_local(ip: IpAddr) -> bool {
    UdpSocket::bind(SocketAddr::new(ip, 0)).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_parse_and_print_back() {
        for s in [
            "127.0.0.1:8001",
            "[::1]:8001",
            "node-1.example:8001",
            "dns+groupcache.default.svc.cluster.local:8000",
            "dnssrv+_peer._tcp.groupcache.default.svc.cluster.local",
        ] {
            let p: PeerSource = s.parse().unwrap();
            assert_eq!(p.to_string(), s);
        }
        for bad in [
            "dns+name",
            "dns+name:0",
            "dns+:80",
            "dnssrv+",
            "dnssrv+x:80",
            "srv+x",
            "noport",
            ":80",
        ] {
            assert!(bad.parse::<PeerSource>().is_err(), "{bad}");
        }
    }

    #[test]
    fn a_node_finds_itself_by_name_or_by_a_local_address_at_its_port() {
        let list = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let at = |s: &str| s.parse::<SocketAddr>().unwrap();
        let (m, me) = recognise_self(
            list(&["127.0.0.2:80", "127.0.0.1:80"]),
            "127.0.0.1:80",
            at("127.0.0.1:80"),
        );
        assert_eq!(m, list(&["127.0.0.1:80", "127.0.0.2:80"]));
        assert_eq!(me.as_deref(), Some("127.0.0.1:80"));
        // Listening on 0.0.0.0: the answer on this machine at the port.
        let any = at("0.0.0.0:80");
        let (_, me) = recognise_self(list(&["192.0.2.7:80", "127.0.0.1:80"]), "0.0.0.0:80", any);
        assert_eq!(me.as_deref(), Some("127.0.0.1:80"));
        // Another port on this machine is another node.
        let (_, me) = recognise_self(list(&["127.0.0.1:81"]), "0.0.0.0:80", any);
        assert_eq!(me, None);
        // 192.0.2.0/24 is documentation space: never local.
        let (_, me) = recognise_self(list(&["192.0.2.7:80"]), "0.0.0.0:80", any);
        assert_eq!(me, None);
        // Named otherwise, bound to one address: that address at the port.
        let (_, me) = recognise_self(
            list(&["127.0.0.1:80", "127.0.0.2:80"]),
            "first",
            at("127.0.0.2:80"),
        );
        assert_eq!(me.as_deref(), Some("127.0.0.2:80"));
    }

    #[test]
    fn a_node_bound_to_one_address_is_not_another_local_address() {
        // Three nodes on 127.0.0.1-3 at one port; the answer lists only
        // the first two. The third is outside it, not the first.
        let list = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let members = list(&["127.0.0.1:80", "127.0.0.2:80"]);
        let me3: SocketAddr = "127.0.0.3:80".parse().unwrap();
        let (_, me) = recognise_self(members.clone(), "127.0.0.3:80", me3);
        assert_eq!(me, None);
        let (_, me) = recognise_self(members, "node-3", me3);
        assert_eq!(me, None);
    }
}
