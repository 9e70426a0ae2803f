#!/usr/bin/env python3
"""Alternates two builds of `groupcache` and `groupcache-load` on one machine
and prints requests/s and the server's CPU time per request (utime + stime
from /proc), medians over the rounds. Loopback only.

    python3 benches/scripts/compare-binaries.py OLD_DIR NEW_DIR [ROUNDS]

Each DIR holds a `groupcache` and a `groupcache-load` binary.
"""
import subprocess, time, os, re, statistics, sys
dirs = {"old": sys.argv[1], "new": sys.argv[2]}
rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 6
scen = [("hot key", "--connections 4 --keys 1"), ("10k keys", "--connections 4 --keys 10000"),
        ("10k keys, pipeline 16", "--connections 4 --keys 10000 --pipeline 16")]
res = {}
port = 18200
def cpu(pid):
    f = open(f"/proc/{pid}/stat").read().split(")")[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")
for r in range(rounds):
    order = ["old", "new"] if r % 2 == 0 else ["new", "old"]
    for v in order:
        port += 1
        srv = subprocess.Popen([f"{dirs[v]}/groupcache", "--threads", "1", "serve", "--listen", f"127.0.0.1:{port}",
                                "--group", "bench:1073741824:0:synthetic:100"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(0.5)
        for name, args in scen:
            c0 = cpu(srv.pid)
            out = subprocess.run([f"{dirs[v]}/groupcache-load", "--addr", f"127.0.0.1:{port}", *args.split(), "--duration", "3"],
                                 capture_output=True, text=True).stdout
            c1 = cpu(srv.pid)
            rps = int(re.search(r"requests_per_sec=(\d+)", out).group(1))
            n = int(re.search(r"requests=(\d+)", out).group(1))
            res.setdefault((name, v), []).append((rps, (c1 - c0) / n * 1e6))
        srv.terminate(); srv.wait()
print(f"{rounds} alternating rounds of 3 s; medians; server CPU includes the warm-up fetch of every key")
print("| load | old req/s | new req/s | new/old | old CPU µs/req | new CPU µs/req |")
print("|---|---:|---:|---:|---:|---:|")
for name, _ in scen:
    o = res[(name, "old")]; n = res[(name, "new")]
    orps = statistics.median(x[0] for x in o); nrps = statistics.median(x[0] for x in n)
    ocpu = statistics.median(x[1] for x in o); ncpu = statistics.median(x[1] for x in n)
    print(f"| {name} | {orps:,.0f} | {nrps:,.0f} | {nrps/orps:.2f} | {ocpu:.2f} | {ncpu:.2f} |")
