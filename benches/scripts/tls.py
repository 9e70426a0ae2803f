"""Requests per second and server CPU per request over mutual TLS against
plaintext, unpipelined and pipelined (depth 16), in alternating rounds, and
the server's TLS handshake counter around each run.

    cargo build --release -p groupcache-cli -p groupcache-benches
    bash benches/scripts/make-test-certs.sh /tmp/gc-certs
    python3 benches/scripts/tls.py /tmp/gc-certs 3
"""
import subprocess, re, statistics, sys, os
ROOT=os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN=f"{ROOT}/target/release/groupcache"; LOAD=f"{ROOT}/target/release/groupcache-load"
D=sys.argv[1]
tls=["--tls-cert",f"{D}/node.pem","--tls-key",f"{D}/node-key.pem","--tls-ca",f"{D}/ca.pem"]
ctls=["--tls-cert",f"{D}/client.pem","--tls-key",f"{D}/client-key.pem","--tls-ca",f"{D}/ca.pem"]
def cpu(pid):
    f=open(f"/proc/{pid}/stat").read().rsplit(")",1)[1].split()
    return (int(f[11])+int(f[12]))/os.sysconf("SC_CLK_TCK")
def start(port, use_tls):
    args=[BIN,"serve","--listen",f"127.0.0.1:{port}","--http",f"127.0.0.1:{port+1}","--group","bench:1073741824:0:synthetic:100"]+(tls+["--http-tls"] if use_tls else [])
    p=subprocess.Popen(args,stdout=subprocess.PIPE,stderr=subprocess.DEVNULL,text=True)
    p.stdout.readline(); p.stdout.readline()
    return p
def metric(port, name):
    out=subprocess.run(["curl","-sk",f"https://127.0.0.1:{port+1}/metrics"] ,capture_output=True,text=True).stdout
    if not out: out=subprocess.run(["curl","-s",f"http://127.0.0.1:{port+1}/metrics"],capture_output=True,text=True).stdout
    m=re.search(rf"^{name}\{{[^}}]*\}} (\d+)",out,re.M)
    return int(m.group(1)) if m else None
def load(port, pipeline, use_tls, dur=5):
    args=[LOAD,"--addr",f"127.0.0.1:{port}","--connections","4","--pipeline",str(pipeline),"--keys","10000","--duration",str(dur)]+(ctls if use_tls else [])
    out=subprocess.run(args,capture_output=True,text=True)
    m=re.search(r"requests=(\d+) errors=(\d+) seconds=([\d.]+) requests_per_sec=(\d+)",out.stdout)
    p99=re.search(r"p99=(\d+)",out.stdout)
    if not m: print(out.stdout, out.stderr); sys.exit(1)
    return int(m.group(1)), int(m.group(4)), int(p99.group(1)), out.stdout
rounds=int(sys.argv[2]) if len(sys.argv)>2 else 3
res={}
for r in range(rounds):
    for use_tls in ([False,True] if r%2==0 else [True,False]):
        port=18000 if not use_tls else 18100
        p=start(port,use_tls)
        try:
            for pipe in [1,16]:
                h0=metric(port,"groupcache_tls_handshakes_total")
                c0=cpu(p.pid); n,rps,p99,out=load(port,pipe,use_tls); c1=cpu(p.pid)
                h1=metric(port,"groupcache_tls_handshakes_total")
                res.setdefault((use_tls,pipe),[]).append((rps,(c1-c0)/n*1e6,p99,h0,h1))
        finally:
            p.terminate(); p.wait()
for k in sorted(res):
    v=res[k]
    print(("tls" if k[0] else "plain"), "pipeline", k[1], "rps median", statistics.median(x[0] for x in v), "server_cpu_us/req median %.2f"%statistics.median(x[1] for x in v), "p99_us median", statistics.median(x[2] for x in v), "handshakes server before/after per round", [(x[3],x[4]) for x in v], "all rps", [x[0] for x in v])
