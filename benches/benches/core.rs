//! Framing, wire codec, ring and the node state machine.

#![allow(missing_docs)] // criterion's macros generate undocumented items

use std::hint::black_box;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use groupcache_benches::keys;
use groupcache_core::cache::Cache;
use groupcache_core::frame::{self, FrameDecoder};
use groupcache_core::node::{Config, Get, GroupConfig, Node, Output};
use groupcache_core::ring::{crc32_ieee, Ring};
use groupcache_core::wire::{encode_frame, Request, Response};
use tokio_util::codec::{Decoder, LengthDelimitedCodec};

fn frames(c: &mut Criterion) {
    let payload = vec![7u8; 1024];
    let mut wire = BytesMut::new();
    for _ in 0..64 {
        frame::encode(&payload, &mut wire);
    }
    let wire = wire.freeze();
    let mut g = c.benchmark_group("frame");
    g.throughput(Throughput::Bytes(wire.len() as u64));
    g.bench_function("encode/64x1KiB", |b| {
        let mut out = BytesMut::with_capacity(wire.len());
        b.iter(|| {
            out.clear();
            for _ in 0..64 {
                frame::encode(black_box(&payload), &mut out);
            }
        })
    });
    // Both decoders over the same bytes, whole and one byte at a time.
    let ours = || {
        let mut dec = FrameDecoder::new(1 << 20);
        move |buf: &mut BytesMut| dec.decode(buf).unwrap().map(|f| f.len())
    };
    let theirs = || {
        let mut dec = LengthDelimitedCodec::builder()
            .length_field_length(8)
            .little_endian()
            .max_frame_length(1 << 20)
            .new_codec();
        move |buf: &mut BytesMut| dec.decode(buf).unwrap().map(|f| f.len())
    };
    g.bench_function("decode_whole/groupcache", |b| {
        b.iter(|| decode_whole(&wire, ours()))
    });
    g.bench_function("decode_whole/tokio-util", |b| {
        b.iter(|| decode_whole(&wire, theirs()))
    });
    g.bench_function("decode_1byte_chunks/groupcache", |b| {
        b.iter(|| decode_bytewise(&wire, ours()))
    });
    g.bench_function("decode_1byte_chunks/tokio-util", |b| {
        b.iter(|| decode_bytewise(&wire, theirs()))
    });
    g.finish();
}

fn decode_whole(wire: &[u8], mut next: impl FnMut(&mut BytesMut) -> Option<usize>) {
    let mut buf = BytesMut::from(wire);
    let mut n = 0;
    while let Some(len) = next(&mut buf) {
        n += len;
    }
    assert_eq!(n, 64 * 1024);
}

fn decode_bytewise(wire: &[u8], mut next: impl FnMut(&mut BytesMut) -> Option<usize>) {
    let mut buf = BytesMut::with_capacity(2048);
    let mut n = 0;
    for byte in wire {
        buf.extend_from_slice(std::slice::from_ref(byte));
        n += next(&mut buf).unwrap_or(0);
    }
    assert_eq!(n, 64 * 1024);
}

fn wire(c: &mut Criterion) {
    let req = Request {
        group: "score".into(),
        key: "Tom".into(),
        ..Default::default()
    };
    let resp = Response {
        value: Bytes::from(vec![b'v'; 100]),
        code: 200,
        ..Default::default()
    };
    let req_bytes = groupcache_core::wire::frame_bytes(&req);
    let resp_bytes = groupcache_core::wire::frame_bytes(&resp);
    let mut g = c.benchmark_group("wire");
    let mut out = BytesMut::with_capacity(256);
    g.bench_function("encode_request", |b| {
        b.iter(|| {
            out.clear();
            encode_frame(black_box(&req), &mut out);
        })
    });
    g.bench_function("decode_request", |b| {
        b.iter(|| Request::decode_payload(black_box(&req_bytes[8..])).unwrap())
    });
    g.bench_function("encode_response_100B", |b| {
        b.iter(|| {
            out.clear();
            encode_frame(black_box(&resp), &mut out);
        })
    });
    g.bench_function("decode_response_100B", |b| {
        b.iter(|| Response::decode_payload(black_box(&resp_bytes[8..])).unwrap())
    });
    g.finish();
}

fn ring(c: &mut Criterion) {
    let ks = keys(4096);
    let mut g = c.benchmark_group("ring_owner");
    // The floor: hashing the key alone.
    let mut i = 0;
    g.bench_function("crc32_of_key", |b| {
        b.iter(|| {
            i = (i + 1) & 4095;
            crc32_ieee(black_box(ks[i].as_bytes()))
        })
    });
    for peers in [3, 100, 1000] {
        let names: Vec<String> = (0..peers)
            .map(|p| format!("10.0.{}.{}:8000", p / 256, p % 256))
            .collect();
        let ring = Ring::with_peers(50, &names);
        g.bench_function(BenchmarkId::new("50_replicas", peers), |b| {
            b.iter(|| {
                i = (i + 1) & 4095;
                ring.owner_index(black_box(&ks[i]))
            })
        });
    }
    g.finish();
}

fn node(c: &mut Criterion) {
    #[allow(clippy::disallowed_methods)]
    let now = Instant::now();
    let ks = keys(1000);
    let mut node = Node::new(Config::new("self:1"));
    node.add_group(GroupConfig::new("g", 1 << 24)).unwrap();
    let v = Bytes::from(vec![b'v'; 32]);
    for k in &ks {
        let Get::Pending(_) = node.get(now, "g", k) else {
            unreachable!()
        };
        let Some(Output::Load { id, .. }) = node.poll_output() else {
            unreachable!()
        };
        node.handle_load(now, id, Ok(v.clone().into()));
        node.poll_output();
    }
    let mut cache = Cache::new(1 << 24);
    for k in &ks {
        cache.insert(k, &v, None, now);
    }
    let mut g = c.benchmark_group("node");
    let mut i = 0;
    // The floor: the same hit on the bare cache.
    g.bench_function("cache_get_hit_1k", |b| {
        b.iter(|| {
            i = (i + 1) % 1000;
            cache.get(black_box(&ks[i]), now).unwrap()
        })
    });
    g.bench_function("get_hit_1k", |b| {
        b.iter(|| {
            i = (i + 1) % 1000;
            match node.get(now, "g", black_box(&ks[i])) {
                Get::Ready(r) => r.unwrap(),
                Get::Pending(_) => unreachable!(),
            }
        })
    });
    // A miss through load completion; a small budget keeps every key cold.
    let cold = keys(1 << 16);
    let mut small = Node::new(Config::new("self:1"));
    small.add_group(GroupConfig::new("g", 64 * 44)).unwrap();
    g.bench_function("get_miss_load_done", |b| {
        b.iter(|| {
            i = (i + 1) & 0xffff;
            let Get::Pending(get) = small.get(now, "g", &cold[i]) else {
                unreachable!()
            };
            let Some(Output::Load { id, .. }) = small.poll_output() else {
                unreachable!()
            };
            small.handle_load(now, id, Ok(v.clone().into()));
            match small.poll_output() {
                Some(Output::Done { get: done, result }) => {
                    assert_eq!(done, get);
                    result.unwrap()
                }
                other => panic!("{other:?}"),
            }
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = groupcache_benches::criterion(30);
    targets = frames, wire, ring, node
}
criterion_main!(benches);
