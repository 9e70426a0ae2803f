//! The original README's quick start in one process: three nodes serving the
//! groups "score" and "age" over the same sample data, gets through
//! different nodes, and which node loaded each value.
//!
//! Run: `cargo run -p groupcache-tokio --example quickstart`

use std::sync::{Arc, Mutex};

use groupcache_driver::sample;
use groupcache_tokio::{Builder, Node};

async fn probe(port: u16) -> bool {
    tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .is_ok()
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Which node's loader ran for each group/key.
    let loaded_by: Arc<Mutex<Vec<String>>> = Arc::default();
    let mut nodes: Vec<Node> = Vec::new();
    for i in 0..3 {
        // The original's ports, so placement matches its README; any free
        // port if they are taken.
        let port = 8001 + i as u16;
        let mut b = Builder::new();
        for (group, table) in sample::GROUPS {
            let log = loaded_by.clone();
            let group_name = group.to_string();
            let loader = sample::loader(table, move |key| {
                println!("  [SlowDB] node {i} searches {group_name}/{key}");
                log.lock()
                    .unwrap()
                    .push(format!("{group_name}/{key} by node {i}"));
            });
            b = b.group(*group, sample::MAX_BYTES, Some(sample::TTL), loader);
        }
        let node = match probe(port).await {
            true => b.listen(([127, 0, 0, 1], port).into()).start().await?,
            false => b.start().await?,
        };
        nodes.push(node);
    }
    let addrs: Vec<String> = nodes.iter().map(|n| n.self_addr()).collect();
    for n in &nodes {
        n.set_peers(&addrs);
    }
    for (i, a) in addrs.iter().enumerate() {
        println!("node {i} listens on {a}");
    }
    for (n, (group, key)) in sample::SCRIPT.iter().enumerate() {
        let via = n % nodes.len();
        let owner = nodes[via].owner(key).unwrap_or_default();
        let owner = addrs.iter().position(|a| *a == owner).unwrap_or(via);
        match nodes[via].get(group, key).await {
            Ok(v) => println!(
                "GET {group}/{key} via node {via} (owner node {owner}) -> {}",
                String::from_utf8_lossy(&v)
            ),
            Err(e) => {
                println!("GET {group}/{key} via node {via} (owner node {owner}) -> error: {e}")
            }
        }
    }
    println!("loads: {:?}", loaded_by.lock().unwrap());
    for n in &nodes {
        n.shutdown().await;
    }
    Ok(())
}
