//! One group of a served node, as a TOML `[[group]]` table or a
//! `--group` flag.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// One group of a served node.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct GroupSpec {
    /// Group name.
    pub name: String,
    /// Byte budget.
    pub max_bytes: usize,
    /// Seconds a value lives; absent or 0: until evicted.
    #[serde(default)]
    pub ttl_secs: u64,
    /// `sample`, `dir:PATH`, `http://host/path/{key}`, `synthetic:SIZE`,
    /// or object storage: `s3://BUCKET/PREFIX`, `gs://BUCKET/PREFIX`,
    /// `az://CONTAINER/PREFIX`.
    pub origin: String,
    /// Bytes per page: each page of an object is one key, loaded with one
    /// ranged read, and `/api` answers `Range` requests from pages.
    /// Object storage: default 1 MiB (it is always read in pages);
    /// `dir:` and `http://`: default 0 (whole values). Flag:
    /// `--page-size NAME=BYTES`.
    #[serde(default)]
    pub page_size: Option<u64>,
    /// How long a node trusts an object's HEAD (its length and version) in
    /// a paged group, in milliseconds (default 1000): a replaced object is
    /// seen by new reads within this time, and no read mixes versions.
    #[serde(default)]
    pub head_ttl_ms: Option<u64>,
    /// Object storage settings, over the store's environment
    /// (`AWS_ACCESS_KEY_ID`, ...): the store's keys, such as `aws_region`,
    /// `aws_endpoint`, `aws_allow_http`. In TOML, a `[group.store]` table.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub store: BTreeMap<String, String>,
    /// Largest value in bytes (default: the node's `max_value`).
    #[serde(default)]
    pub max_value: Option<usize>,
    /// Longest a load may take, in milliseconds (default: the node's).
    #[serde(default)]
    pub load_timeout_ms: Option<u64>,
    /// Loads running at once at most (default: the node's).
    #[serde(default)]
    pub max_loads: Option<usize>,
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
            page_size: None,
            head_ttl_ms: None,
            store: BTreeMap::new(),
            max_value: None,
            load_timeout_ms: None,
            max_loads: None,
        })
    }
}
