//! An in-process `group.get` hit through the tokio adapter, beside the same
//! hit on the core node (the floor: what the adapter adds is the lock, the
//! clock read and the async call).

#![allow(missing_docs)] // criterion's macros generate undocumented items

use std::hint::black_box;
use std::time::Instant;

use criterion::{criterion_group, criterion_main, Criterion};
use groupcache_benches::keys;
use groupcache_tokio::{Builder, LoadError};

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let ks = keys(1000);
    let group = rt.block_on(async {
        let node = Builder::new()
            .group("g", 1 << 24, None, |key: String| async move {
                Ok::<_, LoadError>(format!("value of {key}"))
            })
            .start()
            .await
            .unwrap();
        let g = node.group("g").unwrap();
        for k in &ks {
            g.get(k).await.unwrap();
        }
        g
    });
    let mut g = c.benchmark_group("adapter_tokio");
    g.bench_function("group_get_hit_1k", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for i in 0..iters as usize {
                    black_box(group.get(black_box(&ks[i % 1000])).await.unwrap());
                }
                start.elapsed()
            })
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = groupcache_benches::criterion(30);
    targets = bench
}
criterion_main!(benches);
