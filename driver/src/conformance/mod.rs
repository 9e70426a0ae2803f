//! The adapter conformance suite, written once: every runtime adapter runs
//! it with [`conformance_tests!`](crate::conformance_tests). Real TCP on
//! 127.0.0.1, ports chosen by the OS. The cases live in `cluster` (gets,
//! routing, wire, membership, shutdown), `loads` (where loads run), `limits` (hostile clients, slow
//! origins, stopped peers), `writes` (set, remove, purge) and `discovery`
//! (members from DNS, warm handoff).

mod cluster;
pub mod discovery;
pub mod dns;
mod limits;
mod loads;
pub mod pki;
mod tls;
mod writes;

pub use cluster::{
    allowlist_refuses_other_addresses, bad_input_closes_only_that_connection,
    client_decodes_vector_responses, concurrent_cold_gets_load_once_in_the_cluster,
    gets_through_any_node_return_the_owners_value, ipv6_peers_and_allowlist,
    listeners_per_runtime_share_the_port, panicking_loader_fails_its_waiters_only,
    peer_list_replaced_at_run_time, shutdown_lets_requests_in_flight_finish,
    slow_sender_is_cut_off, stopped_node_keys_still_served_within_the_timeout,
    wire_vectors_answered_byte_for_byte,
};
pub use discovery::{
    dns_a_records_name_each_node_by_its_address, dns_answer_adds_a_node_that_ran_outside_it,
    dns_answer_renames_a_node_found_by_its_port, dns_members_follow_the_records_and_survive_a_blip,
    dns_scale_out_hands_moved_keys_over,
};
pub use limits::{
    empty_frames_do_not_hold_a_connection, hung_origin_is_cancelled_at_the_load_timeout,
    one_address_cannot_lock_out_others, shutdown_answers_requests_still_open,
    slow_origin_is_asked_once, stopped_peer_is_backed_off,
    unread_answers_pause_only_that_connection, value_over_the_limit_is_refused,
};
pub use loads::{
    a_waiting_load_outlives_the_get_that_started_it, instant_loads_run_in_the_getting_task,
    queued_instant_loads_all_finish,
};
pub use tls::{
    tls_refuses_bad_clients_and_serves_good_ones,
    tls_reloads_rotated_files_without_dropping_connections,
};
pub use writes::{
    client_writes_through_a_node, writes_name_the_peers_they_could_not_reach,
    writes_through_any_node_reach_every_node,
};

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_lite::{AsyncReadExt, AsyncWriteExt};

pub(super) use groupcache_core::testing::request_frame;

use crate::transport::{self, Reader, Writer};
use crate::{sample, timeout, Builder, Client, Node, Runtime, Tls};

/// Generates one `#[test]` per conformance case. `$run` is a function
/// `fn(impl Future<Output = ()>)` that runs a future to completion on the
/// runtime, and `$rt` an expression, evaluated inside it, giving the
/// [`Runtime`]. `conformance_tests!(tls: $run, $rt)` runs every case over
/// mutual TLS instead, with certificates made for the case
/// ([`pki::TestPki`]).
#[macro_export]
macro_rules! conformance_tests {
    (tls: $run:path, $rt:expr) => {
        $crate::conformance_tests!(@list tls, $run, $rt);
    };
    ($run:path, $rt:expr) => {
        $crate::conformance_tests!(@list plain, $run, $rt);
    };
    (@list $mode:ident, $run:path, $rt:expr) => {
        $crate::conformance_tests!(@each $mode, $run, $rt;
            gets_through_any_node_return_the_owners_value,
            concurrent_cold_gets_load_once_in_the_cluster,
            stopped_node_keys_still_served_within_the_timeout,
            bad_input_closes_only_that_connection,
            slow_sender_is_cut_off,
            wire_vectors_answered_byte_for_byte,
            client_decodes_vector_responses,
            panicking_loader_fails_its_waiters_only,
            instant_loads_run_in_the_getting_task,
            a_waiting_load_outlives_the_get_that_started_it,
            queued_instant_loads_all_finish,
            peer_list_replaced_at_run_time,
            allowlist_refuses_other_addresses,
            ipv6_peers_and_allowlist,
            listeners_per_runtime_share_the_port,
            shutdown_lets_requests_in_flight_finish,
            unread_answers_pause_only_that_connection,
            one_address_cannot_lock_out_others,
            empty_frames_do_not_hold_a_connection,
            slow_origin_is_asked_once,
            hung_origin_is_cancelled_at_the_load_timeout,
            stopped_peer_is_backed_off,
            shutdown_answers_requests_still_open,
            value_over_the_limit_is_refused,
            writes_through_any_node_reach_every_node,
            client_writes_through_a_node,
            writes_name_the_peers_they_could_not_reach,
            dns_members_follow_the_records_and_survive_a_blip,
            dns_a_records_name_each_node_by_its_address,
            dns_answer_adds_a_node_that_ran_outside_it,
            dns_answer_renames_a_node_found_by_its_port,
            dns_scale_out_hands_moved_keys_over,
            tls_refuses_bad_clients_and_serves_good_ones,
            tls_reloads_rotated_files_without_dropping_connections
        );
    };
    (@each plain, $run:path, $rt:expr; $($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                // Boxed: debug-build futures are large for a test thread stack.
                $run(::std::boxed::Box::pin(async {
                    $crate::conformance::$name($crate::conformance::Suite::plain($rt)).await
                }));
            }
        )*
    };
    (@each tls, $run:path, $rt:expr; $($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                $run(::std::boxed::Box::pin(async {
                    let pki = $crate::conformance::pki::TestPki::new("suite CA");
                    let suite = $crate::conformance::Suite::with_tls($rt, pki.tls("member"));
                    $crate::conformance::$name(suite).await;
                    drop(pki);
                }));
            }
        )*
    };
}

/// What a conformance case runs on: a runtime, and the TLS settings every
/// node and client of the case uses (`None`: plaintext), so that the one
/// suite runs both ways.
#[derive(Clone, Debug)]
pub struct Suite<R: Runtime> {
    /// The runtime under test.
    pub rt: R,
    /// The settings of every node and client the case makes.
    pub tls: Option<Tls>,
}

impl<R: Runtime> Suite<R> {
    /// Plaintext cases on `rt`.
    pub fn plain(rt: R) -> Self {
        Self { rt, tls: None }
    }

    /// Cases on `rt` whose nodes and clients all speak TLS with `tls`.
    pub fn with_tls(rt: R, tls: Tls) -> Self {
        Self { rt, tls: Some(tls) }
    }

    /// A node builder on the runtime, with the suite's TLS.
    pub fn builder(&self) -> Builder<R> {
        let b = Builder::with_runtime(self.rt.clone());
        match &self.tls {
            Some(tls) => b.tls(tls.clone()),
            None => b,
        }
    }

    /// A client of `addr` on the runtime, with the suite's TLS.
    pub fn client(&self, addr: impl Into<String>) -> Client<R> {
        let c = Client::with_runtime(self.rt.clone(), addr);
        match &self.tls {
            Some(tls) => c.tls(tls.clone()),
            None => c,
        }
    }
}

/// Longest a single case may take before it is declared hung.
pub(super) const CASE_LIMIT: Duration = Duration::from_secs(30);

/// Every load in a test cluster: (node index, group, key).
#[derive(Clone, Default)]
pub(super) struct Loads(Arc<Mutex<Vec<(usize, String, String)>>>);

impl Loads {
    pub(super) fn record(&self, node: usize, group: &str, key: &str) {
        self.0
            .lock()
            .unwrap()
            .push((node, group.to_string(), key.to_string()));
    }
    pub(super) fn of(&self, group: &str, key: &str) -> Vec<usize> {
        let l = self.0.lock().unwrap();
        l.iter()
            .filter(|(_, g, k)| g == group && k == key)
            .map(|(i, _, _)| *i)
            .collect()
    }
}

/// `n` nodes with the sample groups, all knowing each other.
pub(super) async fn cluster<R: Runtime>(
    cx: &Suite<R>,
    n: usize,
    tweak: impl Fn(Builder<R>) -> Builder<R>,
) -> (Vec<Node<R>>, Loads) {
    let loads = Loads::default();
    let mut nodes = Vec::new();
    for i in 0..n {
        let mut b = cx
            .builder()
            .configure(|c| c.request_timeout = Duration::from_millis(500));
        for (name, table) in sample::GROUPS {
            let l = loads.clone();
            let group = name.to_string();
            let loader = sample::loader(table, move |key| l.record(i, &group, key));
            b = b.group(*name, sample::MAX_BYTES, Some(sample::TTL), loader);
        }
        nodes.push(tweak(b).start().await.expect("node starts"));
    }
    let addrs: Vec<String> = nodes.iter().map(|n| n.self_addr()).collect();
    for n in &nodes {
        n.set_peers(&addrs);
    }
    (nodes, loads)
}

pub(super) fn index_of<R: Runtime>(nodes: &[Node<R>], addr: &str) -> usize {
    nodes
        .iter()
        .position(|n| n.self_addr() == addr)
        .expect("owner is a member")
}

pub(super) async fn bounded<R: Runtime, T>(
    rt: &R,
    what: &str,
    fut: impl std::future::Future<Output = T>,
) -> T {
    timeout(rt, CASE_LIMIT, fut)
        .await
        .unwrap_or_else(|| panic!("{what} hung for {CASE_LIMIT:?}"))
}

/// Three nodes whose origin takes `delay`; `gets` concurrent gets of one
/// cold key spread over them, each checked. Returns the origin's calls.
pub(super) async fn cold_gets_over_three_nodes<R: Runtime>(
    cx: &Suite<R>,
    request_timeout: Duration,
    delay: Duration,
    gets: usize,
) -> usize {
    let rt = &cx.rt;
    let calls = Arc::new(AtomicUsize::new(0));
    let mut nodes = Vec::new();
    for _ in 0..3 {
        let (c, gate) = (calls.clone(), rt.clone());
        let node = cx
            .builder()
            .configure(|c| c.request_timeout = request_timeout)
            .group("slow", 1 << 20, None, move |key: String| {
                c.fetch_add(1, Ordering::SeqCst);
                let gate = gate.clone();
                async move {
                    gate.sleep(delay).await;
                    Ok(format!("v-{key}"))
                }
            })
            .start()
            .await
            .unwrap();
        nodes.push(node);
    }
    let addrs: Vec<String> = nodes.iter().map(|n| n.self_addr()).collect();
    for n in &nodes {
        n.set_peers(&addrs);
    }
    let (tx, rx) = async_channel::unbounded();
    for i in 0..gets {
        let (node, tx) = (nodes[i % 3].clone(), tx.clone());
        rt.spawn(async move {
            let _ = tx.send(node.get("slow", "cold").await).await;
        });
    }
    drop(tx);
    let mut answers = 0;
    while let Ok(r) = bounded(rt, "cold get", rx.recv()).await {
        assert_eq!(r, Ok(Bytes::from_static(b"v-cold")));
        answers += 1;
    }
    assert_eq!(answers, gets);
    for n in &nodes {
        n.shutdown().await;
    }
    calls.load(Ordering::SeqCst)
}

pub(super) async fn raw<R: Runtime>(cx: &Suite<R>, node: &Node<R>) -> (Reader<R>, Writer<R>) {
    let rt = &cx.rt;
    transport::connect(
        rt,
        cx.tls.as_ref(),
        &node.local_addr().to_string(),
        CASE_LIMIT,
    )
    .await
    .expect("connect")
}

/// Whether `node` closes a connection from here without answering a get:
/// over TLS the handshake already fails.
pub(super) async fn refused<R: Runtime>(cx: &Suite<R>, node: &Node<R>) -> bool {
    let rt = &cx.rt;
    let addr = node.local_addr().to_string();
    let Ok((mut r, mut w)) = transport::connect(rt, cx.tls.as_ref(), &addr, CASE_LIMIT).await
    else {
        return true;
    };
    let _ = w.write_all(&request_frame("score", "Tom")).await;
    read_to_close(rt, &mut r).await.is_empty()
}

/// Reads until the server closes the connection; returns what it sent.
pub(super) async fn read_to_close<R: Runtime>(rt: &R, r: &mut Reader<R>) -> Vec<u8> {
    let mut all = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match bounded(rt, "server close", r.read(&mut buf)).await {
            Ok(0) | Err(_) => return all,
            Ok(n) => all.extend_from_slice(&buf[..n]),
        }
    }
}

/// Starts a [`Client`] get of `group`/`key` from `node` in the background;
/// its result arrives on the returned channel.
pub(super) fn get_in_background<R: Runtime>(
    cx: &Suite<R>,
    node: &Node<R>,
    group: &'static str,
    key: &'static str,
) -> async_channel::Receiver<Result<Bytes, crate::Error>> {
    let rt = &cx.rt;
    let client = cx.client(node.local_addr().to_string());
    let (tx, rx) = async_channel::bounded(1);
    rt.spawn(async move {
        let _ = tx.send(client.get(group, key).await).await;
    });
    rx
}

/// Reads exactly one response frame's bytes (header included).
pub(super) async fn read_frame<R: Runtime>(rt: &R, r: &mut Reader<R>) -> Vec<u8> {
    let mut header = [0u8; 8];
    bounded(rt, "response header", r.read_exact(&mut header))
        .await
        .expect("header");
    let len = i64::from_le_bytes(header) as usize;
    let mut body = vec![0u8; len];
    bounded(rt, "response body", r.read_exact(&mut body))
        .await
        .expect("body");
    [header.to_vec(), body].concat()
}

/// A connection from `local` (an address of this machine, such as
/// 127.0.0.2) to `node`. Over TLS it fails when the node refused the
/// connection before the handshake.
pub(super) async fn connect_from<R: Runtime>(
    cx: &Suite<R>,
    local: &str,
    node: &Node<R>,
) -> std::io::Result<(Reader<R>, Writer<R>)> {
    let rt = &cx.rt;
    use socket2::{Domain, Socket, Type};
    let to = node.local_addr();
    let s = Socket::new(Domain::for_address(to), Type::STREAM, None).expect("socket");
    let from: std::net::SocketAddr = format!("{local}:0").parse().expect("local address");
    s.bind(&from.into()).expect("bind the local address");
    // Loopback connects complete in the kernel, without the server.
    s.connect(&to.into()).expect("connect");
    let stream = rt.adopt_std(s.into()).expect("adopt the stream");
    bounded(
        rt,
        "handshake",
        transport::outbound(rt, cx.tls.as_ref(), stream, &to.to_string(), CASE_LIMIT),
    )
    .await
}

/// Sends one get on a raw connection and reads its answer.
pub(super) async fn raw_get<R: Runtime>(
    rt: &R,
    (r, w): &mut (Reader<R>, Writer<R>),
    group: &str,
    key: &str,
) -> groupcache_core::wire::Response {
    w.write_all(&request_frame(group, key)).await.expect("send");
    let frame = read_frame(rt, r).await;
    groupcache_core::wire::Response::decode_payload(&frame[8..]).expect("response")
}
