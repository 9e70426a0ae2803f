//! A DNS server for tests, in the test process: UDP on 127.0.0.1 with a
//! port chosen by the OS, answering from records the test changes while it
//! runs. Never the machine's resolver.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, SRV};
use hickory_proto::rr::{Name, RData, Record, RecordType};

/// What the server does with every query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Answer from the records.
    Answer,
    /// Answer SERVFAIL.
    Fail,
    /// Answer NOERROR with no records, whatever was asked.
    Empty,
    /// Never answer.
    Silent,
}

#[derive(Default)]
struct Zone {
    a: BTreeMap<String, Vec<IpAddr>>,
    srv: BTreeMap<String, Vec<(String, u16)>>,
}

struct Inner {
    zone: Mutex<Zone>,
    mode: Mutex<Mode>,
    answered: AtomicUsize,
    stop: AtomicBool,
}

/// The server; it stops when dropped.
pub struct TestDns {
    addr: SocketAddr,
    inner: Arc<Inner>,
}

impl TestDns {
    /// Starts the server on its own thread, on 127.0.0.1.
    pub fn start() -> Self {
        Self::start_on(IpAddr::from([127, 0, 0, 1]))
    }

    /// Starts the server on its own thread, on a port of `ip` the OS
    /// chooses (an address of a test network the caller made).
    pub fn start_on(ip: IpAddr) -> Self {
        let sock = UdpSocket::bind((ip, 0)).expect("bind a UDP port");
        sock.set_read_timeout(Some(Duration::from_millis(50)))
            .expect("read timeout");
        let addr = sock.local_addr().expect("bound");
        let inner = Arc::new(Inner {
            zone: Mutex::default(),
            mode: Mutex::new(Mode::Answer),
            answered: AtomicUsize::new(0),
            stop: AtomicBool::new(false),
        });
        let i = inner.clone();
        std::thread::spawn(move || serve(sock, i));
        Self { addr, inner }
    }

    /// Where the server listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Sets the A/AAAA records of `name` (no trailing dot).
    pub fn set_ips(&self, name: &str, ips: &[IpAddr]) {
        self.inner
            .zone
            .lock()
            .unwrap()
            .a
            .insert(fqdn(name), ips.to_vec());
    }

    /// Sets the SRV records of `name`: (target, port) each.
    pub fn set_srv(&self, name: &str, targets: &[(&str, u16)]) {
        let t = targets.iter().map(|(n, p)| (fqdn(n), *p)).collect();
        self.inner.zone.lock().unwrap().srv.insert(fqdn(name), t);
    }

    /// Changes what every later query gets.
    pub fn set_mode(&self, m: Mode) {
        *self.inner.mode.lock().unwrap() = m;
    }

    /// Queries answered (or, in `Silent` mode, received) so far.
    pub fn answered(&self) -> usize {
        self.inner.answered.load(Ordering::SeqCst)
    }
}

impl Drop for TestDns {
    fn drop(&mut self) {
        self.inner.stop.store(true, Ordering::SeqCst);
    }
}

fn fqdn(name: &str) -> String {
    format!("{}.", name.trim_end_matches('.')).to_ascii_lowercase()
}

fn serve(sock: UdpSocket, inner: Arc<Inner>) {
    let mut buf = [0u8; 1500];
    while !inner.stop.load(Ordering::SeqCst) {
        let Ok((n, from)) = sock.recv_from(&mut buf) else {
            continue;
        };
        let Ok(query) = Message::from_vec(&buf[..n]) else {
            continue;
        };
        let mode = *inner.mode.lock().unwrap();
        if mode != Mode::Silent {
            let resp = answer(&query, mode, &inner.zone.lock().unwrap());
            if let Ok(bytes) = resp.to_vec() {
                let _ = sock.send_to(&bytes, from);
            }
        }
        inner.answered.fetch_add(1, Ordering::SeqCst);
    }
}

fn answer(query: &Message, mode: Mode, zone: &Zone) -> Message {
    let mut resp = Message::new();
    resp.set_id(query.id())
        .set_message_type(MessageType::Response)
        .set_op_code(query.op_code())
        .set_recursion_desired(query.recursion_desired())
        .set_recursion_available(true)
        .set_authoritative(true)
        .add_queries(query.queries().to_vec());
    if mode == Mode::Fail {
        resp.set_response_code(ResponseCode::ServFail);
        return resp;
    }
    if mode == Mode::Empty {
        return resp;
    }
    for q in query.queries() {
        let name = q.name().to_ascii().to_ascii_lowercase();
        let owner = q.name().clone();
        match q.query_type() {
            RecordType::A | RecordType::AAAA => {
                for ip in zone.a.get(&name).into_iter().flatten() {
                    let rdata = match (ip, q.query_type()) {
                        (IpAddr::V4(v4), RecordType::A) => RData::A(A(*v4)),
                        (IpAddr::V6(v6), RecordType::AAAA) => RData::AAAA(AAAA(*v6)),
                        _ => continue,
                    };
                    resp.add_answer(Record::from_rdata(owner.clone(), 1, rdata));
                }
            }
            RecordType::SRV => {
                for (target, port) in zone.srv.get(&name).into_iter().flatten() {
                    let Ok(target) = Name::from_ascii(target) else {
                        continue;
                    };
                    let srv = SRV::new(0, 0, *port, target);
                    resp.add_answer(Record::from_rdata(owner.clone(), 1, RData::SRV(srv)));
                }
            }
            _ => {}
        }
    }
    resp
}
