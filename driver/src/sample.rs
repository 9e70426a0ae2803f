//! The sample data of the original README's quick start: the groups
//! "score" and "age", over the same three people.

use std::net::SocketAddr;
use std::time::Duration;

use crate::{Builder, LoadError, Loader, Node, Runtime, StartError};

/// The "score" table.
pub const SCORE: &[(&str, &str)] = &[("Tom", "630"), ("Jack", "589"), ("Sam", "567")];
/// The "age" table.
pub const AGE: &[(&str, &str)] = &[("Tom", "15"), ("Jack", "17"), ("Sam", "15")];
/// The byte budget the original gives each sample group (`2<<10`).
pub const MAX_BYTES: usize = 2 << 10;
/// The TTL the original gives each sample group (1024 s).
pub const TTL: Duration = Duration::from_secs(1024);
/// The request script of the original README's API example, as
/// (group, key) pairs, including one key that does not exist.
pub const SCRIPT: &[(&str, &str)] = &[
    ("score", "Tom"),
    ("score", "Jack"),
    ("score", "Sam"),
    ("age", "Tom"),
    ("age", "Jack"),
    ("age", "Sam"),
    ("score", "Tom"),
    ("score", "kkk"),
];

/// The sample groups as (name, table).
pub const GROUPS: &[(&str, &[(&str, &str)])] = &[("score", SCORE), ("age", AGE)];

/// A loader over a sample table that answers "`<key>` not exist" like the
/// original for missing keys, and calls `on_load(key)` for every load (to
/// log or count them).
///
/// ```
/// use groupcache_driver::sample;
/// let loader = sample::loader(sample::SCORE, |key| println!("[SlowDB] search key {key}"));
/// # fn is_loader(_: impl groupcache_driver::Loader) {}
/// # is_loader(loader);
/// ```
pub fn loader(
    table: &'static [(&'static str, &'static str)],
    on_load: impl Fn(&str) + Send + Sync + 'static,
) -> impl Loader {
    move |key: String| {
        on_load(&key);
        let found = table.iter().find(|(k, _)| *k == key).map(|(_, v)| *v);
        async move { found.ok_or_else(|| LoadError::NotFound(format!("{key} not exist"))) }
    }
}

/// Starts `addrs.len()` nodes on `rt`, one per listen address (port 0: the
/// OS picks), each serving the sample groups and knowing all the others.
/// `on_load(node, group, key)` is called on every load.
pub async fn start_cluster<R: Runtime>(
    rt: &R,
    addrs: &[SocketAddr],
    on_load: impl Fn(usize, &str, &str) + Clone + Send + Sync + 'static,
) -> Result<Vec<Node<R>>, StartError> {
    let mut nodes = Vec::with_capacity(addrs.len());
    for (i, addr) in addrs.iter().enumerate() {
        let mut b = Builder::with_runtime(rt.clone()).listen(*addr);
        for (group, table) in GROUPS {
            let on_load = on_load.clone();
            let loader = loader(table, move |key| on_load(i, group, key));
            b = b.group(*group, MAX_BYTES, Some(TTL), loader);
        }
        nodes.push(b.start().await?);
    }
    let members: Vec<String> = nodes.iter().map(Node::self_addr).collect();
    for n in &nodes {
        n.set_peers(&members);
    }
    Ok(nodes)
}

/// Runs [`SCRIPT`] against `nodes`, asking each request through the next
/// node in turn, and returns one line per request: what was asked, through
/// which node, which node owns the key, and the answer.
pub async fn run_script<R: Runtime>(nodes: &[Node<R>]) -> Vec<String> {
    let members: Vec<String> = nodes.iter().map(Node::self_addr).collect();
    let mut lines = Vec::new();
    for (n, (group, key)) in SCRIPT.iter().enumerate() {
        let via = n % nodes.len();
        let owner = nodes[via]
            .owner(key)
            .and_then(|o| members.iter().position(|m| *m == o))
            .map_or("?".to_string(), |i| i.to_string());
        let answer = match nodes[via].get(group, key).await {
            Ok(v) => String::from_utf8_lossy(&v).into_owned(),
            Err(e) => format!("error: {e}"),
        };
        lines.push(format!(
            "GET {group}/{key} via node {via} (owner node {owner}) -> {answer}"
        ));
    }
    lines
}

/// The original's listen addresses, 127.0.0.1:8001-8003, where those ports
/// are free (so placement matches its README), else port 0.
pub async fn default_addrs<R: Runtime>(rt: &R) -> Vec<SocketAddr> {
    let mut out = Vec::new();
    for port in 8001..=8003u16 {
        let fixed = SocketAddr::from(([127, 0, 0, 1], port));
        let free = rt.bind(fixed).await.is_ok();
        out.push(if free {
            fixed
        } else {
            SocketAddr::from(([127, 0, 0, 1], 0))
        });
    }
    out
}
