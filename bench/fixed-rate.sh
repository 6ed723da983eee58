#!/usr/bin/env bash
# HTTP/1.1 latency of Envoy and sluice at the same fixed request rate (h2load --h1 --rps: 50
# clients, RPS requests/s each), proxy pinned to core 1, backend and h2load on core 0. run.sh's
# wrk test is closed-loop: each proxy runs as fast as it can, so a fast one keeps both cores busy
# and its p99 is made of the VM's vCPU stalls (tools/gaps.py). Here both serve the same load.
#
#   ./fixed-rate.sh        env: RPS=600 (per client; 50 clients)  SECS=5  ROUNDS=2
#                          SLUICE_PROXY (default ../target/release/sluice-proxy)
# Needs ./setup.sh (backend, Envoy) and one run.sh run before (for .run/envoy.yaml). Ports: backend
# 18080, Envoy 18083 (from .run/envoy.yaml), sluice 18295. Stops what it starts, by PID.
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
cd "$HERE"
RPS=${RPS:-600}; SECS=${SECS:-5}; ROUNDS=${ROUNDS:-2}
PROXY=${SLUICE_PROXY:-$HERE/../target/release/sluice-proxy}
ENVOY=${ENVOY:-$(ls .venv/lib/python3*/site-packages/envoy/_bin/envoy 2>/dev/null | head -1)}
[ -x "$ENVOY" ] && [ -s .run/envoy.yaml ] && [ -x "$PROXY" ] || { echo "run ./setup.sh and ./run.sh envoy first, build the proxy" >&2; exit 1; }
OUT=$HERE/.run/fixed-rate; rm -rf "$OUT"; mkdir -p "$OUT"
PIDS=()
trap 'for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done' EXIT
taskset -c 0 backend/target/release/bench-backend 127.0.0.1:18080 2>/dev/null & PIDS+=($!)
wait_http() { for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$1/" && return 0; sleep 0.1; done; return 1; }
pct() {  # h2load log file -> percentiles of the request times (µs)
    python3 -c "
import sys
v = sorted(int(l.split()[2]) for l in open(sys.argv[1]) if len(l.split()) >= 3)
n = len(v); print(f'{n} requests  p50 {v[n//2]}  p90 {v[int(n*.9)]}  p99 {v[int(n*.99)]}  max {v[-1]} us')" "$1"
}
measure() {  # name port pid
    taskset -c 0 h2load --h1 -t1 -c50 --rps="$RPS" -D 2 "http://127.0.0.1:$2/" >/dev/null 2>&1
    for r in 1 2 3; do
        local log=$OUT/$1.$round.$r c0 c1
        c0=$(awk '{print $14+$15}' "/proc/$3/stat")
        taskset -c 0 h2load --h1 -t1 -c50 --rps="$RPS" -D "$SECS" --log-file="$log" "http://127.0.0.1:$2/" > "$log.out" 2>&1
        c1=$(awk '{print $14+$15}' "/proc/$3/stat")
        echo "$1 round $round.$r: proxy cpu $(( (c1 - c0) / SECS ))%  $(pct "$log")"
    done
}
echo "fixed rate: 50 clients x $RPS req/s, ${SECS}s per measurement"
for round in $(seq "$ROUNDS"); do
    taskset -c 1 "$ENVOY" -c .run/envoy.yaml --concurrency 1 --disable-hot-restart --log-level error >"$OUT/envoy.log" 2>&1 &
    pid=$!; PIDS+=($pid)
    wait_http 18083 || { echo "envoy did not start" >&2; exit 1; }
    measure envoy 18083 $pid; kill $pid; wait $pid 2>/dev/null
    BACKEND_ADDR=127.0.0.1:18080 OURS_PORT=18295 OURS_TMP=$OUT OURS_STATUS_LISTEN=127.0.0.1:18297 SLUICE_PROXY=$PROXY \
        taskset -c 1 ./ours-sluice.sh >"$OUT/sluice.log" 2>&1 &
    pid=$!; PIDS+=($pid)
    wait_http 18295 || { echo "sluice did not start" >&2; exit 1; }
    measure sluice 18295 $pid; kill $pid; wait $pid 2>/dev/null
done
