//! The original README's quick start in one process: three nodes serving the
//! groups "score" and "age" over the same sample data, gets through
//! different nodes, and which node loaded each value; then a set and a
//! remove through one node, seen through another.
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
    // Writes enter through any node; the key's owner applies them first.
    let score = nodes[2].group("score").expect("sample group");
    score.set("Tom", "700", None).await?;
    let v = nodes[0].get("score", "Tom").await?;
    println!(
        "after set through node 2, node 0 reads Tom = {}",
        String::from_utf8_lossy(&v)
    );
    score.remove("Tom").await?;
    let v = nodes[0].get("score", "Tom").await?;
    println!(
        "after remove, node 0 reads Tom = {} (loaded again)",
        String::from_utf8_lossy(&v)
    );
    for n in &nodes {
        n.shutdown().await;
    }
    Ok(())
}
