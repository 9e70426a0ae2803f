//! The original README's quick start in one process: three nodes serving the
//! groups "score" and "age" over the same sample data, gets through
//! different nodes, and which node loaded each value.
//!
//! Run: `cargo run -p groupcache-tokio --example quickstart`

use groupcache_driver::sample;
use groupcache_tokio::Tokio;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let rt = Tokio::current();
    let addrs = sample::default_addrs(&rt).await;
    let nodes = sample::start_cluster(&rt, &addrs, |node, group, key| {
        println!("  [SlowDB] node {node} loads {group}/{key}");
    })
    .await?;
    for (i, n) in nodes.iter().enumerate() {
        println!("node {i} listens on {}", n.self_addr());
    }
    for line in sample::run_script(&nodes).await {
        println!("{line}");
    }
    for n in &nodes {
        n.shutdown().await;
    }
    Ok(())
}
