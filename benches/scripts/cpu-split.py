#!/usr/bin/env python3
"""Profiles servers under one unpipelined load (16 connections, 10,000 keys,
100-byte hits) with `perf record` and splits the server's samples into where
a request's CPU goes: the kernel, the async runtime, the driver, the core,
and the C library (copies, allocation). Loopback only; ports are chosen by
the OS; the server runs on CPU 0 and the load tool on CPU 1.

    python3 benches/scripts/cpu-split.py LOAD_BIN NAME='COMMAND {port}' ...

A NAME starting with `memcached` is spoken to in memcached's protocol.
Needs `perf` allowed to profile other processes (root, or
kernel.perf_event_paranoid <= 1).
"""
import collections
import re
import shlex
import socket
import subprocess
import sys
import tempfile
import time

load_bin = sys.argv[1]
servers = [a.split("=", 1) for a in sys.argv[2:]]

# First match wins; symbols are perf's demangled names.
CATEGORIES = [
    ("kernel", lambda dso, sym: dso.startswith("[kernel")),
    ("core", lambda dso, sym: any(s in sym for s in ("groupcache_core::", "prost::", "crc32fast"))),
    ("driver", lambda dso, sym: "groupcache_driver::" in sym or "futures_rustls" in sym),
    ("runtime", lambda dso, sym: any(s in sym for s in (
        "tokio::", "mio::", "compio", "async_task", "async_channel", "event_listener",
        "async_io", "polling::", "futures_lite", "parking", "io_uring"))),
    ("libc (copies, allocation)", lambda dso, sym: dso.startswith("libc") or "malloc" in sym
        or "memcpy" in sym or "memmove" in sym or "memcmp" in sym),
]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def split(data):
    out = subprocess.run(["perf", "report", "-i", data, "--no-children", "--sort", "dso,sym",
                          "--stdio", "-g", "none"], capture_output=True, text=True).stdout
    shares = collections.Counter()
    for line in out.splitlines():
        m = re.match(r"\s+([\d.]+)%\s+(\S+)\s+\[[.k]\]\s+(.*)", line)
        if not m:
            continue
        pct, dso, sym = float(m.group(1)), m.group(2), m.group(3)
        cat = next((c for c, f in CATEGORIES if f(dso, sym)), "other (the server's own code)")
        shares[cat] += pct
    return shares


rows = []
for name, cmd in servers:
    port = free_port()
    srv = subprocess.Popen(["taskset", "-c", "0", *shlex.split(cmd.format(port=port))],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(0.7)
        args = ["taskset", "-c", "1", load_bin, "--addr", f"127.0.0.1:{port}", "--connections", "16",
                "--keys", "10000", "--duration", "8", "--server-pid", str(srv.pid)]
        if name.startswith("memcached"):
            args += ["--protocol", "memcached", "--value-size", "100"]
        load = subprocess.Popen(args, stdout=subprocess.PIPE, text=True)
        time.sleep(3)
        with tempfile.NamedTemporaryFile(suffix=".data") as f:
            subprocess.run(["perf", "record", "-F", "2999", "-g", "-p", str(srv.pid), "-o", f.name,
                            "--", "sleep", "4"], capture_output=True, check=True)
            out = load.communicate()[0]
            shares = split(f.name)
        us = float(re.search(r"server_cpu_us_per_request=([\d.]+)", out).group(1))
        rows.append((name, us, shares))
    finally:
        srv.terminate()
        srv.wait()

cats = [c for c, _ in CATEGORIES] + ["other (the server's own code)"]
print("16 connections, 10,000 keys, 100-byte hits; share of the server's samples, "
      "and µs of server CPU per request")
print("| server | CPU µs/request | " + " | ".join(cats) + " |")
print("|---|---:|" + "---:|" * len(cats))
for name, us, shares in rows:
    cells = " | ".join(f"{shares[c]:.0f} % ({us * shares[c] / 100:.2f})" for c in cats)
    print(f"| {name} | {us:.2f} | {cells} |")
