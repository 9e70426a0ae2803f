#!/usr/bin/env python3
"""Runs servers side by side under the same unpipelined loads (4, 16 and 64
connections; one hot key and 10,000 keys, 100-byte hits) and one pipelined
load, and prints requests/s, p99 and requests per server CPU second
(utime + stime of the server's threads, from /proc, via
`groupcache-load --server-pid`): medians over ROUNDS rounds, in each of
which every server, started afresh, runs each load for DURATION seconds
(default 2) right after the others. Loopback only; ports are chosen by the
OS.

    python3 benches/scripts/cpu-matrix.py LOAD_BIN ROUNDS NAME='COMMAND {port}' ...

The server runs on the CPUs in SERVER_CPUS (default 0) and the load tool on
LOAD_CPUS (default 1), so that neither moves onto the other's core between
rounds (unpinned, the same binary's figures varied by a third on a 2-core
machine); LOAD_THREADS (default 1) sets the load tool's threads.

A NAME starting with `memcached` is spoken to in memcached's text protocol
(the load tool stores its values first) and gets no pipelined load. The first
server listed that ran a load is the baseline of its ratio column ("vs
first"): name memcached first.

    python3 benches/scripts/cpu-matrix.py target/release/groupcache-load 3 \\
      "memcached=memcached -u root -l 127.0.0.1 -t 1 -m 1024 -p {port}" \\
      "tokio=target/release/groupcache --threads 1 serve --listen 127.0.0.1:{port} --group bench:1073741824:0:synthetic:100"
"""
import re
import shlex
import socket
import statistics
import subprocess
import sys
import os
import time

load_bin = sys.argv[1]
rounds = int(sys.argv[2])
servers = [a.split("=", 1) for a in sys.argv[3:]]
duration = os.environ.get("DURATION", "2")
server_cpus = os.environ.get("SERVER_CPUS", "0")
load_cpus = os.environ.get("LOAD_CPUS", "1")
# The load tool's threads (default 1): one per CPU in LOAD_CPUS keeps a
# server with several threads busy.
load_threads = os.environ.get("LOAD_THREADS", "1")
loads = [(f"{c} conns, {'hot key' if k == 1 else '10k keys'}", c, k, 1)
         for c in (4, 16, 64) for k in (1, 10000)]
loads.append(("4 conns, 10k keys, pipeline 16", 4, 10000, 16))
# ONLY=text keeps the loads whose label holds it (e.g. ONLY=pipeline).
loads = [l for l in loads if os.environ.get("ONLY", "") in l[0]]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_listening(port, proc):
    for _ in range(200):
        if proc.poll() is not None:
            sys.exit(f"server exited early: {proc.args}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
            return
        except OSError:
            time.sleep(0.05)
    sys.exit(f"server never listened: {proc.args}")


def measure(name, cmd, conns, keys, depth):
    """Starts the server afresh, runs one load against it, stops it."""
    port = free_port()
    srv = subprocess.Popen(["taskset", "-c", server_cpus, *shlex.split(cmd.format(port=port))],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_listening(port, srv)
        args = ["taskset", "-c", load_cpus, load_bin, "--addr", f"127.0.0.1:{port}",
                "--connections", str(conns), "--keys", str(keys), "--pipeline", str(depth),
                "--duration", duration, "--server-pid", str(srv.pid), "--threads", load_threads]
        if name.startswith("memcached"):
            args += ["--protocol", "memcached", "--value-size", "100"]
        out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    finally:
        srv.terminate()
        srv.wait()
    rps = float(re.search(r"requests_per_sec=(\d+)", out).group(1))
    per_cpu = float(re.search(r"requests_per_cpu_second=(\d+)", out).group(1))
    p99 = int(re.search(r"p99=(\d+)", out).group(1))
    return rps, per_cpu, p99


# Every server runs each load within seconds of the others, in an order that
# alternates between rounds: this VM's speed drifts over minutes, so only
# measurements taken side by side compare.
res = {}
for r in range(rounds):
    for label, conns, keys, depth in loads:
        order = servers if r % 2 == 0 else list(reversed(servers))
        for name, cmd in order:
            if name.startswith("memcached") and depth > 1:
                continue
            res.setdefault((label, name), []).append(measure(name, cmd, conns, keys, depth))


print(f"{rounds} rounds of {duration} s per load and server, side by side; medians; "
      f"server on CPUs {server_cpus}, load on {load_cpus}")
print("| load | server | req/s | req per CPU s | vs first | p99 µs |")
print("|---|---|---:|---:|---:|---:|")
for label, *_ in loads:
    for name, _ in servers:
        if (label, name) not in res:
            continue
        runs = res[(label, name)]
        rps = statistics.median(x[0] for x in runs)
        per_cpu = statistics.median(x[1] for x in runs)
        p99 = statistics.median(x[2] for x in runs)
        # The first server listed that ran this load is the baseline.
        base = next(n for n, _ in servers if (label, n) in res)
        # The median of each round's ratio: both taken side by side.
        ratios = [x[1] / b[1] for x, b in zip(runs, res[(label, base)])]
        ratio = f"{statistics.median(ratios):.2f}×"
        print(f"| {label} | {name} | {rps:,.0f} | {per_cpu:,.0f} | {ratio} | {p99:.0f} |")
