//! The clients: gets (most), sets, removes, purges and "change the
//! origin, then remove the key", through the HTTP fronts and through the
//! non-member `Client`, on random nodes; every operation recorded.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use groupcache_core::testing::history::{History, Kind, OpId, Outcome};
use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::origin::{value_of, Origin};

/// The group every node serves.
pub const GROUP: &str = "g";

/// How long a client waits for any answer before it gives up.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(10);

/// The keys: a few hot ones that most operations touch, and a tail.
pub fn keys(hot: usize, tail: usize) -> Vec<String> {
    let hot = (0..hot).map(|i| format!("hot{i}"));
    hot.chain((0..tail).map(|i| format!("tail{i}"))).collect()
}

/// What the clients share: where the nodes are, the origin, the record.
pub struct Shared {
    /// Each node's HTTP front and peer port.
    pub nodes: Vec<(std::net::SocketAddr, std::net::SocketAddr)>,
    /// The origin, for "change the origin, then remove".
    pub origin: Arc<Origin>,
    /// The record.
    pub history: Mutex<History>,
    /// When the run started: history times count from it.
    pub start: Instant,
    /// Hot keys, then the tail.
    pub keys: Vec<String>,
    /// How many of `keys` are hot.
    pub hot: usize,
}

impl Shared {
    fn now(&self) -> Duration {
        self.start.elapsed()
    }

    fn invoke(&self, process: usize, node: usize, kind: Kind) -> OpId {
        let at = self.now();
        (self.history.lock().expect("history")).invoke(process, node, at, kind)
    }

    fn complete(&self, id: OpId, outcome: Outcome) {
        let at = self.now();
        (self.history.lock().expect("history")).complete(id, at, outcome);
    }
}

fn url(front: std::net::SocketAddr, path: &str, key: Option<&str>) -> String {
    let mut u = format!("http://{front}{path}?group={GROUP}");
    if let Some(k) = key {
        u += "&key=";
        u += &utf8_percent_encode(k, NON_ALPHANUMERIC).to_string();
    }
    u
}

/// A write's answer: `{"not_reached":[...]}` on 200.
async fn written(r: reqwest::Result<reqwest::Response>) -> Outcome {
    let r = match r {
        Ok(r) => r,
        Err(e) => return Outcome::Failed(e.to_string()),
    };
    let status = r.status();
    let body = r.bytes().await.unwrap_or_default();
    if !status.is_success() {
        return Outcome::Failed(format!("{status}: {}", String::from_utf8_lossy(&body)));
    }
    match serde_json::from_slice::<serde_json::Value>(&body) {
        Ok(v) => Outcome::Written {
            not_reached: v["not_reached"].as_array().map_or(0, Vec::len),
        },
        Err(e) => Outcome::Failed(format!("unreadable answer: {e}")),
    }
}

/// A client's HTTP connection pool, which gives up after
/// [`CLIENT_TIMEOUT`].
fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(CLIENT_TIMEOUT)
        .build()
        .expect("an HTTP client without TLS builds")
}

/// One client: until `until`, one operation after another.
pub async fn client(s: Arc<Shared>, process: usize, seed: u64, until: Duration) {
    let mut rng = StdRng::seed_from_u64(seed ^ (process as u64).wrapping_mul(0x9E37_79B9));
    let http = http_client();
    let mut sets = 0u64;
    while s.now() < until {
        let node = rng.gen_range(0..s.nodes.len());
        let key = if rng.gen_bool(0.5) {
            s.keys[rng.gen_range(0..s.hot)].clone()
        } else {
            s.keys[rng.gen_range(0..s.keys.len())].clone()
        };
        match rng.gen_range(0..100) {
            0..=59 => get_http(&s, &http, process, node, &key).await,
            60..=69 => get_client(&s, process, node, &key).await,
            70..=77 => {
                sets += 1;
                let value = format!("{key}#c{process}s{sets}");
                set(&s, &http, process, node, &key, value).await;
            }
            78..=97 => update_then_remove(&s, &http, process, node, &key).await,
            _ => purge(&s, &http, process, node).await,
        }
        tokio::time::sleep(Duration::from_millis(rng.gen_range(0..20))).await;
    }
}

/// A reader: until `until`, gets of the hot keys through random nodes'
/// HTTP fronts, one after another without pause, as the readers of a busy
/// application do. They are what meets a write's races.
pub async fn reader(s: Arc<Shared>, process: usize, seed: u64, until: Duration) {
    let mut rng = StdRng::seed_from_u64(seed ^ (process as u64).wrapping_mul(0x5851_F42D));
    let http = http_client();
    while s.now() < until {
        let node = rng.gen_range(0..s.nodes.len());
        let key = s.keys[rng.gen_range(0..s.hot)].clone();
        get_http(&s, &http, process, node, &key).await;
    }
}

/// A get through node `node`'s HTTP front.
pub async fn get_http(s: &Shared, http: &reqwest::Client, process: usize, node: usize, key: &str) {
    let id = s.invoke(process, node, Kind::Get { key: key.into() });
    let outcome = match http
        .get(url(s.nodes[node].0, "/api", Some(key)))
        .send()
        .await
    {
        Ok(r) if r.status().is_success() => match r.bytes().await {
            Ok(b) => Outcome::Value(b),
            Err(e) => Outcome::Failed(e.to_string()),
        },
        Ok(r) if r.status() == reqwest::StatusCode::NOT_FOUND => Outcome::NotFound,
        Ok(r) => Outcome::Failed(r.status().to_string()),
        Err(e) => Outcome::Failed(e.to_string()),
    };
    s.complete(id, outcome);
}

/// A get through the non-member client, which asks node `node`'s peer
/// port.
async fn get_client(s: &Shared, process: usize, node: usize, key: &str) {
    let id = s.invoke(process, node, Kind::Get { key: key.into() });
    let client = groupcache_tokio::Client::new(s.nodes[node].1.to_string());
    let got = tokio::time::timeout(CLIENT_TIMEOUT, client.get(GROUP, key)).await;
    let outcome = match got {
        Ok(Ok(v)) => Outcome::Value(v),
        Ok(Err(groupcache_tokio::Error::NotFound(_))) => Outcome::NotFound,
        Ok(Err(e)) => Outcome::Failed(e.to_string()),
        Err(_) => Outcome::Failed("timed out".into()),
    };
    s.complete(id, outcome);
}

async fn set(
    s: &Shared,
    http: &reqwest::Client,
    process: usize,
    node: usize,
    key: &str,
    value: String,
) {
    let value = Bytes::from(value);
    let kind = Kind::Set {
        key: key.into(),
        value: value.clone(),
    };
    let id = s.invoke(process, node, kind);
    let r = http
        .put(url(s.nodes[node].0, "/api", Some(key)))
        .body(value)
        .send()
        .await;
    s.complete(id, written(r).await);
}

/// What applications do: change the origin, then remove the key.
async fn update_then_remove(
    s: &Shared,
    http: &reqwest::Client,
    process: usize,
    node: usize,
    key: &str,
) {
    let (version, at) = s.origin.bump(key);
    {
        let mut h = s.history.lock().expect("history");
        let id = h.invoke(
            process,
            usize::MAX,
            at,
            Kind::origin(key, value_of(key, version)),
        );
        h.complete(id, at, Outcome::Done);
    }
    let id = s.invoke(process, node, Kind::Remove { key: key.into() });
    let r = http
        .delete(url(s.nodes[node].0, "/api", Some(key)))
        .send()
        .await;
    s.complete(id, written(r).await);
}

async fn purge(s: &Shared, http: &reqwest::Client, process: usize, node: usize) {
    let id = s.invoke(process, node, Kind::Purge);
    let r = http
        .post(url(s.nodes[node].0, "/api/purge", None))
        .send()
        .await;
    s.complete(id, written(r).await);
}
