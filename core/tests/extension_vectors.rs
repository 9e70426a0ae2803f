//! Golden bytes of this project's wire extensions (`core/vectors/
//! extensions-wire.json`): the fields a Go peer never sends nor sees. Every
//! frame must encode from its fields to exactly its bytes and decode back,
//! so the extensions cannot change by accident.

use bytes::Bytes;
use groupcache_core::frame::{self, FrameDecoder};
use groupcache_core::wire::{frame_bytes, Request, Response, OP_PURGE, OP_REMOVE, OP_SET};
use serde_json::Value;

const JSON: &str = include_str!("../vectors/extensions-wire.json");

fn unhex(s: &str) -> Vec<u8> {
    hex::decode(s).expect("hex")
}

fn payload(frame_hex: &str) -> Bytes {
    let mut wire = bytes::BytesMut::from(&unhex(frame_hex)[..]);
    let p = FrameDecoder::new(frame::DEFAULT_MAX_FRAME)
        .decode(&mut wire)
        .unwrap()
        .expect("a whole frame");
    assert!(wire.is_empty(), "one frame exactly");
    p
}

fn vectors(kind: &str) -> Vec<Value> {
    let v: Value = serde_json::from_str(JSON).expect("valid JSON");
    v[kind].as_array().expect("a list").clone()
}

#[test]
fn every_extension_request_encodes_to_its_bytes_and_back() {
    let all = vectors("requests");
    let ops: Vec<i64> = all.iter().map(|v| v["op"].as_i64().unwrap()).collect();
    for op in [OP_SET, OP_REMOVE, OP_PURGE] {
        assert!(ops.contains(&i64::from(op)), "no vector for op {op}");
    }
    for v in all {
        let req = Request {
            group: v["group"].as_str().unwrap().into(),
            key: v["key"].as_str().unwrap().into(),
            from_peer: v["from_peer"].as_bool().unwrap(),
            ext: v["ext"].as_bool().unwrap(),
            progress: v["progress"].as_bool().unwrap(),
            op: v["op"].as_i64().unwrap() as i32,
            value: unhex(v["value_hex"].as_str().unwrap()).into(),
            ttl_ms: v["ttl_ms"].as_u64().unwrap(),
        };
        let frame = v["frame_hex"].as_str().unwrap();
        assert_eq!(hex::encode(frame_bytes(&req)), frame, "{}", v["name"]);
        assert_eq!(Request::decode_payload(&payload(frame)).unwrap(), req);
    }
}

#[test]
fn every_extension_response_encodes_to_its_bytes_and_back() {
    for v in vectors("responses") {
        let resp = Response {
            value: unhex(v["value_hex"].as_str().unwrap()).into(),
            code: v["code"].as_i64().unwrap() as i32,
            ttl_ms: v["ttl_ms"].as_u64().unwrap(),
            not_found: v["not_found"].as_bool().unwrap(),
            pipelining: v["pipelining"].as_bool().unwrap(),
            load_failed: v["load_failed"].as_bool().unwrap(),
            keepalive: v["keepalive"].as_bool().unwrap(),
            writes: v["writes"].as_bool().unwrap(),
            not_reached: v["not_reached"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p.as_str().unwrap().to_string())
                .collect(),
        };
        let frame = v["frame_hex"].as_str().unwrap();
        assert_eq!(hex::encode(frame_bytes(&resp)), frame, "{}", v["name"]);
        assert_eq!(Response::decode_payload(&payload(frame)).unwrap(), resp);
    }
}
