//! `groupcache serve --check`: resolve a configuration as `serve` would,
//! and say what the node would run with, without serving.

use std::fmt::Write;
use std::time::Duration;

use groupcache_tokio::{Discovery, DnsDiscovery, LoadError, PeerSource};

use crate::config::ServeConfig;
use crate::origin::{Origin, OriginPages};

/// Checks `cfg` as `serve` would start with it: the groups and their
/// origins, the peer list and, for DNS entries, one round of resolution.
/// Returns the report to print, or the first problem found.
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// use groupcache_cli::check::check;
/// use groupcache_cli::config::{GroupSpec, ServeConfig};
///
/// let mut cfg = ServeConfig::default();
/// cfg.peers = vec!["127.0.0.1:8001".into(), "dns+no port".into()];
/// cfg.groups.push(GroupSpec::parse_flag("score:2048:0:sample").unwrap());
/// let err = check(&cfg).await.unwrap_err();
/// assert!(err.contains("dns+no port"), "{err}");
/// # });
/// ```
pub async fn check(cfg: &ServeConfig) -> Result<String, String> {
    // Everything `serve` checks before it binds: groups, origins, limits.
    cfg.builder()?;
    let mut out = String::new();
    let listen = cfg.listen.map_or_else(
        || "127.0.0.1:0 (a port chosen by the OS)".into(),
        |a| a.to_string(),
    );
    let _ = writeln!(out, "listen     {listen}");
    let _ = writeln!(
        out,
        "self       {}",
        cfg.self_addr
            .as_deref()
            .unwrap_or("(found in the peer list, else the listen address)")
    );
    if let Some(tls) = cfg.tls()? {
        let f = tls.files();
        let _ = writeln!(
            out,
            "tls        mutual TLS 1.3: cert {}, CA {}",
            f.cert.display(),
            f.ca.display()
        );
    }
    let sources = cfg.peer_sources()?;
    let interval = cfg.dns_interval()?;
    if sources.is_empty() {
        let _ = writeln!(out, "peers      (this node alone)");
    }
    for s in &sources {
        let _ = writeln!(out, "peer       {s}");
    }
    if sources.iter().any(PeerSource::is_dns) {
        let dns = cfg.dns_config()?;
        let server = dns
            .server
            .map_or_else(|| "the system's name servers".into(), |s| s.to_string());
        let _ = writeln!(out, "dns        {server}, every {interval:?}");
        let d = DnsDiscovery::new(sources, dns).map_err(|e| format!("DNS resolver: {e}"))?;
        // Two tries of the resolver's own timeout, and a little more.
        let members = tokio::time::timeout(Duration::from_secs(10), d.members())
            .await
            .map_err(|_| "DNS: no answer within 10 s".to_string())?
            .map_err(|e| format!("DNS: {e}"))?;
        let _ = writeln!(
            out,
            "members    {} now: {}",
            members.len(),
            members.join(", ")
        );
    }
    for g in &cfg.groups {
        let ttl = match g.ttl_secs {
            0 => "no TTL".to_string(),
            s => format!("TTL {s} s"),
        };
        let origin = Origin::parse(&g.name, &g.origin)?;
        let kind = match origin {
            Origin::Http(_) => "http",
            Origin::Dir(_) => "dir",
            Origin::Sample(_) => "sample",
            Origin::Synthetic(_) => "synthetic",
            Origin::Store(_) => "object-store",
        };
        let pages = match g.page_size.or(origin.default_page_size()) {
            Some(p) if p > 0 => format!(", pages of {p} bytes"),
            _ => String::new(),
        };
        let _ = writeln!(
            out,
            "group      {}: {} bytes, {ttl}, {kind} origin {}{pages}",
            g.name, g.max_bytes, g.origin
        );
        let store = match origin {
            Origin::Store(_) => origin.pages(&g.name, &g.store)?,
            _ => continue,
        };
        if let OriginPages::Store(store) = store {
            // The bucket must answer a listing, as the node's loads would.
            let listed = tokio::time::timeout(Duration::from_secs(10), store.check()).await;
            let name = store.name();
            match listed {
                Ok(Ok(())) => {
                    let _ = writeln!(out, "store      {name}: reachable");
                }
                Ok(Err(LoadError::NotFound(m) | LoadError::Failed(m))) => {
                    return Err(format!("group {}: {m}", g.name))
                }
                Err(_) => return Err(format!("group {}: {name}: no answer within 10 s", g.name)),
            }
        }
    }
    if let Some(h) = cfg.http {
        let mode = if cfg.http_read_only {
            " (read only)"
        } else {
            ""
        };
        let _ = writeln!(out, "http       {h}{mode}");
    }
    let _ = writeln!(out, "ok: the node would start with this configuration");
    Ok(out)
}
