#!/usr/bin/env python3
"""Memory a filled cache really holds: a node filled past its byte budget,
and memcached holding the same keys, RSS from /proc before and after.
Loopback only; ports chosen by the OS.

    python3 benches/scripts/rss.py [BIN_DIR]
    python3 benches/scripts/rss.py [BIN_DIR] --churn [SECONDS]

With --churn, the node instead serves a sustained churn: 2M uniform keys
over a 64 MiB group, 8 connections x 16 pipelined, so nearly every get is a
miss that evicts; RSS is sampled every second and the growth over the last
ten seconds, divided by the budget, is reported (goal: at most 1.1).

BIN_DIR holds `groupcache` and `groupcache-load` (default target/release).
For each value size, the node's group gets a budget and twice as many
12-byte keys as fit in it are fetched once; the table reports the RSS growth
divided by the budget (the goal is at most 1.1) and per item held, beside
memcached (-m 4096, every key stored) per item.
"""
import os, re, socket, subprocess, sys, time, urllib.request

args = [a for a in sys.argv[1:] if not a.startswith("--")]
CHURN = "--churn" in sys.argv
bins = args[0] if args and not args[0].isdigit() else "target/release"
CHURN_SECS = int(next((a for a in args if a.isdigit()), "40"))
KEY = 12
# The per-entry overhead the node charges (core::cache::ENTRY_OVERHEAD).
OVERHEAD = 44
CASES = [(10, 64 << 20), (100, 64 << 20), (10240, 256 << 20)]


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def rss(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def load(port, keys, *extra):
    out = subprocess.run([f"{bins}/groupcache-load", "--addr", f"127.0.0.1:{port}", "--keys", str(keys),
                          "--connections", "4", "--duration", "0", *extra],
                         capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(out.stderr)


def node_case(size, budget):
    port = free_port()
    keys = 2 * budget // (KEY + size + OVERHEAD)
    srv = subprocess.Popen([f"{bins}/groupcache", "--threads", "1", "serve", "--listen", f"127.0.0.1:{port}",
                            "--http", "127.0.0.1:0", "--group", f"bench:{budget}:0:synthetic:{size}"],
                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    http = None
    while http is None:
        line = srv.stdout.readline()
        m = re.search(r"http front on (\S+)", line)
        if m:
            http = m.group(1)
    time.sleep(0.3)
    before = rss(srv.pid)
    load(port, keys)
    time.sleep(0.3)
    after = rss(srv.pid)
    metrics = urllib.request.urlopen(f"{http}/metrics").read().decode()
    items = sum(int(v) for v in re.findall(r'groupcache_cache_items\{[^}]*\} (\d+)', metrics))
    srv.terminate()
    srv.wait()
    return keys, items, after - before


def memcached_case(size, keys):
    port = free_port()
    # memcached refuses to run as root unless told which user to become.
    user = ["-u", "nobody"] if os.geteuid() == 0 else []
    srv = subprocess.Popen(["memcached", "-m", "4096", "-p", str(port), "-U", "0", "-t", "1", "-l", "127.0.0.1", *user],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.5)
    before = rss(srv.pid)
    load(port, keys, "--protocol", "memcached", "--value-size", str(size))
    time.sleep(0.3)
    after = rss(srv.pid)
    srv.terminate()
    srv.wait()
    return after - before


def churn_case(threads, size, budget, secs):
    port = free_port()
    srv = subprocess.Popen([f"{bins}/groupcache", "--threads", str(threads), "serve", "--listen", f"127.0.0.1:{port}",
                            "--http", "127.0.0.1:0", "--group", f"bench:{budget}:0:synthetic:{size}"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.5)
    before = rss(srv.pid)
    gen = subprocess.Popen([f"{bins}/groupcache-load", "--addr", f"127.0.0.1:{port}", "--keys", "2000000",
                            "--connections", "8", "--pipeline", "16", "--duration", str(secs)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    samples = []
    while gen.poll() is None:
        time.sleep(1)
        samples.append(rss(srv.pid) - before)
    if gen.returncode != 0:
        raise RuntimeError(gen.stderr.read())
    srv.terminate()
    srv.wait()
    last = samples[-10:]
    return max(samples), max(last)


if CHURN:
    print("| threads | values | budget | seconds | peak RSS growth / budget | last 10 s RSS growth / budget |")
    print("|---:|---:|---:|---:|---:|---:|")
    for threads, size in [(1, 1024), (2, 100), (2, 1024)]:
        budget = 64 << 20
        peak, last = churn_case(threads, size, budget, CHURN_SECS)
        print(f"| {threads} | {size} B | {budget >> 20} MiB | {CHURN_SECS} | {peak / budget:.2f} | {last / budget:.2f} |")
    sys.exit(0)

print("| values | budget | keys fetched | items held | RSS growth / budget | node RSS per item | memcached RSS per item (same keys) |")
print("|---|---:|---:|---:|---:|---:|---:|")
for size, budget in CASES:
    keys, items, grew = node_case(size, budget)
    mc = memcached_case(size, keys)
    print(f"| {size} B | {budget >> 20} MiB | {keys:,} | {items:,} | {grew / budget:.2f} | "
          f"{grew / max(items, 1):.0f} B | {mc / keys:.0f} B |")
