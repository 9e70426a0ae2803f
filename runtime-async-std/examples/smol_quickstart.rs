//! The original README's quick start on smol: three nodes, the sample
//! groups, gets through different nodes, which node loaded each value, and
//! a remove through one node seen through another.
//!
//! Run: `cargo run -p groupcache-async-std --example smol_quickstart`

use groupcache_async_std::{sample, AsyncIo};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    smol::block_on(async {
        let rt = AsyncIo::smol();
        let addrs = sample::default_addrs(&rt).await;
        let nodes = sample::start_cluster(&rt, &addrs, |node, group, key| {
            println!("  [SlowDB] node {node} loads {group}/{key}");
        })
        .await?;
        for line in sample::run_script(&nodes).await {
            println!("{line}");
        }
        let report = nodes[1]
            .group("score")
            .expect("sample group")
            .remove("Tom")
            .await?;
        println!(
            "removed score/Tom everywhere (not reached: {:?})",
            report.not_reached
        );
        let v = nodes[0].get("score", "Tom").await?;
        println!(
            "node 0 reads Tom = {} (loaded again)",
            String::from_utf8_lossy(&v)
        );
        for n in &nodes {
            n.shutdown().await;
        }
        Ok(())
    })
}
