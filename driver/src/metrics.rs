//! The stats of one or more nodes in the Prometheus text exposition format
//! (OpenMetrics flavour), through the `prometheus-client` crate.

use std::fmt;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use groupcache_core::cache::CacheStats;

#[cfg(feature = "tls")]
use crate::TlsStats;
use crate::{DiscoveryStats, GroupStats, Node, Runtime};

type GroupField = fn(&GroupStats) -> u64;
type CacheField = fn(&CacheStats) -> u64;
type PickCache = fn(&GroupStats) -> &CacheStats;

const GROUP_COUNTERS: &[(&str, &str, GroupField)] = &[
    ("groupcache_gets", "Gets from callers of this node.", |s| {
        s.gets
    }),
    (
        "groupcache_cache_hits",
        "Gets and served requests answered from a cache.",
        |s| s.cache_hits,
    ),
    (
        "groupcache_peer_loads",
        "Values fetched from their owner.",
        |s| s.peer_loads,
    ),
    (
        "groupcache_peer_errors",
        "Peer requests that failed or timed out.",
        |s| s.peer_errors,
    ),
    ("groupcache_loads", "Misses that had to be loaded.", |s| {
        s.loads
    }),
    (
        "groupcache_loads_deduped",
        "Misses that joined a load under way.",
        |s| s.loads_deduped,
    ),
    ("groupcache_local_loads", "Successful local loads.", |s| {
        s.local_loads
    }),
    ("groupcache_local_load_errors", "Failed local loads.", |s| {
        s.local_load_errs
    }),
    (
        "groupcache_server_requests",
        "Requests served to peers and clients.",
        |s| s.server_requests,
    ),
    (
        "groupcache_load_timeouts",
        "Loads cancelled at the group's load timeout.",
        |s| s.load_timeouts,
    ),
    (
        "groupcache_values_too_large",
        "Loaded values refused for exceeding the group's maximum value size.",
        |s| s.values_too_large,
    ),
    (
        "groupcache_handoff_hits",
        "Misses answered by the key's previous owner after a membership change.",
        |s| s.handoff_hits,
    ),
    (
        "groupcache_handoff_misses",
        "Handoff requests that found nothing in time; the key was loaded.",
        |s| s.handoff_misses,
    ),
    (
        "groupcache_sets",
        "Sets this node carried out across the cluster.",
        |s| s.sets,
    ),
    (
        "groupcache_removes",
        "Removes this node carried out across the cluster.",
        |s| s.removes,
    ),
    (
        "groupcache_purges",
        "Purges this node carried out across the cluster.",
        |s| s.purges,
    ),
    (
        "groupcache_writes_applied",
        "Writes applied on this node at another node's request.",
        |s| s.writes_applied,
    ),
    (
        "groupcache_write_peers_not_reached",
        "Peers a write carried out by this node could not reach, summed.",
        |s| s.write_peers_not_reached,
    ),
];

type NodeField = fn(&DiscoveryStats) -> u64;

const NODE_COUNTERS: &[(&str, &str, NodeField)] = &[
    (
        "groupcache_discovery_rounds",
        "Discovery rounds run.",
        |s| s.rounds,
    ),
    (
        "groupcache_discovery_failures",
        "Discovery rounds that failed or found nobody (the members were kept).",
        |s| s.failures,
    ),
    (
        "groupcache_discovery_changes",
        "Discovery rounds that changed the members.",
        |s| s.changes,
    ),
];

const CACHE_COUNTERS: &[(&str, &str, CacheField)] = &[
    ("groupcache_cache_lookups", "Cache lookups.", |s| s.gets),
    (
        "groupcache_cache_lookup_hits",
        "Cache lookups that found a fresh entry.",
        |s| s.hits,
    ),
    (
        "groupcache_cache_evictions",
        "Entries evicted to stay within budget.",
        |s| s.evictions,
    ),
    (
        "groupcache_cache_expirations",
        "Entries removed on expiry.",
        |s| s.expirations,
    ),
];

const CACHE_GAUGES: &[(&str, &str, CacheField)] = &[
    ("groupcache_cache_bytes", "Bytes held (key + value).", |s| {
        s.bytes
    }),
    ("groupcache_cache_items", "Entries held.", |s| s.items),
];

/// What one node says of itself in a scrape.
#[derive(Debug)]
struct NodeRow {
    node: String,
    members: Vec<String>,
    discovery: DiscoveryStats,
    #[cfg(feature = "tls")]
    tls: Option<TlsStats>,
}

/// One scrape: per node, and per (node, group), taken at once.
#[derive(Debug)]
struct Snapshot {
    nodes: Vec<NodeRow>,
    groups: Vec<(String, String, GroupStats)>,
}

impl Collector for Snapshot {
    fn encode(&self, mut enc: DescriptorEncoder<'_>) -> fmt::Result {
        // Members, so an operator can see that every node agrees.
        let mut m = enc.encode_descriptor(
            "groupcache_peers",
            "Members of the ring this node uses, itself included.",
            None,
            MetricType::Gauge,
        )?;
        for r in &self.nodes {
            let labels = [("node", r.node.as_str())];
            ConstGauge::new(r.members.len() as i64).encode(m.encode_family(&labels)?)?;
        }
        let mut m = enc.encode_descriptor(
            "groupcache_peer_info",
            "One series per member of the ring this node uses.",
            None,
            MetricType::Gauge,
        )?;
        for r in &self.nodes {
            for p in &r.members {
                let labels = [("node", r.node.as_str()), ("peer", p.as_str())];
                ConstGauge::new(1).encode(m.encode_family(&labels)?)?;
            }
        }
        for (name, help, field) in NODE_COUNTERS {
            let mut m = enc.encode_descriptor(name, help, None, MetricType::Counter)?;
            for r in &self.nodes {
                let labels = [("node", r.node.as_str())];
                ConstCounter::new(field(&r.discovery)).encode(m.encode_family(&labels)?)?;
            }
        }
        #[cfg(feature = "tls")]
        self.encode_tls(&mut enc)?;
        for (name, help, field) in GROUP_COUNTERS {
            let mut m = enc.encode_descriptor(name, help, None, MetricType::Counter)?;
            for (node, group, s) in &self.groups {
                let labels = [("node", node.as_str()), ("group", group.as_str())];
                ConstCounter::new(field(s)).encode(m.encode_family(&labels)?)?;
            }
        }
        let kinds: [(&str, PickCache); 2] = [("main", |s| &s.main), ("hot", |s| &s.hot)];
        for (name, help, field) in CACHE_COUNTERS.iter().chain(CACHE_GAUGES) {
            let is_gauge = CACHE_GAUGES.iter().any(|g| g.0 == *name);
            let kind = if is_gauge {
                MetricType::Gauge
            } else {
                MetricType::Counter
            };
            let mut m = enc.encode_descriptor(name, help, None, kind)?;
            for (node, group, s) in &self.groups {
                for (cache, pick) in kinds {
                    let labels = [
                        ("node", node.as_str()),
                        ("group", group.as_str()),
                        ("cache", cache),
                    ];
                    let v = field(pick(s));
                    let family = m.encode_family(&labels)?;
                    if is_gauge {
                        ConstGauge::new(v as i64).encode(family)?;
                    } else {
                        ConstCounter::new(v).encode(family)?;
                    }
                }
            }
        }
        Ok(())
    }
}

impl Snapshot {
    /// TLS handshakes of the nodes that speak TLS: completed, failed by
    /// reason, and certificate reloads.
    #[cfg(feature = "tls")]
    fn encode_tls(&self, enc: &mut DescriptorEncoder<'_>) -> fmt::Result {
        let tls: Vec<(&str, TlsStats)> = self
            .nodes
            .iter()
            .filter_map(|r| r.tls.map(|t| (r.node.as_str(), t)))
            .collect();
        if tls.is_empty() {
            return Ok(());
        }
        let per_node =
            |enc: &mut DescriptorEncoder<'_>, name, help, field: fn(&TlsStats) -> u64| {
                let mut m = enc.encode_descriptor(name, help, None, MetricType::Counter)?;
                for (node, t) in &tls {
                    ConstCounter::new(field(t)).encode(m.encode_family(&[("node", *node)])?)?;
                }
                Ok::<_, fmt::Error>(())
            };
        per_node(
            enc,
            "groupcache_tls_handshakes",
            "TLS handshakes completed, both directions.",
            |t| t.handshakes,
        )?;
        let mut m = enc.encode_descriptor(
            "groupcache_tls_failures",
            "TLS handshakes refused or cut off, by reason.",
            None,
            MetricType::Counter,
        )?;
        for (node, t) in &tls {
            for (reason, v) in [
                ("not_tls", t.not_tls),
                ("bad_certificate", t.bad_certificates),
                ("expired_certificate", t.expired_certificates),
                ("timeout", t.timeouts),
                ("other", t.other_failures),
            ] {
                let labels = [("node", *node), ("reason", reason)];
                ConstCounter::new(v).encode(m.encode_family(&labels)?)?;
            }
        }
        per_node(
            enc,
            "groupcache_tls_reloads",
            "Times changed certificate files were loaded.",
            |t| t.reloads,
        )
    }
}

/// The counters of every group of `nodes`, labelled by node and group, as
/// Prometheus text.
///
/// ```no_run
/// # fn demo<R: groupcache_driver::Runtime>(node: groupcache_driver::Node<R>) {
/// let text = groupcache_driver::metrics::prometheus_text(&[node]);
/// assert!(text.contains("groupcache_gets_total"));
/// # }
/// ```
pub fn prometheus_text<R: Runtime>(nodes: &[Node<R>]) -> String {
    let mut rows = Vec::new();
    let mut node_rows = Vec::new();
    for n in nodes {
        let addr = n.self_addr();
        let mut members = n.members();
        members.sort();
        node_rows.push(NodeRow {
            node: addr.clone(),
            members,
            discovery: n.discovery_stats(),
            #[cfg(feature = "tls")]
            tls: n.tls_stats(),
        });
        let mut groups = n.groups();
        groups.sort();
        for g in groups {
            if let Some(s) = n.stats(&g) {
                rows.push((addr.clone(), g, s));
            }
        }
    }
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Snapshot {
        nodes: node_rows,
        groups: rows,
    }));
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
    out
}
