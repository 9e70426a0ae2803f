//! The origin the harness controls: an HTTP server whose values carry a
//! version, which counts every load and can be made slow or down.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;

/// How a slow origin answers: late by this much, well within the nodes'
/// load timeout.
pub const SLOW_BY: Duration = Duration::from_millis(1500);

/// How the origin answers now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Mode {
    /// At once.
    Up = 0,
    /// After [`SLOW_BY`].
    Slow = 1,
    /// 503 to every load.
    Down = 2,
}

/// The origin's state: each key's version, and every load it served.
#[derive(Debug)]
pub struct Origin {
    start: Instant,
    versions: Mutex<BTreeMap<String, u32>>,
    loads: Mutex<Vec<(Duration, String)>>,
    mode: AtomicU8,
}

/// The value of `key` at `version`: unique in a run.
pub fn value_of(key: &str, version: u32) -> String {
    format!("{key}@{version}")
}

impl Origin {
    /// An origin holding version 0 of every key; times count from `start`.
    pub fn new(start: Instant) -> Arc<Self> {
        Arc::new(Self {
            start,
            versions: Mutex::new(BTreeMap::new()),
            loads: Mutex::new(Vec::new()),
            mode: AtomicU8::new(Mode::Up as u8),
        })
    }

    /// Serves on an OS-chosen port of `ip` until the runtime ends;
    /// returns the address.
    pub async fn serve(self: &Arc<Self>, ip: std::net::IpAddr) -> std::io::Result<SocketAddr> {
        let listener = tokio::net::TcpListener::bind((ip, 0)).await?;
        let addr = listener.local_addr()?;
        let app = Router::new()
            .route("/v/{key}", get(load))
            .with_state(self.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(addr)
    }

    /// The application changes `key`: its next version, and when (taken
    /// under the same lock, so changes of one key are ordered by time).
    pub fn bump(&self, key: &str) -> (u32, Duration) {
        let mut v = self.versions.lock().expect("versions");
        let version = v.entry(key.to_string()).or_default();
        *version += 1;
        (*version, self.start.elapsed())
    }

    /// Sets how the origin answers.
    pub fn set_mode(&self, mode: Mode) {
        self.mode.store(mode as u8, Ordering::Relaxed);
    }

    /// Every load served so far: when, and which key.
    pub fn loads(&self) -> Vec<(Duration, String)> {
        self.loads.lock().expect("loads").clone()
    }

    fn mode(&self) -> Mode {
        match self.mode.load(Ordering::Relaxed) {
            0 => Mode::Up,
            1 => Mode::Slow,
            _ => Mode::Down,
        }
    }
}

async fn load(State(o): State<Arc<Origin>>, Path(key): Path<String>) -> (StatusCode, String) {
    (o.loads.lock().expect("loads")).push((o.start.elapsed(), key.clone()));
    // Read before any delay: a slow answer carries the version the origin
    // held when asked, as a database read that started before an update
    // does; a remove meanwhile must not let it be cached.
    let version = o.versions.lock().expect("versions").get(&key).copied();
    match o.mode() {
        Mode::Down => return (StatusCode::SERVICE_UNAVAILABLE, "origin down".into()),
        Mode::Slow => tokio::time::sleep(SLOW_BY).await,
        Mode::Up => {}
    }
    (StatusCode::OK, value_of(&key, version.unwrap_or(0)))
}
