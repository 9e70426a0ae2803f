#!/usr/bin/env python3
"""Hostile-client and slow-origin figures for `groupcache serve`.

Runs real `groupcache` processes on 127.0.0.1 (and 127.0.0.2/127.0.0.3 as
other client addresses, which Linux treats as local) and prints one figure
per scenario. Only loopback traffic; every loop is bounded.

    python3 benches/scripts/hostile.py BIN [memory|lockout|slow|stopped|slowloris ...]

BIN is a `groupcache` binary (e.g. target/release/groupcache).
"""

import http.server
import os
import resource
import signal
import socket
import struct
import subprocess
import sys
import threading
import time

BIN = sys.argv[1]
BASE = 19000 + (os.getpid() % 500) * 10


def varint(n):
    out = b""
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out += bytes([b | 0x80])
        else:
            return out + bytes([b])


def request(group, key):
    g, k = group.encode(), key.encode()
    p = b"\x0a" + varint(len(g)) + g + b"\x12" + varint(len(k)) + k
    return struct.pack("<q", len(p)) + p


def read_exact(s, n):
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("closed")
        buf += chunk
    return buf


def read_varint(b, i):
    shift = n = 0
    while True:
        x = b[i]
        i += 1
        n |= (x & 0x7F) << shift
        shift += 7
        if x < 0x80:
            return n, i


def response(s):
    (n,) = struct.unpack("<q", read_exact(s, 8))
    p = read_exact(s, n)
    i, code, value = 0, 0, b""
    while i < len(p):
        tag, i = read_varint(p, i)
        if tag & 7 == 2:
            ln, i = read_varint(p, i)
            if tag >> 3 == 1:
                value = p[i : i + ln]
            i += ln
        elif tag & 7 == 0:
            v, i = read_varint(p, i)
            if tag >> 3 == 2:
                code = v
    return code, value


def get(addr, group, key, source="127.0.0.3", timeout=40):
    s = socket.socket()
    s.settimeout(timeout)
    s.bind((source, 0))
    s.connect(addr)
    try:
        s.sendall(request(group, key))
        return response(s)
    finally:
        s.close()


def rss_kb(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def serve(port, *args, http=None):
    cmd = [BIN, "--threads", "1", "serve", "--listen", f"127.0.0.1:{port}", *args]
    if http:
        cmd += ["--http", f"127.0.0.1:{http}"]
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 10
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return p
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("node did not start")


def stop(*procs):
    for p in procs:
        p.send_signal(signal.SIGCONT)
        p.terminate()
    for p in procs:
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()


def memory():
    """RSS growth while one client pipelines gets of a cached 6 MiB value and
    never reads."""
    size = 6 << 20
    port = BASE
    # A frame limit above the value (the old node has no such flag and no limit).
    frame = [] if "--old" in sys.argv else ["--max-frame", str(8 << 20)]
    node = serve(port, *frame, "--group", f"big:{64 << 20}:0:synthetic:{size}")
    code, value = get(("127.0.0.1", port), "big", "k", source="127.0.0.1")
    assert code == 200 and len(value) == size, (code, len(value))
    for n in (10, 100, 10_000):
        if "--old" in sys.argv and n > 1000:
            print(f"memory: {n} gets: skipped (the old node would copy {n * 6} MiB)")
            continue
        base = rss_kb(node.pid)
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.connect(("127.0.0.1", port))
        s.settimeout(1)
        data = request("big", "k") * n
        try:
            s.sendall(data)
        except socket.timeout:
            pass  # the node stopped reading: that is the point
        peak = base
        end = time.time() + 2.5
        while time.time() < end:
            peak = max(peak, rss_kb(node.pid))
            time.sleep(0.02)
        s.close()
        print(f"memory: {n} pipelined gets of a 6 MiB value, never read: RSS +{(peak - base) / 1024:.1f} MiB")
        time.sleep(3.5)  # let the node drop the connection
    stop(node)


def lockout():
    """Failed gets of good clients and peers while one address holds 5000
    connections to a node."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    ports = [BASE + 1, BASE + 2, BASE + 3]
    peers = ",".join(f"127.0.0.1:{p}" for p in ports)
    nodes = [serve(p, "--peers", peers, "--group", "bench:1073741824:0:synthetic:100") for p in ports]
    hog = []
    refused = 0
    for _ in range(5000):
        s = socket.socket()
        s.bind(("127.0.0.2", 0))
        try:
            s.connect(("127.0.0.1", ports[0]))
            s.sendall(struct.pack("<q", 0))  # an empty frame, as a keepalive
            hog.append(s)
        except OSError:
            refused += 1
            s.close()
    time.sleep(1)
    failed = total = 0
    for i in range(300):
        total += 1
        try:
            code, value = get(("127.0.0.1", ports[i % 3]), "bench", f"key-{i}", timeout=10)
            if code != 200:
                failed += 1
        except OSError:
            failed += 1
    open_hog = 0
    for s in hog:
        s.setblocking(False)
        try:
            if s.recv(1 << 16) == b"":
                continue  # closed by the node
        except BlockingIOError:
            pass
        except OSError:
            continue
        open_hog += 1
    print(
        f"lockout: one address opened 5000 connections ({refused} refused at connect, "
        f"{open_hog} still open after 1 s); gets through all 3 nodes from another "
        f"address, 2/3 of them via a peer: {failed} of {total} failed"
    )
    for s in hog:
        s.close()
    stop(*nodes)


class Origin(http.server.BaseHTTPRequestHandler):
    delay = 0.0
    hits = 0
    lock = threading.Lock()

    def do_GET(self):
        with Origin.lock:
            Origin.hits += 1
        time.sleep(Origin.delay)
        body = b"slow-value"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def slow():
    """Origin loads for 300 gets spread over 3 nodes of one cold key, with an
    origin that takes 5 s and 20 s (request timeout 3 s)."""
    for delay in (5, 20):
        Origin.delay, Origin.hits = delay, 0
        srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Origin)
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        url = f"http://127.0.0.1:{srv.server_address[1]}/{{key}}"
        ports = [BASE + 4, BASE + 5, BASE + 6]
        peers = ",".join(f"127.0.0.1:{p}" for p in ports)
        nodes = [serve(p, "--peers", peers, "--group", f"slow:1048576:0:{url}") for p in ports]
        results = []
        start = time.time()

        def one(i):
            try:
                results.append(get(("127.0.0.1", ports[i % 3]), "slow", "cold"))
            except OSError as e:
                results.append((0, str(e).encode()))

        threads = [threading.Thread(target=one, args=(i,)) for i in range(300)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        ok = sum(1 for c, v in results if c == 200 and v == b"slow-value")
        print(
            f"slow: origin of {delay} s: {Origin.hits} origin loads for 300 gets over 3 nodes; "
            f"{ok} ok; {time.time() - start:.1f} s"
        )
        stop(*nodes)
        srv.shutdown()


def owner_keys(peers, owner, n):
    keys = [f"key-{i}" for i in range(n * 6)]
    out = subprocess.run([BIN, "ring", "--peers", peers, *keys], capture_output=True, text=True).stdout
    return [k for k, o in (line.split("\t") for line in out.splitlines()) if o == owner][:n]


def stopped():
    """Latency of gets for keys of a stopped (SIGSTOP) owner."""
    ports = [BASE + 7, BASE + 8, BASE + 9]
    peers = ",".join(f"127.0.0.1:{p}" for p in ports)
    nodes = [serve(p, "--peers", peers, "--group", "bench:1073741824:0:synthetic:100") for p in ports]
    keys = owner_keys(peers, f"127.0.0.1:{ports[2]}", 300)
    nodes[2].send_signal(signal.SIGSTOP)
    lat = []
    failed = 0
    for i, k in enumerate(keys):
        t = time.time()
        try:
            code, _ = get(("127.0.0.1", ports[i % 2]), "bench", k, timeout=10)
            failed += code != 200
        except OSError:
            failed += 1
        lat.append((time.time() - t) * 1000)
        time.sleep(0.02)  # spread over a few seconds: backoffs and probes happen
    s = sorted(lat)
    p = lambda q: s[min(len(s) - 1, int(q * len(s)))]
    print(
        f"stopped owner: {len(keys)} gets of its keys through the 2 others over "
        f"{sum(lat) / 1000 + 0.02 * len(keys):.1f} s: p50 {p(0.5):.1f} ms, p99 {p(0.99):.1f} ms, "
        f"max {s[-1]:.0f} ms, {sum(1 for x in lat if x > 1000)} over 1 s, {failed} failed"
    )
    stop(*nodes)


def slowloris():
    """3000 connections from one address that send part of a request header
    to the HTTP front of a node limited to 1024 open files."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    port, front = BASE + 1, BASE + 2
    cmd = f"ulimit -n 1024; exec {BIN} serve --listen 127.0.0.1:{port} --http 127.0.0.1:{front} --group score:2048:0:sample"
    node = subprocess.Popen(["bash", "-c", cmd], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    time.sleep(1)
    held = []
    stalled = 0
    for _ in range(3000):
        s = socket.socket()
        s.settimeout(1)  # a node that stopped accepting leaves connects hanging
        s.bind(("127.0.0.2", 0))
        try:
            s.connect(("127.0.0.1", front))
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
            held.append(s)
            stalled = 0
        except OSError:
            s.close()
            stalled += 1
            if stalled == 5:
                break  # the node's backlog is full: it holds all it can
    time.sleep(1)

    def healthz():
        try:
            c = socket.create_connection(("127.0.0.1", front), timeout=3)
            c.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            ok = c.recv(100).startswith(b"HTTP/1.1 200")
            c.close()
            return ok
        except OSError:
            return False

    def peer_get():
        try:
            return get(("127.0.0.1", port), "score", "Tom", source="127.0.0.1", timeout=3) == (200, b"630")
        except OSError:
            return False

    h = sum(healthz() for _ in range(20))
    g = sum(peer_get() for _ in range(20))
    time.sleep(6)
    still = 0
    for s in held:
        s.setblocking(False)
        try:
            if s.recv(4096) != b"":
                still += 1
        except BlockingIOError:
            still += 1
        except OSError:
            pass
        s.close()
    node.terminate()
    err = node.communicate(timeout=10)[1].decode()
    print(
        f"slowloris: {len(held)} partial-header connections from one address: /healthz {h}/20 ok, "
        f"peer-port gets {g}/20 ok; {still} still open 7 s later; "
        f"{err.count('accept failed')} accept errors logged"
    )


for what in [a for a in sys.argv[2:] if not a.startswith("--")] or ["memory", "lockout", "slow", "stopped", "slowloris"]:
    globals()[what]()
