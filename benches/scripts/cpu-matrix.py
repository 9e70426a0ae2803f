#!/usr/bin/env python3
"""Runs servers side by side under the same unpipelined loads (4, 16 and 64
connections; one hot key and 10,000 keys, 100-byte hits) and one pipelined
load, and prints requests/s, p99 and requests per server CPU second
(utime + stime of the server's threads, from /proc, via
`groupcache-load --server-pid`), medians over alternating rounds. Loopback
only; ports are chosen by the OS.

    python3 benches/scripts/cpu-matrix.py LOAD_BIN ROUNDS NAME='COMMAND {port}' ...

The server runs on the CPUs in SERVER_CPUS (default 0) and the load tool on
LOAD_CPUS (default 1), so that neither moves onto the other's core between
rounds (unpinned, the same binary's figures varied by a third on a 2-core
machine).

A NAME starting with `memcached` is spoken to in memcached's text protocol
(the load tool stores its values first) and gets no pipelined load. The first
memcached server named is the baseline of the ratio column.

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
duration = "3"
server_cpus = os.environ.get("SERVER_CPUS", "0")
load_cpus = os.environ.get("LOAD_CPUS", "1")
loads = [(f"{c} conns, {'hot key' if k == 1 else '10k keys'}", c, k, 1)
         for c in (4, 16, 64) for k in (1, 10000)]
loads.append(("4 conns, 10k keys, pipeline 16", 4, 10000, 16))


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


res = {}
for r in range(rounds):
    order = servers if r % 2 == 0 else list(reversed(servers))
    for name, cmd in order:
        port = free_port()
        srv = subprocess.Popen(["taskset", "-c", server_cpus, *shlex.split(cmd.format(port=port))],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_listening(port, srv)
            memcached = name.startswith("memcached")
            for label, conns, keys, depth in loads:
                if memcached and depth > 1:
                    continue
                args = ["taskset", "-c", load_cpus, load_bin, "--addr", f"127.0.0.1:{port}", "--connections", str(conns),
                        "--keys", str(keys), "--pipeline", str(depth), "--duration", duration,
                        "--server-pid", str(srv.pid)]
                if memcached:
                    args += ["--protocol", "memcached", "--value-size", "100"]
                out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
                rps = float(re.search(r"requests_per_sec=(\d+)", out).group(1))
                per_cpu = float(re.search(r"requests_per_cpu_second=(\d+)", out).group(1))
                p99 = int(re.search(r"p99=(\d+)", out).group(1))
                res.setdefault((label, name), []).append((rps, per_cpu, p99))
        finally:
            srv.terminate()
            srv.wait()

base = next((n for n, _ in servers if n.startswith("memcached")), None)
print(f"{rounds} alternating rounds of {duration} s per load; medians; "
      f"server on CPUs {server_cpus}, load on {load_cpus}")
print("| load | server | req/s | req per CPU s | vs memcached | p99 µs |")
print("|---|---|---:|---:|---:|---:|")
for label, *_ in loads:
    for name, _ in servers:
        if (label, name) not in res:
            continue
        runs = res[(label, name)]
        rps = statistics.median(x[0] for x in runs)
        per_cpu = statistics.median(x[1] for x in runs)
        p99 = statistics.median(x[2] for x in runs)
        ratio = ""
        if base and (label, base) in res:
            ratio = f"{per_cpu / statistics.median(x[1] for x in res[(label, base)]):.2f}×"
        print(f"| {label} | {name} | {rps:,.0f} | {per_cpu:,.0f} | {ratio} | {p99:.0f} |")
