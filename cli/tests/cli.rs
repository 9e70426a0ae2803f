//! The `groupcache` binary, run as a real process on OS-chosen ports.

use std::process::{Command, Stdio};
use std::time::Duration;

use common::{serve, BIN};
use groupcache_driver::core::testing::vectors;

mod common;

fn run(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(BIN).args(args).output().expect("binary runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn ring_matches_the_go_vectors() {
    for v in vectors::rings() {
        let peers = v.peers.join(",");
        let replicas = v.replicas.to_string();
        let mut args = vec!["ring", "--replicas", &replicas, "--peers", &peers];
        let keys: Vec<&String> = v.owners.keys().collect();
        args.extend(keys.iter().map(|k| k.as_str()));
        let (ok, out, err) = run(&args);
        assert!(ok, "{err}");
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), keys.len());
        for (line, key) in lines.iter().zip(&keys) {
            assert_eq!(*line, format!("{key}\t{}", v.owners[*key]));
        }
    }
}

#[test]
fn help_is_there_for_every_command() {
    let (ok, out, _) = run(&["--help"]);
    assert!(ok);
    for cmd in ["serve", "get", "set", "remove", "purge", "ring", "demo"] {
        assert!(out.contains(cmd), "{out}");
        let (ok, out, _) = run(&[cmd, "--help"]);
        assert!(ok && out.contains("Usage: groupcache"), "{cmd}: {out}");
    }
}

#[test]
fn demo_runs_the_original_script() {
    let (ok, out, err) = run(&["demo", "--any-port", "--exit"]);
    assert!(ok, "{err}");
    for want in [
        "group=score&key=Tom -> 200 630 (loaded by node",
        "group=score&key=Jack -> 200 589",
        "group=score&key=Sam -> 200 567",
        "group=age&key=Tom -> 200 15",
        "group=age&key=Jack -> 200 17",
        "group=age&key=Sam -> 200 15",
        "group=score&key=Tom -> 200 630 (cached, loaded earlier by node",
        "group=score&key=kkk -> 404 not found: kkk not exist",
    ] {
        assert!(out.contains(want), "missing {want:?} in:\n{out}");
    }
}

#[test]
fn get_fails_with_a_clear_error_when_no_node_answers() {
    // Bind then drop a listener: a port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let node = format!("127.0.0.1:{port}");
    let (ok, _, err) = run(&["get", "--node", &node, "score", "Tom"]);
    assert!(!ok);
    assert!(err.contains("not reached") && err.contains(&node), "{err}");
    for write in [
        &["set", "--node", &node, "score", "Tom", "1"][..],
        &["remove", "--node", &node, "score", "Tom"],
        &["purge", "--node", &node, "score"],
    ] {
        let out = Command::new(BIN).args(write).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{write:?}: {err}");
        assert!(err.contains("not reached") && err.contains(&node), "{err}");
    }
}

/// Runs the binary with `stdin` as its standard input; returns its exit
/// code, stdout and stderr.
fn run_with_input(args: &[&str], stdin: &[u8]) -> (Option<i32>, String, String) {
    use std::io::Write;
    let mut child = Command::new(BIN)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_from_the_command_line_and_the_http_front() {
    let (_child, peer, http) = serve(&[
        "--listen",
        "127.0.0.1:0",
        "--http",
        "127.0.0.1:0",
        "--group",
        "score:4096:0:sample",
    ])
    .await;
    let c = reqwest::Client::new();
    let get = |key: &'static str| {
        let (c, url) = (c.clone(), format!("{http}/api?group=score&key={key}"));
        async move { c.get(&url).send().await.unwrap().text().await.unwrap() }
    };
    assert_eq!(get("Tom").await, "630");
    // The command line: set, set from stdin, remove.
    let (code, _, err) = run_with_input(&["set", "--node", &peer, "score", "Tom", "999"], b"");
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(get("Tom").await, "999");
    let args = ["set", "--node", &peer, "score", "Tom", "-", "--ttl", "60"];
    let (code, _, err) = run_with_input(&args, b"from stdin");
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(get("Tom").await, "from stdin");
    let (code, _, err) = run_with_input(&["remove", "--node", &peer, "score", "Tom"], b"");
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(get("Tom").await, "630", "loaded again from the origin");
    let (code, _, err) = run_with_input(&["purge", "--node", &peer, "nope"], b"");
    assert_eq!(code, Some(1));
    assert!(err.contains("no group"), "{err}");
    // The HTTP front: PUT, DELETE, POST /api/purge.
    let url = format!("{http}/api?group=score&key=Jack");
    let r = c.put(&url).body("1").send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.text().await.unwrap().trim(), r#"{"not_reached":[]}"#);
    assert_eq!(get("Jack").await, "1");
    let r = c.delete(&url).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(get("Jack").await, "589");
    let r = c.put(&url).body("2").send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let purge = format!("{http}/api/purge?group=score");
    assert_eq!(c.post(&purge).send().await.unwrap().status().as_u16(), 200);
    assert_eq!(get("Jack").await, "589");
    let r = c
        .put(format!("{http}/api?group=nope&key=k"))
        .body("x")
        .send()
        .await;
    assert_eq!(r.unwrap().status().as_u16(), 404);
    // Counted, labelled by node and group.
    let metrics = c.get(format!("{http}/metrics")).send().await.unwrap();
    let metrics = metrics.text().await.unwrap();
    for (name, n) in [("sets", 4), ("removes", 2), ("purges", 1)] {
        let line = format!("groupcache_{name}_total{{node=\"{peer}\",group=\"score\"}} {n}");
        assert!(metrics.contains(&line), "{line} not in\n{metrics}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_front_and_peers_not_reached() {
    // Nothing listens on a port just freed: a member that cannot be told.
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .to_string();
    let me = "me.invalid:1";
    let peers = format!("{me},{dead}");
    let (_child, peer, http) = serve(&[
        "--listen",
        "127.0.0.1:0",
        "--self-addr",
        me,
        "--peers",
        &peers,
        "--http",
        "127.0.0.1:0",
        "--http-read-only",
        "--group",
        "score:4096:0:sample",
    ])
    .await;
    let c = reqwest::Client::new();
    let url = format!("{http}/api?group=score&key=Tom");
    for r in [
        c.put(&url).body("x").send().await.unwrap(),
        c.delete(&url).send().await.unwrap(),
        c.post(format!("{http}/api/purge?group=score"))
            .send()
            .await
            .unwrap(),
    ] {
        assert_eq!(r.status().as_u16(), 405);
    }
    // A key this node owns: stored here, the other member named, exit 3.
    let ring = groupcache_driver::core::ring::Ring::with_peers(50, [me, dead.as_str()]);
    let key = (0..)
        .map(|i| format!("k{i}"))
        .find(|k| ring.owner(k) == Some(me))
        .unwrap();
    let (code, _, err) = run_with_input(&["set", "--node", &peer, "score", &key, "v"], b"");
    assert_eq!(code, Some(3), "{err}");
    assert!(err.contains(&format!("not reached: {dead}")), "{err}");
    let r = c
        .get(format!("{http}/api?group=score&key={key}"))
        .send()
        .await;
    assert_eq!(r.unwrap().text().await.unwrap(), "v");
}

/// A tiny HTTP origin: `/data/{key}` answers "web-{key}", 404 for "missing".
async fn origin() -> String {
    use axum::extract::Path;
    use axum::http::StatusCode;
    let app = axum::Router::new().route(
        "/data/{key}",
        axum::routing::get(|Path(key): Path<String>| async move {
            if key == "missing" {
                Err(StatusCode::NOT_FOUND)
            } else {
                Ok(format!("web-{key}"))
            }
        }),
    );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    format!("http://{addr}/data/{{key}}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_with_http_front_metrics_and_origins() {
    let tmp = std::env::temp_dir().join(format!("gc-cli-{}", std::process::id()));
    let files = tmp.join("files");
    std::fs::create_dir_all(&files).unwrap();
    std::fs::write(files.join("hello.txt"), "hello from disk").unwrap();
    std::fs::write(tmp.join("secret"), "do not serve").unwrap();
    let config = tmp.join("node.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:0\"\nhttp = \"127.0.0.1:0\"\n\n\
             [[group]]\nname = \"score\"\nmax_bytes = 2048\nttl_secs = 1024\norigin = \"sample\"\n\n\
             [[group]]\nname = \"files\"\nmax_bytes = 65536\norigin = \"dir:{}\"\n",
            files.display()
        ),
    )
    .unwrap();
    let web = format!("web:65536:0:{}", origin().await);
    let config = config.display().to_string();
    let (mut child, peer, http) = serve(&["--config", &config, "--group", &web]).await;
    let c = reqwest::Client::new();
    let fetch = |path: String| {
        let c = c.clone();
        let url = format!("{http}{path}");
        async move {
            let r = c.get(&url).send().await.unwrap();
            let status = r.status().as_u16();
            let ctype = r
                .headers()
                .get("content-type")
                .map(|v| v.to_str().unwrap().to_string())
                .unwrap_or_default();
            (status, ctype, r.text().await.unwrap())
        }
    };
    let (s, ctype, body) = fetch("/api?group=score&key=Tom".into()).await;
    assert_eq!(
        (s, ctype.as_str(), body.as_str()),
        (200, "application/octet-stream", "630")
    );
    let (s, _, body) = fetch("/api?group=score&key=kkk".into()).await;
    assert_eq!(s, 404);
    assert!(body.contains("kkk not exist"), "{body}");
    let (s, _, body) = fetch("/api?group=nope&key=x".into()).await;
    assert_eq!(s, 404);
    assert!(body.contains("no group"), "{body}");
    assert_eq!(fetch("/api?group=score".into()).await.0, 400);
    // Directory origin, and path traversal attempts.
    assert_eq!(
        fetch("/api?group=files&key=hello.txt".into()).await.2,
        "hello from disk"
    );
    for bad in [
        "../secret",
        "%2E%2E%2Fsecret",
        "%2Fetc%2Fpasswd",
        "a%2F..%2F..%2Fsecret",
    ] {
        let (s, _, body) = fetch(format!("/api?group=files&key={bad}")).await;
        assert_eq!(s, 404, "{bad}");
        assert!(body.contains("outside the directory"), "{bad}: {body}");
        assert!(!body.contains("do not serve"));
    }
    // HTTP origin: values, and its 404 as "not found".
    assert_eq!(fetch("/api?group=web&key=a%20b".into()).await.2, "web-a b");
    let (s, _, body) = fetch("/api?group=web&key=missing".into()).await;
    assert_eq!(s, 404, "{body}");
    // Metrics and health.
    let (s, _, metrics) = fetch("/metrics".into()).await;
    assert_eq!(s, 200);
    let gets = format!("groupcache_gets_total{{node=\"{peer}\",group=\"score\"}} 2");
    assert!(metrics.contains(&gets), "{gets} not in\n{metrics}");
    assert!(metrics.contains("groupcache_cache_items{"), "{metrics}");
    assert!(metrics.trim_end().ends_with("# EOF"));
    assert_eq!(
        fetch("/healthz".into()).await,
        (200, "text/plain; charset=utf-8".into(), "ok\n".into())
    );
    // The `get` command against the node's peer port.
    let out = Command::new(BIN)
        .args(["get", "--node", &peer, "score", "Jack"])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(out.stdout, b"589\n");
    let out = Command::new(BIN)
        .args(["get", "--node", &peer, "score", "kkk"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("kkk not exist"));
    // SIGTERM: a graceful stop with exit code 0.
    let pid = child.id().unwrap().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("stops on SIGTERM")
        .unwrap();
    assert!(status.success(), "{status:?}");
    std::fs::remove_dir_all(&tmp).unwrap();
}

/// An origin that misbehaves: `/big/{key}` sends 100,000 bytes with their
/// length, `/stream/{key}` 100,000 bytes in chunks of unknown total length,
/// `/fail/{key}` a 503. Returns its base URL.
async fn bad_origin() -> String {
    use axum::http::StatusCode;
    let chunks =
        || futures_util::stream::iter((0..10).map(|_| Ok::<_, std::io::Error>(vec![b's'; 10_000])));
    let app = axum::Router::new()
        .route(
            "/big/{key}",
            axum::routing::get(|| async { vec![b'b'; 100_000] }),
        )
        .route(
            "/stream/{key}",
            axum::routing::get(move || async move { axum::body::Body::from_stream(chunks()) }),
        )
        .route(
            "/fail/{key}",
            axum::routing::get(|| async { StatusCode::SERVICE_UNAVAILABLE }),
        );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    format!("http://{addr}")
}

/// Reads until the server closes the connection, within `limit`.
async fn closed_by_server(s: &mut tokio::net::TcpStream, limit: Duration) -> bool {
    use tokio::io::AsyncReadExt;
    let mut buf = [0u8; 1024];
    tokio::time::timeout(limit, async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_bounds_origins_and_http_clients() {
    use tokio::io::AsyncWriteExt;
    let origin = bad_origin().await;
    let groups: Vec<String> = ["big", "stream", "fail"]
        .iter()
        .map(|g| format!("{g}:1048576:0:{origin}/{g}/{{key}}"))
        .collect();
    let mut args = vec!["--listen", "127.0.0.1:0", "--http", "127.0.0.1:0"];
    args.extend(["--max-value", "1000", "--http-header-timeout-ms", "300"]);
    args.extend(["--http-max-connections", "4"]);
    // Every other limit flag is accepted (their effects are tested in the
    // conformance suite).
    args.extend(["--max-frame", "4194304", "--max-unwritten", "1048576"]);
    args.extend([
        "--max-connections",
        "100",
        "--max-connections-per-addr",
        "50",
    ]);
    args.extend([
        "--max-peer-connections",
        "100",
        "--idle-timeout-ms",
        "60000",
    ]);
    args.extend(["--load-timeout-ms", "5000", "--max-loads", "8"]);
    args.extend(["--request-timeout-ms", "3000"]);
    for g in &groups {
        args.extend(["--group", g]);
    }
    let (_child, _peer, http) = serve(&args).await;
    let c = reqwest::Client::new();
    let host = origin.trim_start_matches("http://");
    for (group, expect) in [
        (
            "big",
            "big/a: value of 100000 bytes exceeds the limit of 1000",
        ),
        ("stream", "stream/a: value exceeds the limit of 1000 bytes"),
        ("fail", "fail/a: origin answered 503"),
    ] {
        let r = c
            .get(format!("{http}/api?group={group}&key=a"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 502, "{group}");
        let body = r.text().await.unwrap();
        assert!(body.contains(expect), "{group}: {body}");
        assert!(
            !body.contains(host) && !body.contains("http"),
            "{group} leaks: {body}"
        );
    }
    // Slow headers: connections that never finish a request are closed at
    // the header timeout, as is a keep-alive connection left idle.
    let front = http.trim_start_matches("http://").to_string();
    let mut slow = Vec::new();
    for _ in 0..4 {
        let mut s = tokio::net::TcpStream::connect(&front).await.unwrap();
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        slow.push(s);
    }
    for s in &mut slow {
        assert!(
            closed_by_server(s, Duration::from_secs(20)).await,
            "slow header kept open"
        );
    }
    let mut idle = tokio::net::TcpStream::connect(&front).await.unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    assert!(
        closed_by_server(&mut idle, Duration::from_secs(20)).await,
        "idle keep-alive kept open"
    );
    let r = c.get(format!("{http}/healthz")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
}

/// One address cannot take every connection slot of the HTTP front
/// (Linux: 127.0.0.2 is a local address of its own).
#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_cannot_fill_the_http_front() {
    use tokio::io::AsyncWriteExt;
    let args = [
        "--listen",
        "127.0.0.1:0",
        "--http",
        "127.0.0.1:0",
        "--group",
        "score:2048:0:sample",
        "--http-max-connections",
        "3",
        "--http-max-connections-per-addr",
        "2",
        "--http-header-timeout-ms",
        "30000",
    ];
    let (_child, _peer, http) = serve(&args).await;
    let front: std::net::SocketAddr = http.trim_start_matches("http://").parse().unwrap();
    let mut hog = Vec::new();
    for _ in 0..4 {
        let s = tokio::net::TcpSocket::new_v4().unwrap();
        s.bind("127.0.0.2:0".parse().unwrap()).unwrap();
        let mut s = s.connect(front).await.unwrap();
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        hog.push(s);
    }
    // Accepted in order: two slots for the hog, its other two closed at once
    // (well before the 30 s header timeout), and a slot left for others.
    let mut closed = 0;
    for s in &mut hog {
        if closed_by_server(s, Duration::from_secs(2)).await {
            closed += 1;
        }
    }
    assert_eq!(closed, 2, "the hog's connections past its share");
    let r = reqwest::get(format!("{http}/healthz")).await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
}
