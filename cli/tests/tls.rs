//! `groupcache` over mutual TLS: a node served with `--tls-*`, the client
//! commands with the same flags, the HTTPS front, and the metrics that count
//! refused handshakes. Certificates are made in the test.

use std::process::Command;
use std::sync::Arc;

use common::{serve, BIN};
use groupcache_driver::conformance::pki::{Kind, TestPki};
use groupcache_driver::TlsFiles;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

mod common;

fn tls_flags(f: &TlsFiles) -> Vec<String> {
    let s = |p: &std::path::Path| p.display().to_string();
    vec![
        "--tls-cert".into(),
        s(&f.cert),
        "--tls-key".into(),
        s(&f.key),
        "--tls-ca".into(),
        s(&f.ca),
    ]
}

fn run(args: &[String]) -> (Option<i32>, String, String) {
    let out = Command::new(BIN).args(args).output().expect("binary runs");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// GET `path` from an HTTPS front at `base` (`https://host:port`),
/// trusting `ca`; returns the body.
async fn https_get(base: &str, ca: &std::path::Path, path: &str) -> String {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, ServerName};
    let addr = base.strip_prefix("https://").expect("an HTTPS front");
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = ServerName::try_from("127.0.0.1").unwrap();
    let mut tls = tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(name, tcp)
        .await
        .expect("HTTPS handshake");
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    tls.write_all(req.as_bytes()).await.unwrap();
    let mut resp = Vec::new();
    let _ = tls.read_to_end(&mut resp).await;
    let resp = String::from_utf8_lossy(&resp).into_owned();
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    resp
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_clients_and_https_front_over_mutual_tls() {
    let pki = TestPki::new("cli CA");
    let node_files = pki.issue("node", Kind::Good);
    let client_files = pki.issue("client", Kind::Good);
    let mut args: Vec<String> = [
        "--listen",
        "127.0.0.1:0",
        "--http",
        "127.0.0.1:0",
        "--http-tls",
        "--group",
        "score:65536:0:sample",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(tls_flags(&node_files));
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let (_child, peer, http) = serve(&argv).await;
    assert!(http.starts_with("https://"), "{http}");

    // The client commands take the same flags.
    let with_tls = |cmd: &[&str]| {
        let mut a: Vec<String> = cmd.iter().map(|s| s.to_string()).collect();
        a.splice(1..1, tls_flags(&client_files));
        run(&a)
    };
    let (code, out, err) = with_tls(&["get", "--node", &peer, "score", "Tom"]);
    assert_eq!((code, out.as_str()), (Some(0), "630\n"), "{err}");
    let (code, _, err) = with_tls(&["set", "--node", &peer, "score", "Tom", "631"]);
    assert_eq!(code, Some(0), "{err}");
    let (code, out, _) = with_tls(&["get", "--node", &peer, "score", "Tom"]);
    assert_eq!((code, out.as_str()), (Some(0), "631\n"));

    // Plaintext is refused; so is a certificate of another CA.
    let (code, _, err) = run(&[
        "get".into(),
        "--node".into(),
        peer.clone(),
        "score".into(),
        "Tom".into(),
    ]);
    assert_eq!(code, Some(1), "{err}");
    let other = TestPki::new("another CA");
    let stranger = TlsFiles {
        ca: pki.ca_file(),
        ..other.issue("stranger", Kind::Good)
    };
    let mut a = vec!["get".to_string()];
    a.extend(tls_flags(&stranger));
    a.extend(["--node", &peer, "score", "Tom"].map(String::from));
    let (code, _, err) = run(&a);
    assert_eq!(code, Some(1), "{err}");

    // The HTTPS front, with the node's certificate; its metrics count the
    // refused handshakes by reason.
    let health = https_get(&http, &pki.ca_file(), "/healthz").await;
    assert!(health.contains("ok"), "{health}");
    let metrics = https_get(&http, &pki.ca_file(), "/metrics").await;
    for want in [
        "reason=\"not_tls\"} 1",
        "reason=\"bad_certificate\"} 1",
        "groupcache_tls_handshakes_total",
        "groupcache_tls_reloads_total{node=",
    ] {
        assert!(metrics.contains(want), "{want}:\n{metrics}");
    }
}

#[test]
fn tls_flags_are_all_three_or_none() {
    let check = |extra: &[&str]| {
        let mut a = vec!["serve", "--check", "--group", "score:2048:0:sample"];
        a.extend_from_slice(extra);
        run(&a.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    };
    let (code, _, err) = check(&["--tls-cert", "c.pem"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("all three"), "{err}");
    let (code, _, err) = check(&[
        "--tls-cert",
        "missing.pem",
        "--tls-key",
        "missing-key.pem",
        "--tls-ca",
        "ca.pem",
    ]);
    assert_eq!(code, Some(1));
    assert!(err.contains("missing.pem"), "{err}");
}
