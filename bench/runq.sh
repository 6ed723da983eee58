#!/usr/bin/env bash
# Where the closed-loop HTTP/1.1 tail comes from: run.sh's http1 test (wrk -t1 -c50, backend and
# wrk on core 0, proxy on core 1) with how long wrk, the backend and the proxy sat runnable but
# not running (/proc/PID/task/*/schedstat, field 2: run-queue wait), and the VM's steal time.
#
#   ./runq.sh [ROUNDS] [TARGET...]     default: 2 rounds of nginx envoy sluice
#                                      env: SECS=5  SLUICE_PROXY (default ../target/release/sluice-proxy)
# Needs ./setup.sh and one run.sh run with nginx and envoy before (for .run/nginx.conf and
# .run/envoy.yaml). Ports: backend 18080, nginx 18082 and Envoy 18083 (from those files), sluice
# 18295. Stops what it starts, by PID.
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
cd "$HERE"
ROUNDS=${1:-2}; shift || true
[ $# -gt 0 ] || set -- nginx envoy sluice
SECS=${SECS:-5}
PROXY=${SLUICE_PROXY:-$HERE/../target/release/sluice-proxy}
ENVOY=${ENVOY:-$(ls .venv/lib/python3*/site-packages/envoy/_bin/envoy 2>/dev/null | head -1)}
OUT=$HERE/.run/runq; rm -rf "$OUT"; mkdir -p "$OUT"
PIDS=()
trap 'for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done' EXIT
taskset -c 0 backend/target/release/bench-backend 127.0.0.1:18080 2>/dev/null & BACKEND=$!; PIDS+=($BACKEND)
wait_http() { for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$1/" && return 0; sleep 0.1; done; return 1; }
waited_ns() { awk '{s += $2} END {printf "%.0f\n", s}' /proc/"$1"/task/*/schedstat 2>/dev/null; }  # run-queue wait, all threads
steal() { awk '$1 == "cpu0" || $1 == "cpu1" {s += $9} END {print s}' /proc/stat; }
for round in $(seq "$ROUNDS"); do
    for t in "$@"; do
        case $t in
            nginx) [ -s .run/nginx.conf ] || { echo "no .run/nginx.conf: run ./run.sh nginx once" >&2; exit 1; }
                   taskset -c 1 nginx -p "$HERE/.run" -c "$HERE/.run/nginx.conf" -e "$OUT/nginx-error.log" 2>/dev/null &
                   pid=$!; port=18082 ;;
            envoy) [ -x "$ENVOY" ] && [ -s .run/envoy.yaml ] || { echo "no Envoy or .run/envoy.yaml: ./setup.sh, ./run.sh envoy" >&2; exit 1; }
                   taskset -c 1 "$ENVOY" -c .run/envoy.yaml --concurrency 1 --disable-hot-restart --log-level error >"$OUT/envoy.log" 2>&1 &
                   pid=$!; port=18083 ;;
            sluice) BACKEND_ADDR=127.0.0.1:18080 OURS_PORT=18295 OURS_TMP=$OUT OURS_STATUS_LISTEN=127.0.0.1:18297 SLUICE_PROXY=$PROXY \
                        taskset -c 1 ./ours-sluice.sh >"$OUT/sluice.log" 2>&1 &
                    pid=$!; port=18295 ;;
            *) echo "unknown target $t (nginx envoy sluice)" >&2; exit 2 ;;
        esac
        PIDS+=($pid)
        wait_http $port || { echo "$t did not start" >&2; exit 1; }
        taskset -c 0 wrk -t1 -c50 -d2s "http://127.0.0.1:$port/" >/dev/null 2>&1
        b0=$(waited_ns $BACKEND); p0=$(waited_ns $pid); s0=$(steal)
        taskset -c 0 wrk -t1 -c50 -d"${SECS}s" --latency "http://127.0.0.1:$port/" > "$OUT/wrk.txt" 2>&1 &
        w=$!
        # wrk's own counter: read once it runs, and again just before it ends (it exits after SECS).
        for _ in $(seq 50); do [ -r /proc/$w/schedstat ] && break; sleep 0.01; done
        w0=$(waited_ns $w); t0=$(date +%s%N)
        sleep "$(awk -v s="$SECS" 'BEGIN {print s - 0.3}')"
        w1=$(waited_ns $w); t1=$(date +%s%N)
        wait $w
        b1=$(waited_ns $BACKEND); p1=$(waited_ns $pid); s1=$(steal)
        awk -v t="$t" -v r="$round" -v s="$SECS" -v w=$((w1 - w0)) -v wt=$((t1 - t0)) -v b=$((b1 - b0)) -v p=$((p1 - p0)) -v st=$((s1 - s0)) '
            /^Requests\/sec:/ {rps = $2} $1 == "50%" {p50 = $2} $1 == "99%" {p99 = $2}
            END {printf "%-7s r%s  %6.0f req/s  p50 %-9s p99 %-9s  waiting for a core, ms per s: wrk %3.0f  backend %3.0f  proxy %3.0f  steal %d ticks\n",
                 t, r, rps, p50, p99, w / wt * 1000, b / s / 1e6, p / s / 1e6, st}' "$OUT/wrk.txt"
        kill $pid; wait $pid 2>/dev/null
    done
done
