//! `groupcache serve` with DNS peers, `serve --check`, and the deployment
//! files' commands, against a DNS server in the test process (never the
//! machine's resolver). Real processes on OS-chosen ports.

use std::process::Command;
use std::time::Duration;

use common::{serve, BIN};
use groupcache_driver::conformance::dns::{Mode, TestDns};

mod common;
const REPO: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

fn check(args: &[String]) -> (bool, String, String) {
    let out = Command::new(BIN)
        .arg("serve")
        .arg("--check")
        .args(args)
        .output()
        .expect("binary runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// The items of the YAML block list under the first `key:` line of `text`
/// (`- item` lines, more indented than the key): how the deployment files
/// write their commands.
fn yaml_list(text: &str, key: &str) -> Vec<String> {
    let mut lines = text.lines().skip_while(|l| l.trim() != format!("{key}:"));
    let head = lines.next().expect("the key is there");
    let indent = head.len() - head.trim_start().len();
    lines
        .take_while(|l| l.len() - l.trim_start().len() > indent && l.trim_start().starts_with("- "))
        .map(|l| l.trim_start()[2..].trim().to_string())
        .collect()
}

/// The command after `serve`, with the pod's environment filled in and
/// this test's name server added.
fn serve_args(cmd: &[String], dns: &TestDns) -> Vec<String> {
    assert_eq!(cmd.first().map(String::as_str), Some("serve"), "{cmd:?}");
    let mut args: Vec<String> = cmd[1..]
        .iter()
        .map(|a| {
            a.replace("$(POD_IP)", "127.0.0.1")
                .replace("$(POD_NAMESPACE)", "default")
        })
        .collect();
    args.extend(["--dns-server".to_string(), dns.addr().to_string()]);
    args
}

#[test]
fn deployment_files_are_accepted_by_serve_check() {
    let dns = TestDns::start();
    let ip = "127.0.0.1".parse().unwrap();
    dns.set_ips("groupcache", &[ip]);
    dns.set_ips("groupcache-peers.default.svc.cluster.local", &[ip]);
    let read = |p: &str| std::fs::read_to_string(format!("{REPO}/{p}")).unwrap();

    // Dockerfile: ENTRYPOINT groupcache, CMD its arguments (JSON form).
    let docker = read("Dockerfile");
    assert!(docker.contains("ENTRYPOINT [\"groupcache\"]"));
    assert!(docker.contains("USER 10001"), "runs as a non-root user");
    let cmd = docker
        .lines()
        .find_map(|l| l.strip_prefix("CMD "))
        .expect("a CMD line");
    let cmd: Vec<String> = serde_json::from_str(cmd).expect("CMD in JSON form");
    let (ok, out, err) = check(&serve_args(&cmd, &dns));
    assert!(ok, "Dockerfile CMD: {err}");
    assert!(out.contains("group      score"), "{out}");

    // Compose: three nodes that find each other by their shared alias.
    let compose = read("deploy/compose/compose.yaml");
    for n in ["node1:", "node2:", "node3:"] {
        assert!(compose.contains(n), "{n}");
    }
    let cmd = yaml_list(&compose, "command");
    let (ok, out, err) = check(&serve_args(&cmd, &dns));
    assert!(ok, "compose command: {err}");
    assert!(out.contains("members    1 now: 127.0.0.1:8000"), "{out}");

    // Kubernetes: the StatefulSet's container arguments.
    let k8s = read("deploy/kubernetes/groupcache.yaml");
    for want in [
        "clusterIP: None",
        "kind: StatefulSet",
        "readinessProbe:",
        "startupProbe:",
        "path: /healthz",
        "resources:",
    ] {
        assert!(k8s.contains(want), "{want}");
    }
    // Readiness never waits to be listed, so only ready pods are listed.
    assert!(!k8s.contains("publishNotReadyAddresses: true"));
    let cmd = yaml_list(&k8s, "args");
    let (ok, out, err) = check(&serve_args(&cmd, &dns));
    assert!(ok, "kubernetes args: {err}");
    assert!(out.contains("self       127.0.0.1:8000"), "{out}");
    assert!(out.contains("members    1 now: 127.0.0.1:8000"), "{out}");
}

#[test]
fn serve_check_says_what_is_wrong() {
    let dns = TestDns::start();
    let server = dns.addr().to_string();
    let group = "score:2048:0:sample";
    for (args, want) in [
        (
            vec!["--group", group, "--peers", "dns+nameonly"],
            "expected dns+NAME:PORT",
        ),
        (vec!["--group", group, "--peers", "srv+x"], "unknown scheme"),
        (vec!["--group", "x:1:0:sample"], "origin \"sample\""),
        (vec!["--peers", "127.0.0.1:1"], "no group configured"),
        (
            vec![
                "--group",
                group,
                "--peers",
                "dns+missing.test:8000",
                "--dns-server",
                &server,
            ],
            "missing.test:8000 has no address",
        ),
        (
            vec![
                "--group",
                group,
                "--peers",
                "dns+a.test:8000",
                "--dns-interval",
                "soon",
            ],
            "dns_interval",
        ),
    ] {
        let (ok, _, err) = check(&strings(&args));
        assert!(!ok, "{args:?} passed");
        assert!(err.contains(want), "{args:?}: {err}");
    }
    dns.set_mode(Mode::Fail);
    let args = [
        "--group",
        group,
        "--peers",
        "dnssrv+_p._tcp.a.test",
        "--dns-server",
        &server,
    ];
    let (ok, _, err) = check(&strings(&args));
    assert!(!ok);
    assert!(
        err.contains("DNS: resolving dnssrv+_p._tcp.a.test"),
        "{err}"
    );
}

/// `serve` arguments of a node with the sample group and an HTTP front,
/// whose members are the SRV records `srv` of `dns`, resolved every 50 ms.
fn srv_node_args(dns: &TestDns, srv: &str) -> Vec<String> {
    strings(&[
        "--listen",
        "127.0.0.1:0",
        "--http",
        "127.0.0.1:0",
        "--group",
        "score:65536:0:sample",
        "--peers",
        &format!("dnssrv+{srv}"),
        "--dns-server",
        &dns.addr().to_string(),
        "--dns-interval",
        "50ms",
    ])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_found_by_dns_show_their_members_in_metrics() {
    let dns = TestDns::start();
    let srv = "_peer._tcp.gc.test";
    let args = srv_node_args(&dns, srv);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (_a, peer_a, http_a) = serve(&args).await;
    let (_b, peer_b, http_b) = serve(&args).await;
    let port = |p: &str| p.rsplit_once(':').unwrap().1.parse::<u16>().unwrap();
    dns.set_ips("n.gc.test", &["127.0.0.1".parse().unwrap()]);
    dns.set_srv(
        srv,
        &[("n.gc.test", port(&peer_a)), ("n.gc.test", port(&peer_b))],
    );
    let c = reqwest::Client::new();
    for http in [&http_a, &http_b] {
        let metrics = tokio::time::timeout(Duration::from_secs(30), async {
            loop {
                let m = c.get(format!("{http}/metrics")).send().await.unwrap();
                let m = m.text().await.unwrap();
                if m.lines()
                    .any(|l| l.starts_with("groupcache_peers{") && l.ends_with(" 2"))
                {
                    return m;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .expect("both nodes see two members");
        for p in [&peer_a, &peer_b] {
            let line = format!("peer=\"{p}\"");
            assert!(
                m_has(&metrics, "groupcache_peer_info{", &line),
                "{p} missing:\n{metrics}"
            );
        }
        assert!(
            metrics.contains("groupcache_discovery_changes_total"),
            "{metrics}"
        );
    }
    // Both answer every key, whoever owns it.
    for key in ["Tom", "Jack", "Sam"] {
        let body = text(&c, format!("{http_a}/api?group=score&key={key}")).await;
        assert!(!body.is_empty());
    }
}

/// The body of a GET of `url`.
async fn text(c: &reqwest::Client, url: String) -> String {
    c.get(url).send().await.unwrap().text().await.unwrap()
}

fn m_has(metrics: &str, prefix: &str, part: &str) -> bool {
    metrics
        .lines()
        .any(|l| l.starts_with(prefix) && l.contains(part))
}

/// Readiness as the Kubernetes manifest uses it: a node that the DNS answer
/// does not list yet (a pod is ready before the headless Service names it)
/// answers `/healthz` once it serves, and serves every key by forwarding to
/// the members, loading nothing itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_outside_the_answer_is_ready_and_serves_by_forwarding() {
    let dns = TestDns::start();
    let srv = "_peer._tcp.gc.test";
    let args = srv_node_args(&dns, srv);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (_member, peer, _) = serve(&args).await;
    let port = peer.rsplit_once(':').unwrap().1.parse::<u16>().unwrap();
    dns.set_ips("n.gc.test", &["127.0.0.1".parse().unwrap()]);
    dns.set_srv(srv, &[("n.gc.test", port)]);
    // Its first round finds the member alone: it is outside the answer.
    let (_outside, own, http) = serve(&args).await;
    let c = reqwest::Client::new();
    let health = c.get(format!("{http}/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    assert_eq!(health.text().await.unwrap(), "ok\n");
    for (key, want) in [("Tom", "630"), ("Jack", "589"), ("Sam", "567")] {
        let r = c
            .get(format!("{http}/api?group=score&key={key}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{key}");
        assert_eq!(r.text().await.unwrap(), want, "{key}");
    }
    let metrics = text(&c, format!("{http}/metrics")).await;
    let series = |name: &str| {
        metrics
            .lines()
            .find(|l| l.starts_with(&format!("{name}{{")))
            .and_then(|l| l.rsplit_once(' '))
            .map(|(_, v)| v.to_string())
            .unwrap_or_else(|| panic!("{name} missing:\n{metrics}"))
    };
    assert_eq!(series("groupcache_peers"), "1", "only the member");
    assert!(
        m_has(
            &metrics,
            "groupcache_peer_info{",
            &format!("peer=\"{peer}\"")
        ),
        "{metrics}"
    );
    assert!(!m_has(
        &metrics,
        "groupcache_peer_info{",
        &format!("peer=\"{own}\"")
    ));
    assert_eq!(series("groupcache_local_loads_total"), "0", "{metrics}");
    assert_eq!(series("groupcache_peer_loads_total"), "3", "{metrics}");
}
