//! DNS discovery through hickory-resolver.
//!
//! hickory's resolver runs on tokio. So that the same discovery serves a
//! node on tokio, async-std or smol alike, the resolver lives on a thread
//! of its own with a single-threaded tokio runtime, and rounds are asked
//! of it over a channel that any runtime can await. The thread ends when
//! the last handle on the [`DnsDiscovery`] is dropped.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::op::ResponseCode;
use hickory_proto::ProtoErrorKind;
use hickory_resolver::config::{
    LookupIpStrategy, NameServerConfigGroup, ResolveHosts, ResolverConfig, ResolverOpts,
};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::{ResolveError, Resolver};

use super::{Discovery, DiscoveryError, MembersFuture, PeerSource};

/// How DNS names are resolved.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct DnsConfig {
    /// Ask this name server instead of the system's (`/etc/resolv.conf`).
    pub server: Option<SocketAddr>,
    /// Longest one query waits for an answer; a round tries twice.
    pub timeout: Duration,
}

impl Default for DnsConfig {
    fn default() -> Self {
        Self {
            server: None,
            timeout: Duration::from_secs(2),
        }
    }
}

impl DnsConfig {
    /// Resolve with the name server at `addr`.
    pub fn server(mut self, addr: SocketAddr) -> Self {
        self.server = Some(addr);
        self
    }

    /// Longest one query waits.
    pub fn timeout(mut self, d: Duration) -> Self {
        self.timeout = d;
        self
    }
}

type Reply = async_channel::Sender<Result<Vec<String>, DiscoveryError>>;

/// Members from a peer list whose entries may be DNS names
/// ([`PeerSource`]), resolved afresh each round (no answer is cached).
///
/// ```no_run
/// use groupcache_driver::{DnsConfig, DnsDiscovery, PeerSource};
///
/// let sources = PeerSource::parse_all(["dns+groupcache.default.svc:8000"]).unwrap();
/// let discovery = DnsDiscovery::new(sources, DnsConfig::default()).unwrap();
/// // Builder::discovery(discovery) resolves it every discovery interval.
/// ```
#[derive(Clone)]
pub struct DnsDiscovery {
    sources: Arc<[PeerSource]>,
    ask: async_channel::Sender<(Arc<[PeerSource]>, Reply)>,
}

impl std::fmt::Debug for DnsDiscovery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DnsDiscovery")
            .field("sources", &self.sources)
            .finish_non_exhaustive()
    }
}

impl DnsDiscovery {
    /// Starts the resolver thread. Fails when the system's resolver
    /// configuration cannot be read (with no `server` given) or the thread
    /// cannot start.
    pub fn new(sources: Vec<PeerSource>, cfg: DnsConfig) -> std::io::Result<Self> {
        let resolver = resolver(&cfg).map_err(std::io::Error::other)?;
        // One round queued at most: a round that waits to be queued longer
        // than the discovery interval is dropped by the caller, so a slow
        // or silent server cannot pile rounds up.
        let (ask, jobs) = async_channel::bounded::<(Arc<[PeerSource]>, Reply)>(1);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        std::thread::Builder::new()
            .name("groupcache-dns".into())
            .spawn(move || {
                rt.block_on(async move {
                    while let Ok((sources, reply)) = jobs.recv().await {
                        let _ = reply.send(resolve_all(&resolver, &sources).await).await;
                    }
                });
            })?;
        Ok(Self {
            sources: sources.into(),
            ask,
        })
    }

    /// The entries resolved each round.
    pub fn sources(&self) -> &[PeerSource] {
        &self.sources
    }
}

impl Discovery for DnsDiscovery {
    fn members(&self) -> MembersFuture<'_> {
        Box::pin(async move {
            let (tx, rx) = async_channel::bounded(1);
            self.ask
                .send((self.sources.clone(), tx))
                .await
                .map_err(|_| DiscoveryError::Stopped)?;
            rx.recv().await.map_err(|_| DiscoveryError::Stopped)?
        })
    }
}

fn resolver(cfg: &DnsConfig) -> Result<Resolver<TokioConnectionProvider>, ResolveError> {
    let mut b = match cfg.server {
        Some(addr) => Resolver::builder_with_config(
            ResolverConfig::from_parts(
                None,
                vec![],
                NameServerConfigGroup::from_ips_clear(&[addr.ip()], addr.port(), true),
            ),
            TokioConnectionProvider::default(),
        ),
        None => Resolver::builder_tokio()?,
    };
    let o: &mut ResolverOpts = b.options_mut();
    o.timeout = cfg.timeout;
    o.attempts = 2;
    o.ip_strategy = LookupIpStrategy::Ipv4AndIpv6;
    // Every round asks afresh: membership is what the server says now.
    o.cache_size = 0;
    // Names are the cluster's, not this machine's.
    o.use_hosts_file = ResolveHosts::Never;
    Ok(b.build())
}

/// One round: every entry resolved; the first failure or empty name fails
/// the round, so the node keeps its last good list.
async fn resolve_all(
    r: &Resolver<TokioConnectionProvider>,
    sources: &[PeerSource],
) -> Result<Vec<String>, DiscoveryError> {
    let mut out = BTreeSet::new();
    for s in sources {
        let found = match s {
            PeerSource::Static(a) => vec![a.clone()],
            PeerSource::Dns { name, port } => addresses(r, name, *port).await?,
            PeerSource::DnsSrv { name } => {
                let srv = r.srv_lookup(name.as_str()).await.map_err(|e| fail(s, e))?;
                let mut found = Vec::new();
                let mut targets: Vec<(String, u16)> = srv
                    .iter()
                    .map(|rec| (rec.target().to_utf8(), rec.port()))
                    .collect();
                targets.sort();
                targets.dedup();
                for (target, port) in targets {
                    found.extend(addresses(r, &target, port).await?);
                }
                found
            }
        };
        if found.is_empty() {
            return Err(DiscoveryError::Empty {
                name: s.to_string(),
            });
        }
        out.extend(found);
    }
    Ok(out.into_iter().collect())
}

/// The A and AAAA records of `name`, each at `port`.
async fn addresses(
    r: &Resolver<TokioConnectionProvider>,
    name: &str,
    port: u16,
) -> Result<Vec<String>, DiscoveryError> {
    match r.lookup_ip(name).await {
        Ok(ips) => Ok(ips
            .iter()
            .map(|ip| SocketAddr::new(ip, port).to_string())
            .collect()),
        Err(e) if empty_answer(&e) => Ok(Vec::new()),
        Err(e) => Err(DiscoveryError::Resolve {
            name: name.into(),
            reason: e.to_string(),
        }),
    }
}

/// Whether the server answered that the name has no such records (as
/// opposed to failing: SERVFAIL, REFUSED, a timeout).
fn empty_answer(e: &ResolveError) -> bool {
    matches!(
        e.proto().map(|p| p.kind()),
        Some(ProtoErrorKind::NoRecordsFound { response_code, .. })
            if matches!(*response_code, ResponseCode::NoError | ResponseCode::NXDomain)
    )
}

fn fail(s: &PeerSource, e: ResolveError) -> DiscoveryError {
    if empty_answer(&e) {
        return DiscoveryError::Empty {
            name: s.to_string(),
        };
    }
    DiscoveryError::Resolve {
        name: s.to_string(),
        reason: e.to_string(),
    }
}
