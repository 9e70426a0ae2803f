//! Helpers shared by the CLI's test files.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};

/// The `groupcache` binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_groupcache");

/// Starts `groupcache serve ARGS`; returns the process, its peer address and
/// its HTTP front's base URL (`args` must ask for an HTTP front).
#[allow(dead_code)] // not every test file serves without an environment
pub async fn serve(args: &[&str]) -> (tokio::process::Child, String, String) {
    serve_env(args, &[]).await
}

/// [`serve`] with `env` added to the environment.
pub async fn serve_env(
    args: &[&str],
    env: &[(&str, &str)],
) -> (tokio::process::Child, String, String) {
    let mut child = tokio::process::Command::new(BIN)
        .arg("serve")
        .args(args)
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        // Never read: a full pipe would stop the node.
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let (mut peer, mut http) = (None, None);
    while peer.is_none() || http.is_none() {
        let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
            .await
            .expect("serve prints its addresses")
            .unwrap()
            .expect("serve is running");
        if let Some(rest) = line.split(" listening on ").nth(1) {
            peer = Some(rest.to_string());
        }
        if let Some(rest) = line.strip_prefix("http front on ") {
            http = Some(rest.to_string());
        }
    }
    (child, peer.unwrap(), http.unwrap())
}
