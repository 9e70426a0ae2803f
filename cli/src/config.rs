//! `groupcache serve` settings: a TOML file and/or flags.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use groupcache_tokio::Builder;
use serde::Deserialize;

use crate::origin::Origin;

/// One group of a served node.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct GroupSpec {
    /// Group name.
    pub name: String,
    /// Byte budget.
    pub max_bytes: usize,
    /// Seconds a value lives; absent or 0: until evicted.
    #[serde(default)]
    pub ttl_secs: u64,
    /// `sample`, `dir:PATH` or `http://host/path/{key}`.
    pub origin: String,
}

impl GroupSpec {
    /// Parses the flag form `NAME:MAX_BYTES:TTL_SECS:ORIGIN`.
    ///
    /// ```
    /// use groupcache_cli::config::GroupSpec;
    /// let g = GroupSpec::parse_flag("pages:1048576:60:http://origin/{key}").unwrap();
    /// assert_eq!((g.name.as_str(), g.max_bytes, g.ttl_secs), ("pages", 1048576, 60));
    /// assert_eq!(g.origin, "http://origin/{key}");
    /// ```
    pub fn parse_flag(s: &str) -> Result<Self, String> {
        let parts: Vec<&str> = s.splitn(4, ':').collect();
        let [name, bytes, ttl, origin] = parts[..] else {
            return Err(format!(
                "group {s:?}: expected NAME:MAX_BYTES:TTL_SECS:ORIGIN"
            ));
        };
        Ok(Self {
            name: name.to_string(),
            max_bytes: bytes
                .parse()
                .map_err(|e| format!("group {name}: max bytes {bytes:?}: {e}"))?,
            ttl_secs: ttl
                .parse()
                .map_err(|e| format!("group {name}: TTL {ttl:?}: {e}"))?,
            origin: origin.to_string(),
        })
    }
}

/// Everything `serve` needs.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ServeConfig {
    /// Peer port address.
    pub listen: Option<SocketAddr>,
    /// This node's name in peer lists (default: the listen address).
    pub self_addr: Option<String>,
    /// Members of the cluster, this node included.
    #[serde(default)]
    pub peers: Vec<String>,
    /// Address of the HTTP front (`/api`, `/metrics`, `/healthz`), if any.
    pub http: Option<SocketAddr>,
    /// Ring points per peer.
    pub replicas: Option<usize>,
    /// Peer request timeout in milliseconds.
    pub request_timeout_ms: Option<u64>,
    /// The groups.
    #[serde(default, rename = "group")]
    pub groups: Vec<GroupSpec>,
}

impl ServeConfig {
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
        if !self.peers.is_empty() {
            b = b.peers(self.peers.clone());
        }
        if let Some(r) = self.replicas {
            b = b.replicas(r);
        }
        if let Some(ms) = self.request_timeout_ms {
            b = b.request_timeout(Duration::from_millis(ms));
        }
        for g in &self.groups {
            let origin = Origin::parse(&g.name, &g.origin)?;
            let ttl = (g.ttl_secs > 0).then(|| Duration::from_secs(g.ttl_secs));
            b = b.group(g.name.clone(), g.max_bytes, ttl, origin.loader());
        }
        Ok(b)
    }
}
