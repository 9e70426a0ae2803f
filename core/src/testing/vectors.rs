//! The golden vectors made by running the Go original, kept in the
//! repository (`core/vectors/go-needle-wire.json`), a byte-identical copy of
//! the project's shared vectors.

use std::collections::BTreeMap;

/// One frame of the vectors.
#[derive(Debug, Clone)]
pub struct FrameVector {
    /// True for a request, false for a response.
    pub request: bool,
    /// Request group.
    pub group: String,
    /// Request key.
    pub key: String,
    /// Response value.
    pub value: Vec<u8>,
    /// Response code.
    pub code: i32,
    /// The whole frame, header included.
    pub frame: Vec<u8>,
}

/// One ring case: replicas, peers in order, and the owner of each key.
#[derive(Debug, Clone)]
pub struct RingVector {
    /// Replicas per peer.
    pub replicas: usize,
    /// Peers in the order they were added.
    pub peers: Vec<String>,
    /// Key → owner.
    pub owners: BTreeMap<String, String>,
}

/// The vectors' text, compiled in so that no test reads outside the
/// repository.
pub const JSON: &str = include_str!("../../vectors/go-needle-wire.json");

fn json() -> serde_json::Value {
    serde_json::from_str(JSON).expect("vectors are JSON")
}

fn s(v: &serde_json::Value, k: &str) -> String {
    v.get(k).and_then(|x| x.as_str()).unwrap_or("").to_string()
}

/// Every frame vector.
pub fn frames() -> Vec<FrameVector> {
    json()["frames"]
        .as_array()
        .expect("frames")
        .iter()
        .map(|f| FrameVector {
            request: s(f, "kind") == "request",
            group: s(f, "group"),
            key: s(f, "key"),
            value: hex::decode(s(f, "value_hex")).expect("value hex"),
            code: f.get("code").and_then(|c| c.as_i64()).unwrap_or(0) as i32,
            frame: hex::decode(s(f, "frame_hex")).expect("frame hex"),
        })
        .collect()
}

/// Every ring vector.
pub fn rings() -> Vec<RingVector> {
    json()["rings"]
        .as_array()
        .expect("rings")
        .iter()
        .map(|r| RingVector {
            replicas: r["replicas"].as_u64().expect("replicas") as usize,
            peers: r["peers"]
                .as_array()
                .expect("peers")
                .iter()
                .map(|p| p.as_str().expect("peer").to_string())
                .collect(),
            owners: r["owners"]
                .as_object()
                .expect("owners")
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().expect("owner").to_string()))
                .collect(),
        })
        .collect()
}
