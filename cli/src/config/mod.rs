//! `groupcache serve` settings: a TOML file and/or flags.

mod group;
mod parse;
mod tls;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use groupcache_driver::core::node::{Config, RESPONSE_OVERHEAD};
use groupcache_tokio::{
    Builder, DnsConfig, DnsDiscovery, GroupConfig, PageConfig, PeerSource, Tls,
};
use serde::{Deserialize, Serialize};

use crate::http::HttpLimits;
use crate::origin::Origin;

pub use group::GroupSpec;
pub use parse::{parse_duration, parse_page_size};
pub use tls::TlsSpec;

/// Descriptors kept for what the connection budgets do not count:
/// listeners, origin connections, files.
const FD_RESERVE: u64 = 256;

/// Everything `serve` needs, from a TOML file and from flags alike: each
/// field is one TOML key and one flag (`max_loads` and `--max-loads`), with
/// its doc and default said once, here. [`ServeConfig::layered`] lays the
/// flags over the file.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq, clap::Args)]
#[serde(deny_unknown_fields)]
pub struct ServeConfig {
    /// Peer port address.
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// This node's name in peer lists (default: the listen address).
    #[arg(long)]
    pub self_addr: Option<String>,
    /// Cluster members, this node included (flag: comma-separated):
    /// `host:port`, `dns+NAME:PORT` (A/AAAA records) or
    /// `dnssrv+_service._proto.NAME` (SRV records), mixed freely. DNS names
    /// are resolved again every dns_interval; a failed or empty answer
    /// keeps the last good list.
    #[arg(long, value_delimiter = ',')]
    #[serde(default)]
    pub peers: Vec<String>,
    /// Name server for DNS peers, as HOST:PORT (default: the system's); a
    /// host name is resolved once, at start, by the system.
    #[arg(long)]
    pub dns_server: Option<String>,
    /// How often DNS peers are resolved again: 30s, 500ms, 2m (default 30s).
    #[arg(long)]
    pub dns_interval: Option<String>,
    /// Milliseconds after a membership change during which a key's new
    /// owner asks its previous owner before the origin (default 60000; 0
    /// turns it off).
    #[arg(long)]
    pub handoff_ms: Option<u64>,
    /// Mutual TLS on the peer port and to peers: the `--tls-*` flags, or a
    /// `[tls]` table with `cert`, `key`, `ca` and `server_name`.
    #[command(flatten)]
    #[serde(default)]
    pub tls: TlsSpec,
    /// Serve the HTTP front over HTTPS with the TLS certificate and key
    /// (clients need no certificate).
    #[arg(long)]
    #[serde(default)]
    pub http_tls: bool,
    /// Serve the HTTP front (/api, /metrics, /healthz) on this address.
    #[arg(long)]
    pub http: Option<SocketAddr>,
    /// Ring points per peer (default 50).
    #[arg(long)]
    pub replicas: Option<usize>,
    /// Peer request timeout in milliseconds (default 3000). Keep it the
    /// same on every node: keepalives come every third of it.
    #[arg(long)]
    pub request_timeout_ms: Option<u64>,
    /// Largest frame payload accepted or sent, in bytes (default 4 MiB).
    #[arg(long)]
    pub max_frame: Option<usize>,
    /// Largest value of every group, in bytes (default: what fits in a frame).
    #[arg(long)]
    pub max_value: Option<usize>,
    /// Longest a load may take, in milliseconds (default 30000).
    #[arg(long)]
    pub load_timeout_ms: Option<u64>,
    /// Loads of one group running at once at most (default 64).
    #[arg(long)]
    pub max_loads: Option<usize>,
    /// Peer-port connections with no real request close after this many
    /// milliseconds (default 60000).
    #[arg(long)]
    pub idle_timeout_ms: Option<u64>,
    /// Peer-port connections at most from clients (default 1024).
    #[arg(long)]
    pub max_connections: Option<usize>,
    /// Peer-port connections at most from one client address (default 256).
    #[arg(long)]
    pub max_connections_per_addr: Option<usize>,
    /// Peer-port connections at most from the peers' addresses (default 1024).
    #[arg(long)]
    pub max_peer_connections: Option<usize>,
    /// Answer bytes a client may leave unread before the node stops reading
    /// its requests (default 8 MiB).
    #[arg(long)]
    pub max_unwritten: Option<usize>,
    /// Shards each group's caches are split into at most, each behind a
    /// lock of its own, so that hits on different keys run in parallel
    /// (default: four per core, up to 64; a shard keeps at least 4 MiB).
    #[arg(long)]
    pub cache_shards: Option<usize>,
    /// Threads serving the peer port, each with a single-threaded runtime
    /// and a listener of its own (`SO_REUSEPORT`): thread-per-core. 0: the
    /// main runtime accepts and serves (the default).
    #[arg(long)]
    pub accept_threads: Option<usize>,
    /// HTTP front: milliseconds a client has to send a request's headers,
    /// also the longest an idle keep-alive connection stays (default 5000).
    #[arg(long)]
    pub http_header_timeout_ms: Option<u64>,
    /// HTTP front: connections at most (default 512).
    #[arg(long)]
    pub http_max_connections: Option<usize>,
    /// HTTP front: connections at most from one client address (default 64).
    #[arg(long)]
    pub http_max_connections_per_addr: Option<usize>,
    /// HTTP front: largest request body in bytes (default 1 MiB).
    #[arg(long)]
    pub http_max_body: Option<usize>,
    /// HTTP front: refuse writes (PUT, DELETE, POST /api/purge) with 405.
    #[arg(long)]
    #[serde(default)]
    pub http_read_only: bool,
    /// A group as NAME:MAX_BYTES:TTL_SECS:ORIGIN, where ORIGIN is `sample`,
    /// `dir:PATH`, `http://host/path/{key}`, `s3://BUCKET/PREFIX`,
    /// `gs://BUCKET/PREFIX`, `az://CONTAINER/PREFIX` or `synthetic:SIZE`
    /// (made-up values of SIZE bytes, for load tests); repeatable. In TOML,
    /// a `[[group]]` table each.
    #[arg(long = "group", value_parser = GroupSpec::parse_flag)]
    #[serde(default, rename = "group")]
    pub groups: Vec<GroupSpec>,
    /// A group's page size, as NAME=BYTES (repeatable): the flag form of
    /// the group's `page_size`, for a group given by flag or file.
    #[arg(long = "page-size", value_parser = parse_page_size)]
    #[serde(skip)]
    pub page_sizes: Vec<(String, u64)>,
}

impl ServeConfig {
    /// `flags` laid over `file`: a flag given wins over the file's key;
    /// groups add up; `peers` given as a flag replace the file's; a switch
    /// (`--http-tls`, `--http-read-only`) only turns on. Every field is
    /// handled alike, by its TOML key, so a new setting needs nothing here.
    ///
    /// ```
    /// use groupcache_cli::config::ServeConfig;
    /// let file: ServeConfig = toml::from_str("max_loads = 8\nreplicas = 20\nhttp_read_only = true").unwrap();
    /// let flags = ServeConfig { replicas: Some(30), ..Default::default() };
    /// let c = ServeConfig::layered(file, flags).unwrap();
    /// assert_eq!((c.max_loads, c.replicas, c.http_read_only), (Some(8), Some(30), true));
    /// ```
    pub fn layered(file: ServeConfig, flags: ServeConfig) -> Result<ServeConfig, String> {
        let table =
            |c: &ServeConfig| toml::Table::try_from(c).map_err(|e| format!("settings: {e}"));
        let mut merged = table(&file)?;
        lay_over(&mut merged, table(&flags)?);
        let mut c: ServeConfig = merged
            .try_into()
            .map_err(|e: toml::de::Error| format!("settings: {e}"))?;
        // The one flag with no TOML key of its own: it sets a group's.
        for (name, bytes) in flags.page_sizes {
            let g = c.groups.iter_mut().find(|g| g.name == name);
            let g = g.ok_or_else(|| format!("--page-size {name}={bytes}: no group {name:?}"))?;
            g.page_size = Some(bytes);
        }
        Ok(c)
    }

    /// Reads a TOML file.
    ///
    /// ```toml
    /// listen = "127.0.0.1:8001"
    /// peers = ["127.0.0.1:8001", "127.0.0.1:8002"]
    /// http = "127.0.0.1:9999"
    ///
    /// [[group]]
    /// name = "score"
    /// max_bytes = 2048
    /// ttl_secs = 1024
    /// origin = "sample"
    /// ```
    pub fn from_file(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// A builder for this configuration, with every origin checked.
    pub fn builder(&self) -> Result<Builder, String> {
        if self.groups.is_empty() {
            return Err("no group configured: add --group or [[group]] in the file".into());
        }
        let mut b = Builder::new();
        if let Some(l) = self.listen {
            b = b.listen(l);
        }
        if let Some(a) = &self.self_addr {
            b = b.self_addr(a.clone());
        }
        if let Some(tls) = self.tls()? {
            b = b.tls(tls);
        } else if self.http_tls {
            return Err("http_tls needs tls_cert, tls_key and tls_ca".into());
        }
        let sources = self.peer_sources()?;
        if sources.iter().any(PeerSource::is_dns) {
            let discovery = DnsDiscovery::new(sources, self.dns_config()?)
                .map_err(|e| format!("DNS resolver: {e}"))?;
            b = b
                .discovery(discovery)
                .discovery_interval(self.dns_interval()?);
        } else if !self.peers.is_empty() {
            b = b.peers(self.peers.clone());
        }
        let node = self.node_config();
        let max_frame = node.max_frame;
        b = b.config(node);
        for g in &self.groups {
            let origin = Origin::parse(&g.name, &g.origin)?;
            let mut group = GroupConfig::new(g.name.clone(), g.max_bytes);
            group.ttl = (g.ttl_secs > 0).then(|| Duration::from_secs(g.ttl_secs));
            // Left at "what fits in a frame" unless set, so that the core
            // sizes cache shards by the values a group says it holds.
            group.max_value = g.max_value.or(self.max_value).unwrap_or(usize::MAX);
            // The origin reads no more than the node would cache or send.
            let max_value = group
                .max_value
                .min(max_frame.saturating_sub(RESPONSE_OVERHEAD));
            if let Some(ms) = g.load_timeout_ms.or(self.load_timeout_ms) {
                group.load_timeout = Duration::from_millis(ms);
            }
            if let Some(n) = g.max_loads.or(self.max_loads) {
                group.max_loads = n;
            }
            let is_store = origin.default_page_size().is_some();
            if !g.store.is_empty() && !is_store {
                return Err(format!(
                    "group {}: store settings are for object-storage origins",
                    g.name
                ));
            }
            let page_size = g.page_size.or(origin.default_page_size()).unwrap_or(0);
            if page_size == 0 {
                if is_store {
                    return Err(format!(
                        "group {}: object storage is read in pages: page_size must be above 0",
                        g.name
                    ));
                }
                let loader = origin.loader(&g.name, max_value);
                b = b.group_config(group, loader);
                continue;
            }
            let mut pages = PageConfig::new(page_size);
            if let Some(ms) = g.head_ttl_ms {
                pages.head_ttl = Duration::from_millis(ms);
            }
            let source = origin.pages(&g.name, &g.store)?;
            // Pages fit a frame; the group's largest value is a page.
            group.max_value = max_value;
            b = b.paged_group(group, pages, source);
        }
        Ok(b)
    }

    /// The node's settings: what is given here over the core's defaults
    /// (the one place those are written).
    pub fn node_config(&self) -> Config {
        let ms = Duration::from_millis;
        let mut c = Config::default();
        fn set<T>(field: &mut T, value: Option<T>) {
            if let Some(v) = value {
                *field = v;
            }
        }
        set(&mut c.handoff_period, self.handoff_ms.map(ms));
        set(&mut c.replicas, self.replicas);
        set(&mut c.request_timeout, self.request_timeout_ms.map(ms));
        set(&mut c.max_frame, self.max_frame);
        set(&mut c.idle_timeout, self.idle_timeout_ms.map(ms));
        set(&mut c.max_inbound, self.max_connections);
        set(&mut c.max_inbound_per_addr, self.max_connections_per_addr);
        set(&mut c.max_peer_inbound, self.max_peer_connections);
        set(&mut c.max_unwritten, self.max_unwritten);
        set(&mut c.cache_shards, self.cache_shards);
        c
    }

    /// The peer list's entries, parsed.
    pub fn peer_sources(&self) -> Result<Vec<PeerSource>, String> {
        PeerSource::parse_all(&self.peers).map_err(|e| e.to_string())
    }

    /// How DNS peers are resolved.
    ///
    /// ```
    /// use groupcache_cli::config::ServeConfig;
    /// let mut c = ServeConfig::default();
    /// c.dns_server = Some("127.0.0.1:5353".into());
    /// assert_eq!(c.dns_config().unwrap().server, Some("127.0.0.1:5353".parse().unwrap()));
    /// c.dns_server = Some("no port".into());
    /// assert!(c.dns_config().unwrap_err().contains("dns_server"));
    /// ```
    pub fn dns_config(&self) -> Result<DnsConfig, String> {
        let c = DnsConfig::default();
        let Some(s) = &self.dns_server else {
            return Ok(c);
        };
        let err = |why: String| format!("dns_server {s:?}: {why}");
        let addr = match s.parse::<SocketAddr>() {
            Ok(a) => a,
            Err(_) => std::net::ToSocketAddrs::to_socket_addrs(s.as_str())
                .map_err(|e| err(e.to_string()))?
                .next()
                .ok_or_else(|| err("no address".into()))?,
        };
        Ok(c.server(addr))
    }

    /// How often DNS peers are resolved again.
    pub fn dns_interval(&self) -> Result<Duration, String> {
        match &self.dns_interval {
            None => Ok(Duration::from_secs(30)),
            Some(s) => parse_duration(s).map_err(|e| format!("dns_interval {s:?}: {e}")),
        }
    }

    /// Lowers the client budgets (peer port and HTTP front) when the
    /// process may open fewer descriptors than the budgets add up to, so
    /// that clients run out of their budget before the process runs out of
    /// descriptors and peers keep theirs. Returns a warning when it lowered
    /// anything.
    ///
    /// ```
    /// use groupcache_cli::config::ServeConfig;
    /// let mut c = ServeConfig::default();
    /// assert!(c.fit_descriptors(1 << 20).is_none());
    /// let warning = c.fit_descriptors(2048).unwrap();
    /// assert!(warning.contains("2048"), "{warning}");
    /// // Peers keep 1024, and 256 stay for listeners, peers and origins.
    /// assert_eq!(c.max_connections, Some(2048 - 1024 - 256));
    /// assert_eq!(c.max_connections_per_addr, Some((2048 - 1024 - 256) / 4));
    /// ```
    pub fn fit_descriptors(&mut self, nofile: u64) -> Option<String> {
        let peers = self.max_peer_connections.unwrap_or(1024) as u64;
        let clients = self.max_connections.unwrap_or(1024) as u64;
        let http = if self.http.is_some() {
            self.http_max_connections.unwrap_or(512) as u64
        } else {
            0
        };
        // Outbound connections to peers (8 each at most) and a reserve for
        // listeners, origin connections and files.
        let fixed = peers + 8 * self.peers.len() as u64 + FD_RESERVE;
        let need = fixed + clients + http;
        if need <= nofile {
            return None;
        }
        let room = nofile.saturating_sub(fixed).max(32);
        let new_clients = (room * clients / (clients + http).max(1)).max(16);
        let new_http = room.saturating_sub(new_clients).max(16);
        self.max_connections = Some(new_clients as usize);
        // One address keeps at most a quarter of what is left.
        let share = |n: u64, per: Option<usize>, default: usize| {
            Some(per.unwrap_or(default).min((n as usize / 4).max(1)))
        };
        self.max_connections_per_addr = share(new_clients, self.max_connections_per_addr, 256);
        if self.http.is_some() {
            self.http_max_connections = Some(new_http as usize);
            self.http_max_connections_per_addr =
                share(new_http, self.http_max_connections_per_addr, 64);
        }
        Some(format!(
            "the open-file limit ({nofile}) is below the {need} descriptors the connection \
             budgets allow: clients of the peer port may now open {new_clients} connections{}; \
             raise the limit to keep the configured budgets",
            if self.http.is_some() {
                format!(" and the HTTP front {new_http}")
            } else {
                String::new()
            }
        ))
    }

    /// The HTTP front's limits; `https` serves it over HTTPS.
    pub fn http_limits(&self, https: Option<Tls>) -> HttpLimits {
        let d = HttpLimits::default();
        HttpLimits {
            header_timeout: self
                .http_header_timeout_ms
                .map_or(d.header_timeout, Duration::from_millis),
            max_connections: self.http_max_connections.unwrap_or(d.max_connections),
            max_connections_per_addr: self
                .http_max_connections_per_addr
                .unwrap_or(d.max_connections_per_addr),
            max_body: self.http_max_body.unwrap_or(d.max_body),
            read_only: self.http_read_only,
            https,
        }
    }

    /// The TLS settings, if `tls_cert`, `tls_key` and `tls_ca` are given
    /// (all three or none).
    pub fn tls(&self) -> Result<Option<Tls>, String> {
        self.tls.load()
    }
}

/// Lays the keys of `over` on `base`: a table merges key by key, the
/// groups add up, an empty list or a switch left off says nothing, any
/// other value replaces `base`'s.
fn lay_over(base: &mut toml::Table, over: toml::Table) {
    for (key, value) in over {
        match value {
            toml::Value::Array(a) if a.is_empty() => {}
            toml::Value::Boolean(false) => {}
            toml::Value::Table(t) => match base.get_mut(&key) {
                Some(toml::Value::Table(b)) => lay_over(b, t),
                _ => {
                    base.insert(key, toml::Value::Table(t));
                }
            },
            toml::Value::Array(mut a) if key == "group" => {
                if let Some(toml::Value::Array(b)) = base.get_mut(&key) {
                    b.append(&mut a);
                } else {
                    base.insert(key, toml::Value::Array(a));
                }
            }
            v => {
                base.insert(key, v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_lay_over_the_file_field_by_field() {
        let file: ServeConfig = toml::from_str(
            r#"
            listen = "127.0.0.1:8001"
            peers = ["127.0.0.1:8001", "127.0.0.1:8002"]
            max_loads = 8
            cache_shards = 3
            http_read_only = true
            [tls]
            cert = "file.pem"
            key = "file-key.pem"
            [[group]]
            name = "score"
            max_bytes = 2048
            origin = "sample"
            "#,
        )
        .unwrap();
        let flags = ServeConfig {
            listen: Some("127.0.0.1:9001".parse().unwrap()),
            tls: TlsSpec {
                tls_cert: Some("flag.pem".into()),
                ..Default::default()
            },
            groups: vec![GroupSpec::parse_flag("age:1024:0:sample").unwrap()],
            ..Default::default()
        };
        let c = ServeConfig::layered(file.clone(), flags).unwrap();
        // A flag given wins; one not given leaves the file's value.
        assert_eq!(c.listen, Some("127.0.0.1:9001".parse().unwrap()));
        assert_eq!(c.max_loads, Some(8));
        assert_eq!(c.node_config().cache_shards, 3);
        assert_eq!(c.peers, file.peers, "no --peers: the file's");
        // A switch left off does not turn the file's off.
        assert!(c.http_read_only);
        // Tables merge key by key.
        assert_eq!(c.tls.tls_cert, Some("flag.pem".into()));
        assert_eq!(c.tls.tls_key, Some("file-key.pem".into()));
        // Groups add up, the file's first.
        let names: Vec<&str> = c.groups.iter().map(|g| g.name.as_str()).collect();
        assert_eq!(names, ["score", "age"]);
        // --peers replaces the file's list.
        let flags = ServeConfig {
            peers: vec!["10.0.0.1:8000".into()],
            ..Default::default()
        };
        let c = ServeConfig::layered(file, flags).unwrap();
        assert_eq!(c.peers, ["10.0.0.1:8000"]);
    }

    #[tokio::test]
    async fn object_storage_groups_from_toml_and_flags() {
        let file: ServeConfig = toml::from_str(
            r#"
            [[group]]
            name = "objects"
            max_bytes = 1073741824
            origin = "s3://bucket/prefix"
            head_ttl_ms = 250
            [group.store]
            aws_region = "eu-west-1"
            aws_endpoint = "http://127.0.0.1:9000"
            [[group]]
            name = "files"
            max_bytes = 1048576
            origin = "dir:."
            page_size = 65536
            "#,
        )
        .unwrap();
        let g = &file.groups[0];
        assert_eq!((g.page_size, g.head_ttl_ms), (None, Some(250)));
        assert_eq!(g.store["aws_region"], "eu-west-1");
        assert!(
            file.builder().is_ok(),
            "a store is built without reaching it"
        );
        // --page-size sets a group's, from the file or the flags.
        let flags = ServeConfig {
            page_sizes: vec![("objects".into(), 4096), ("files".into(), 0)],
            ..Default::default()
        };
        let c = ServeConfig::layered(file.clone(), flags).unwrap();
        assert_eq!(
            (c.groups[0].page_size, c.groups[1].page_size),
            (Some(4096), Some(0))
        );
        let flags = ServeConfig {
            page_sizes: vec![("nope".into(), 1)],
            ..Default::default()
        };
        let e = ServeConfig::layered(file.clone(), flags).unwrap_err();
        assert!(e.contains("no group \"nope\""), "{e}");
        // Object storage is always read in pages; a store's settings
        // belong to a store; an unknown setting is named.
        let mut c = file.clone();
        c.groups[0].page_size = Some(0);
        assert!(c.builder().err().unwrap().contains("read in pages"));
        let mut c = file.clone();
        c.groups[1].store.insert("aws_region".into(), "x".into());
        assert!(c
            .builder()
            .err()
            .unwrap()
            .contains("object-storage origins"));
        let mut c = file;
        c.groups[0]
            .store
            .insert("no_such_option".into(), "x".into());
        assert!(c.builder().err().unwrap().contains("no_such_option"));
    }
}
