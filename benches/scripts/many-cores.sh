#!/usr/bin/env bash
# Scaling over threads on a machine with many cores, in one short run:
#
# 1. `scaling`: in-process hits and misses on tokio, smol and compio, beside
#    the same in quick_cache, moka and a map or cache per thread, at each
#    thread count.
# 2. Over TCP: the node with N threads on CPUs 0..N-1 and the load tool with
#    N threads on CPUs N..2N-1, beside `memcached -t N` when memcached is
#    installed (benches/scripts/cpu-matrix.py), for each N with 2N <= cores.
#
#     bash benches/scripts/many-cores.sh                 # builds, then runs
#     THREADS="1 2" SECS=1 bash benches/scripts/many-cores.sh
#
# BIN=DIR takes the binaries from DIR instead of building them there
# (`groupcache`, `groupcache-load`, and `scaling`, the bench binary):
# a machine lent for minutes need not build. The figures go to stdout and
# to ${OUT:-.}/many-cores.txt. Loopback only; ports are chosen by the OS.
set -euo pipefail
cd "$(dirname "$0")/../.."

cores=$(nproc)
threads=()
for t in ${THREADS:-1 2 4 8 16}; do
  [ "$t" -le "$cores" ] && threads+=("$t")
done
secs=${SECS:-1}
rounds=${ROUNDS:-2}
out="${OUT:-.}/many-cores.txt"

if [ -z "${BIN:-}" ]; then
  cargo build --release -p groupcache-cli -p groupcache-benches --bin groupcache --bin groupcache-load
  cargo bench -p groupcache-benches --bench scaling --no-run
  BIN=$(mktemp -d)
  cp target/release/groupcache target/release/groupcache-load "$BIN/"
  scaling=$(ls -t target/release/deps/scaling-* | grep -v '\.d$' | head -n 1)
  cp "$scaling" "$BIN/scaling"
fi

{
  echo "# many-cores: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
  echo "# $(date -u +%FT%TZ), commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
  echo
  echo "## scaling: in-process, ${rounds} rounds of ${secs} s"
  "$BIN/scaling" --threads "$(IFS=,; echo "${threads[*]}")" --secs "$secs" --rounds "$rounds"
  for n in "${threads[@]}"; do
    [ $((2 * n)) -le "$cores" ] || continue
    echo
    echo "## over TCP: node and memcached with $n threads on CPUs 0-$((n - 1)), load on $n-$((2 * n - 1))"
    servers=()
    if command -v memcached >/dev/null; then
      servers+=("memcached=memcached -u root -l 127.0.0.1 -t $n -m 1024 -p {port}")
    fi
    servers+=("node=$BIN/groupcache --threads $n serve --listen 127.0.0.1:{port} --group bench:1073741824:0:synthetic:100")
    SERVER_CPUS="0-$((n - 1))" LOAD_CPUS="$n-$((2 * n - 1))" LOAD_THREADS="$n" DURATION="$secs" \
      python3 benches/scripts/cpu-matrix.py "$BIN/groupcache-load" 1 "${servers[@]}"
  done
} 2>&1 | tee "$out"
