//! `groupcache serve` in front of object storage (moto's S3 server, started
//! by each test on a loopback port the OS picks), a URL and a directory:
//! byte ranges on `/api`, `POST /api/batch`, `get` of several keys, and
//! `serve --check` against a bucket.

use std::process::Command;

use groupcache_object_store::object_store::{path::Path, ObjectStoreExt, PutPayload};
use groupcache_object_store::testing::Moto;

mod common;
use common::{serve_env, BIN};

const TEN: &[u8] = b"0123456789";

/// 150 bytes: 38 pages of 4, so an answer streams in several pieces of
/// eight pages.
const LONG: [u8; 150] = {
    let mut a = [0u8; 150];
    let mut i = 0;
    while i < 150 {
        a[i] = b'a' + (i % 26) as u8;
        i += 1;
    }
    a
};

/// moto with bucket "bkt" (anyone may read it) holding `data/ten` (10 bytes), `data/empty`,
/// `data/small` ("abc"), `data/with space` and `data/bin` (not UTF-8).
async fn moto() -> Moto {
    let m = Moto::start(&["+bkt"]).unwrap_or_else(|e| panic!("{e}"));
    let store = m.store("bkt");
    for (k, v) in [
        ("ten", TEN),
        ("empty", b"".as_slice()),
        ("small", b"abc"),
        ("with space", b"spaced"),
        ("bin", b"\xff\x00\xfe"),
        ("long", &LONG),
    ] {
        let path = Path::parse(format!("data/{k}")).unwrap();
        store
            .put(&path, PutPayload::from(v.to_vec()))
            .await
            .unwrap();
    }
    m
}

/// The environment that points the S3 origin at `m`, as an operator sets it.
fn env(m: &Moto) -> Vec<(&'static str, String)> {
    vec![
        ("AWS_ENDPOINT_URL", m.endpoint()),
        ("AWS_ALLOW_HTTP", "true".into()),
        ("AWS_ACCESS_KEY_ID", "test".into()),
        ("AWS_SECRET_ACCESS_KEY", "test".into()),
        ("AWS_REGION", "us-east-1".into()),
    ]
}

/// `groupcache serve ARGS` with the S3 origin pointed at `m`.
async fn serve(m: &Moto, args: &[&str]) -> (tokio::process::Child, String, String) {
    let env = env(m);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    serve_env(args, &env).await
}

async fn get(
    c: &reqwest::Client,
    url: &str,
    range: Option<&str>,
) -> (u16, Option<String>, Vec<u8>) {
    let mut req = c.get(url);
    if let Some(r) = range {
        req = req.header("Range", r);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let cr = resp
        .headers()
        .get("content-range")
        .map(|v| v.to_str().unwrap().to_string());
    (status, cr, resp.bytes().await.unwrap().to_vec())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ranges_from_object_storage_a_url_and_a_directory() {
    let m = moto().await;
    let dir = std::env::temp_dir().join(format!("gc-objects-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("ten"), TEN).unwrap();
    std::fs::write(dir.join("empty"), b"").unwrap();
    std::fs::write(dir.join("long"), LONG).unwrap();
    let web = format!("web:1048576:0:{}/bkt/data/{{key}}", m.endpoint());
    let files = format!("files:1048576:0:dir:{}", dir.display());
    let args = [
        "--listen",
        "127.0.0.1:0",
        "--http",
        "127.0.0.1:0",
        "--group",
        "objs:1048576:0:s3://bkt/data",
        "--page-size",
        "objs=4",
        "--group",
        &web,
        "--page-size",
        "web=4",
        "--group",
        &files,
        "--page-size",
        "files=4",
        "--group",
        "score:4096:0:sample",
    ];
    let (_child, _peer, http) = serve(&m, &args).await;
    let c = reqwest::Client::new();
    for group in ["objs", "web", "files"] {
        let url = format!("{http}/api?group={group}&key=ten");
        let whole = get(&c, &url, None).await;
        let shown = String::from_utf8_lossy(&whole.2).to_string();
        assert_eq!(
            (whole.0, whole.1.as_deref(), &whole.2[..]),
            (200, None, TEN),
            "{group}: {shown}"
        );
        // At page edges, across them, open-ended, suffixes.
        for (range, want) in [
            ("bytes=0-3", 0..4),
            ("bytes=3-5", 3..6),
            ("bytes=4-7", 4..8),
            ("bytes=8-", 8..10),
            ("bytes=2-100", 2..10),
            ("bytes=-3", 7..10),
            ("bytes=-30", 0..10),
        ] {
            let (status, cr, body) = get(&c, &url, Some(range)).await;
            assert_eq!(status, 206, "{group} {range}");
            let cr_want = format!("bytes {}-{}/10", want.start, want.end - 1);
            assert_eq!(cr.as_deref(), Some(cr_want.as_str()), "{group} {range}");
            assert_eq!(body, &TEN[want], "{group} {range}");
        }
        for range in ["bytes=10-", "bytes=-0", "bytes=10-20"] {
            let (status, cr, _) = get(&c, &url, Some(range)).await;
            assert_eq!(status, 416, "{group} {range}");
            assert_eq!(cr.as_deref(), Some("bytes */10"), "{group} {range}");
        }
        // A header that is not one byte range is ignored.
        assert_eq!(get(&c, &url, Some("bytes=0-1,4-5")).await.0, 200);
        let missing = format!("{http}/api?group={group}&key=missing");
        assert_eq!(get(&c, &missing, Some("bytes=0-1")).await.0, 404, "{group}");
    }
    // A group that is not paged slices its values the same way.
    let url = format!("{http}/api?group=score&key=Tom");
    let (status, cr, body) = get(&c, &url, Some("bytes=-2")).await;
    assert_eq!(
        (status, cr.as_deref(), &body[..]),
        (206, Some("bytes 1-2/3"), &b"30"[..])
    );
    assert_eq!(get(&c, &url, Some("bytes=3-")).await.0, 416);
    assert_eq!(get(&c, &url, None).await.2, b"630");
    for group in ["objs", "files"] {
        let url = format!("{http}/api?group={group}&key=empty");
        let (status, _, body) = get(&c, &url, None).await;
        assert_eq!((status, body.len()), (200, 0), "{group}");
        assert_eq!(get(&c, &url, Some("bytes=0-")).await.0, 416, "{group}");
    }
    // Answers longer than one piece: streamed, every byte in place.
    for group in ["objs", "files"] {
        let url = format!("{http}/api?group={group}&key=long");
        assert_eq!(get(&c, &url, None).await.2, LONG, "{group}");
        let (status, cr, body) = get(&c, &url, Some("bytes=5-140")).await;
        assert_eq!(
            (status, cr.as_deref()),
            (206, Some("bytes 5-140/150")),
            "{group}"
        );
        assert_eq!(body, &LONG[5..141], "{group}");
        assert_eq!(
            get(&c, &url, Some("bytes=-70")).await.2,
            &LONG[80..],
            "{group}"
        );
    }
    let url = format!("{http}/api?group=objs&key=with%20space");
    assert_eq!(get(&c, &url, Some("bytes=1-2")).await.2, b"pa");
    let url = format!("{http}/api?group=objs&key=..%2Fsecret");
    assert_eq!(get(&c, &url, None).await.0, 404);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_over_http_and_the_command_line() {
    let m = moto().await;
    let args = [
        "--listen",
        "127.0.0.1:0",
        "--http",
        "127.0.0.1:0",
        "--group",
        "objs:1048576:0:s3://bkt/data",
        "--group",
        "score:4096:0:sample",
    ];
    let (_child, peer, http) = serve(&m, &args).await;
    let c = reqwest::Client::new();
    let batch = |group: &str, body: &'static str| {
        let url = format!("{http}/api/batch?group={group}");
        let c = c.clone();
        async move {
            let r = c.post(url).body(body).send().await.unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }
    };
    let (status, body) = batch("objs", r#"["small", "missing", "bin", "ten"]"#).await;
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v[0], serde_json::json!({"key": "small", "value": "abc"}));
    assert_eq!(v[1]["key"], "missing");
    assert_eq!(v[1]["status"], 404);
    assert_eq!(
        v[2],
        serde_json::json!({"key": "bin", "value_base64": "/wD+"})
    );
    assert_eq!(
        v[3],
        serde_json::json!({"key": "ten", "value": "0123456789"})
    );
    let (status, body) = batch("score", r#"["Tom", "Jack", "nobody"]"#).await;
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (v[0]["value"].as_str(), v[1]["value"].as_str()),
        (Some("630"), Some("589"))
    );
    assert_eq!(v[2]["status"], 404);
    assert_eq!(batch("score", r#"{"not": "a list"}"#).await.0, 400);
    assert_eq!(batch("nope", r#"["a"]"#).await.0, 404);
    let many = format!("[{}]", vec!["\"k\""; 1001].join(","));
    let r = c
        .post(format!("{http}/api/batch?group=score"))
        .body(many)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 413);
    // The command line: several keys, in order, one line each.
    let out = Command::new(BIN)
        .args(["get", "--node", &peer, "score", "Tom", "nobody", "Sam"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "Tom\t630\nSam\t567\n");
    assert!(String::from_utf8_lossy(&out.stderr).contains("nobody\tnot found"));
    let out = Command::new(BIN)
        .args(["get", "--node", &peer, "objs", "small", "ten"])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "small\tabc\nten\t0123456789\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_reports_a_bucket_it_cannot_reach() {
    let m = moto().await;
    let env = env(&m);
    let check = |origin: &str| {
        let group = format!("objs:1048576:0:{origin}");
        Command::new(BIN)
            .args(["serve", "--check", "--group", &group])
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .output()
            .unwrap()
    };
    let out = check("s3://bkt/data");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("pages of 1048576 bytes"), "{stdout}");
    assert!(stdout.contains("s3://bkt/data: reachable"), "{stdout}");
    let out = check("s3://no-such-bucket/data");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("no-such-bucket"), "{stderr}");
}
