//! `groupcache-load`: drives a node (or a memcached server, for comparison)
//! over TCP and reports requests/s, errors and latency percentiles, and with
//! `--server-pid` the server's CPU time per request.
//!
//! ```sh
//! groupcache serve --listen 127.0.0.1:8001 --group bench:1073741824:0:synthetic:100 &
//! groupcache-load --addr 127.0.0.1:8001 --group bench --connections 4 --keys 10000 --duration 10
//! memcached -p 11211 -t 2 &
//! groupcache-load --addr 127.0.0.1:11211 --protocol memcached --connections 4 --keys 10000 --value-size 100
//! ```

use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};
use clap::Parser;
use groupcache_benches::{keys, pattern, Dist};
use groupcache_core::frame::FrameDecoder;
use groupcache_core::wire::{frame_bytes, Request, Response, CODE_OK};
use groupcache_driver::{Tls, TlsFiles};
use hdrhistogram::Histogram;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_rustls::TlsConnector;
use tokio_util::either::Either;

/// Load generator for groupcache nodes and memcached.
#[derive(Parser, Debug, Clone)]
#[command(
    name = "groupcache-load",
    version,
    about = "Load generator for groupcache nodes and memcached: requests/s, latency percentiles and server CPU per request"
)]
struct Args {
    /// Server address.
    #[arg(long, default_value = "127.0.0.1:8001")]
    addr: String,
    /// `groupcache` (the peer protocol) or `memcached` (text `get`).
    #[arg(long, default_value = "groupcache")]
    protocol: Protocol,
    /// Group to ask (groupcache).
    #[arg(long, default_value = "bench")]
    group: String,
    /// Concurrent connections.
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// Requests in flight per connection (1: no pipelining).
    #[arg(long, default_value_t = 1)]
    pipeline: usize,
    /// Distinct keys (1: one hot key).
    #[arg(long, default_value_t = 10_000)]
    keys: usize,
    /// Key distribution: uniform or zipf.
    #[arg(long, default_value = "uniform")]
    dist: Dist,
    /// Value size stored in memcached before the run (a groupcache node's
    /// values come from its origin, e.g. `synthetic:SIZE`).
    #[arg(long, default_value_t = 100)]
    value_size: usize,
    /// Seconds to measure, after every key has been fetched once.
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Client threads.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Speak mutual TLS: this certificate (with --tls-key and --tls-ca).
    #[arg(long)]
    tls_cert: Option<PathBuf>,
    /// Private key of --tls-cert.
    #[arg(long)]
    tls_key: Option<PathBuf>,
    /// CA that signed the node's certificate.
    #[arg(long)]
    tls_ca: Option<PathBuf>,
    /// The server's process id: report the CPU time it spent during the
    /// measured run (user + system, from /proc) and requests per CPU second.
    #[arg(long)]
    server_pid: Option<u32>,
}

/// A connection: plaintext or TLS.
type Conn = Either<TcpStream, TlsStream<TcpStream>>;

/// TLS handshakes made, all runs of this process.
static HANDSHAKES: AtomicUsize = AtomicUsize::new(0);

/// Opens a connection to the server, with a TLS handshake if asked.
async fn open(args: &Args) -> io::Result<Conn> {
    let s = TcpStream::connect(&args.addr).await?;
    s.set_nodelay(true)?;
    let (Some(cert), Some(key), Some(ca)) = (&args.tls_cert, &args.tls_key, &args.tls_ca) else {
        return Ok(Either::Left(s));
    };
    // The node's own TLS settings: the same certificates, verification
    // and protocol version.
    let tls = Tls::from_files(TlsFiles {
        cert: cert.clone(),
        key: key.clone(),
        ca: ca.clone(),
    })
    .map_err(io::Error::other)?;
    let host = args
        .addr
        .rsplit_once(':')
        .map_or(args.addr.as_str(), |(h, _)| h);
    let name = ServerName::try_from(host.to_string()).map_err(io::Error::other)?;
    let s = TlsConnector::from(tls.client_config())
        .connect(name, s)
        .await?;
    HANDSHAKES.fetch_add(1, Ordering::Relaxed);
    Ok(Either::Right(s))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Protocol {
    Groupcache,
    Memcached,
}

/// Requests encoded once, and how to read their answers.
#[derive(Clone)]
struct Codec {
    protocol: Protocol,
    requests: Vec<Bytes>,
}

impl Codec {
    fn new(args: &Args, keys: &[String]) -> Self {
        let requests = keys
            .iter()
            .map(|k| match args.protocol {
                Protocol::Groupcache => frame_bytes(&Request {
                    group: args.group.clone(),
                    key: k.clone(),
                    ..Default::default()
                }),
                Protocol::Memcached => Bytes::from(format!("get {k}\r\n")),
            })
            .collect();
        Self {
            protocol: args.protocol,
            requests,
        }
    }

    /// Takes one whole answer off `buf`: `Some(ok)` once it is complete.
    fn answer(&self, dec: &mut FrameDecoder, buf: &mut BytesMut) -> io::Result<Option<bool>> {
        match self.protocol {
            Protocol::Groupcache => {
                let frame = dec
                    .decode(buf)
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
                Ok(frame.map(|f| Response::decode_payload(&f).is_ok_and(|r| r.code == CODE_OK)))
            }
            Protocol::Memcached => memcached_answer(buf),
        }
    }
}

/// Parses `VALUE <key> <flags> <bytes>\r\n<data>\r\nEND\r\n` (a hit) or
/// `END\r\n` (a miss) off the front of `buf`.
fn memcached_answer(buf: &mut BytesMut) -> io::Result<Option<bool>> {
    let Some(eol) = buf.windows(2).position(|w| w == b"\r\n") else {
        return Ok(None);
    };
    let line = &buf[..eol];
    if line == b"END" {
        buf.advance(eol + 2);
        return Ok(Some(false));
    }
    let bad = || io::Error::new(io::ErrorKind::InvalidData, "unexpected memcached answer");
    let text = std::str::from_utf8(line).map_err(|_| bad())?;
    if !text.starts_with("VALUE ") {
        return Err(bad());
    }
    let len: usize = text
        .rsplit(' ')
        .next()
        .and_then(|n| n.parse().ok())
        .ok_or_else(bad)?;
    let total = eol + 2 + len + 2 + 5;
    if buf.len() < total {
        return Ok(None);
    }
    if &buf[total - 5..total] != b"END\r\n" {
        return Err(bad());
    }
    buf.advance(total);
    Ok(Some(true))
}

#[derive(Default)]
struct Tally {
    ok: u64,
    errors: u64,
    hist: Option<Histogram<u64>>,
}

/// When a connection stops: at a time, or after a number of requests.
#[derive(Clone, Copy)]
enum Stop {
    At(Instant),
    After(usize),
}

async fn connection(args: Args, codec: Codec, order: Vec<usize>, stop: Stop) -> io::Result<Tally> {
    let mut s = open(&args).await?;
    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("histogram");
    let mut tally = Tally::default();
    let mut dec = FrameDecoder::new(64 << 20);
    let mut buf = BytesMut::with_capacity(64 * 1024);
    let mut out = Vec::with_capacity(args.pipeline * 64);
    let mut next = 0;
    let mut done = 0;
    loop {
        let batch = match stop {
            Stop::At(t) if Instant::now() >= t => break,
            Stop::At(_) => args.pipeline,
            Stop::After(n) if done >= n => break,
            Stop::After(n) => args.pipeline.min(n - done),
        };
        out.clear();
        for _ in 0..batch {
            out.extend_from_slice(&codec.requests[order[next]]);
            next = (next + 1) % order.len();
        }
        done += batch;
        let sent = Instant::now();
        s.write_all(&out).await?;
        s.flush().await?;
        let mut answered = 0;
        while answered < batch {
            match codec.answer(&mut dec, &mut buf)? {
                Some(ok) => {
                    answered += 1;
                    if ok {
                        tally.ok += 1;
                    } else {
                        tally.errors += 1;
                    }
                    let micros = sent.elapsed().as_micros().max(1) as u64;
                    let _ = hist.record(micros);
                }
                None => {
                    if s.read_buf(&mut buf).await? == 0 {
                        return Err(io::ErrorKind::UnexpectedEof.into());
                    }
                }
            }
        }
    }
    tally.hist = Some(hist);
    Ok(tally)
}

/// Stores every key in memcached, `value_size` bytes each.
async fn fill_memcached(args: &Args, keys: &[String]) -> io::Result<()> {
    let mut s = TcpStream::connect(&args.addr).await?;
    let value = vec![b'v'; args.value_size];
    let mut reply = vec![0u8; 8];
    for k in keys {
        let mut cmd = format!("set {k} 0 0 {}\r\n", value.len()).into_bytes();
        cmd.extend_from_slice(&value);
        cmd.extend_from_slice(b"\r\n");
        s.write_all(&cmd).await?;
        s.read_exact(&mut reply).await?;
        if &reply != b"STORED\r\n" {
            return Err(io::Error::other(format!("memcached set {k}: {reply:?}")));
        }
    }
    Ok(())
}

async fn run(args: Args) -> io::Result<()> {
    let keys = keys(args.keys);
    let codec = Codec::new(&args, &keys);
    match args.protocol {
        Protocol::Memcached => fill_memcached(&args, &keys).await?,
        Protocol::Groupcache => {
            // Warm-up: every key once, so the run measures cache hits.
            let warm = Args {
                pipeline: 64.min(args.keys),
                ..args.clone()
            };
            let order: Vec<usize> = (0..args.keys).collect();
            let t = connection(warm, codec.clone(), order, Stop::After(args.keys)).await?;
            if t.errors > 0 {
                return Err(io::Error::other(format!(
                    "warm-up: {} of {} keys failed: is the group right?",
                    t.errors, args.keys
                )));
            }
        }
    }
    let until = Instant::now() + Duration::from_secs(args.duration);
    let cpu_before = args.server_pid.map(cpu_seconds).transpose()?;
    let start = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..args.connections {
        let order = pattern(args.keys, 1 << 16, args.dist, c as u64 + 1);
        let stop = Stop::At(until);
        tasks.push(tokio::spawn(connection(
            args.clone(),
            codec.clone(),
            order,
            stop,
        )));
    }
    let mut total = Tally::default();
    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("histogram");
    for t in tasks {
        let t = t.await.map_err(io::Error::other)??;
        total.ok += t.ok;
        total.errors += t.errors;
        if let Some(h) = &t.hist {
            hist.add(h).expect("same bounds");
        }
    }
    let secs = start.elapsed().as_secs_f64();
    let cpu = match (args.server_pid, cpu_before) {
        (Some(pid), Some(before)) => Some(cpu_seconds(pid)? - before),
        _ => None,
    };
    let reqs = total.ok + total.errors;
    println!(
        "protocol={:?} addr={} connections={} pipeline={} keys={} dist={:?}",
        args.protocol, args.addr, args.connections, args.pipeline, args.keys, args.dist
    );
    println!(
        "requests={reqs} errors={} seconds={secs:.2} requests_per_sec={:.0}",
        total.errors,
        reqs as f64 / secs
    );
    if let Some(cpu) = cpu {
        // Clock ticks are coarse (10 ms): a run of a few seconds is needed
        // for a figure worth comparing.
        println!(
            "server_cpu_seconds={cpu:.2} server_cpu_us_per_request={:.2} requests_per_cpu_second={:.0}",
            cpu * 1e6 / reqs.max(1) as f64,
            reqs as f64 / cpu.max(f64::MIN_POSITIVE)
        );
    }
    if args.tls_cert.is_some() {
        // Every connection shakes hands once when it opens (the warm-up's
        // included); none does while requests flow.
        println!(
            "tls_handshakes={} (one per connection, at its start)",
            HANDSHAKES.load(Ordering::Relaxed)
        );
    }
    println!(
        "latency_us p50={} p99={} p99.9={} max={}",
        hist.value_at_quantile(0.5),
        hist.value_at_quantile(0.99),
        hist.value_at_quantile(0.999),
        hist.max()
    );
    Ok(())
}

/// Clock ticks per second in /proc: the kernel's USER_HZ, 100 on every
/// architecture this runs on (it is part of the /proc ABI, not the
/// scheduler's tick rate).
const USER_HZ: f64 = 100.0;

/// CPU seconds (user + system, all threads) process `pid` has used.
fn cpu_seconds(pid: u32) -> io::Result<f64> {
    let path = format!("/proc/{pid}/stat");
    let stat = std::fs::read_to_string(&path)
        .map_err(|e| io::Error::new(e.kind(), format!("--server-pid {pid}: {path}: {e}")))?;
    let ticks = parse_cpu_ticks(&stat).ok_or_else(|| {
        io::Error::other(format!("--server-pid {pid}: {path}: unexpected format"))
    })?;
    Ok(ticks as f64 / USER_HZ)
}

/// utime + stime, in clock ticks, from a /proc/PID/stat line. The command
/// name (field 2) is in parentheses and may hold spaces and parentheses, so
/// fields are counted from the last `)`.
fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    // Fields 3 (state) to 13 come first; utime is 14, stime 15.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads.max(1))
        .enable_all()
        .build()
        .expect("runtime");
    match rt.block_on(run(args)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("groupcache-load: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_ticks_are_read_past_a_command_name_with_spaces_and_parentheses() {
        let stat = "4242 (my (odd) server) S 1 4242 4242 0 -1 4194560 \
                    1000 0 0 0 250 75 0 0 20 0 3 0 12345 1000000 500";
        assert_eq!(parse_cpu_ticks(stat), Some(250 + 75));
        assert_eq!(parse_cpu_ticks("4242 (cut short) S 1 2"), None);
        assert_eq!(parse_cpu_ticks("no parenthesis"), None);
    }

    #[test]
    fn cpu_seconds_of_this_process_grow_with_work() {
        let pid = std::process::id();
        let before = cpu_seconds(pid).unwrap();
        // Burn CPU until the 10 ms clock tick has moved: bounded by work,
        // not by waiting.
        let mut x = 0u64;
        let mut after = before;
        for i in 0..10_000_000_000u64 {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(i);
            if i % 1_000_000 == 0 {
                after = cpu_seconds(pid).unwrap();
                if after > before {
                    break;
                }
            }
        }
        std::hint::black_box(x);
        assert!(after > before, "no CPU time counted");
        assert!(cpu_seconds(u32::MAX).is_err(), "no such process");
    }
}
