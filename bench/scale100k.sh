#!/usr/bin/env bash
# 100,000 routes (tools/gen_scale_config.py: gRPC method paths, exact and wildcard hosts, prefix
# and regex paths over 1,000 services) pushed to a running sluice-proxy under a steady gRPC load:
#   - push-to-live: POST /config until a gRPC call routed by the table's last gRPC service answers
#     with the backend's body (no-route answers are trailers-only, without a body);
#   - proxy RSS after the push;
#   - p50/p99/max latency of an open-loop gRPC load (h2load --rps, RATE calls/s) in phases of SECS
#     seconds: idle (10-route config), during the 10 -> 100k swap, during a 100k -> 100k re-push,
#     and during two hostile pushes at once (YAML nested deeper than the parser allows, and a
#     HUGE_MIB MiB body);
#   - callgrind instructions per gRPC call routed by that last service, 10-route vs 100k-route
#     config (callgrind.sh with LOAD_HOST; CALLGRIND=0 skips it).
#
#   ./scale100k.sh    env: ROUTES=100000 SERVICES=1000 RATE=2000 SECS=6 HUGE_MIB=128
#                          CALLGRIND=1 N=5000 WARM=1000  SLUICE_PROXY (default ../target/release)
# Ports (loopback): backend 18101, proxy 18102, status 18103. Every process started is stopped by
# PID. Figures go to .run/scale100k/results.txt.
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
cd "$HERE"
ROUTES=${ROUTES:-100000}; SERVICES=${SERVICES:-1000}; RATE=${RATE:-2000}; SECS=${SECS:-6}
HUGE_MIB=${HUGE_MIB:-128}; CALLGRIND=${CALLGRIND:-1}
PROXY=${SLUICE_PROXY:-$HERE/../target/release/sluice-proxy}
BIN=backend/target/release
[ -x "$PROXY" ] && [ -x $BIN/bench-backend ] || { echo "build first: cargo build --release -p proxy; ./setup.sh" >&2; exit 1; }
OUT=$HERE/.run/scale100k; rm -rf "$OUT"; mkdir -p "$OUT"; chmod 700 "$OUT"
BPORT=18101; PPORT=18102; SPORT=18103
source "$HERE/lib.sh"
RESULTS=$OUT/results.txt; : > "$RESULTS"

BODY=$OUT/body.bin; $BIN/bench-check mkbody "$BODY" 100
LAST=$(python3 tools/gen_scale_config.py "$ROUTES" 127.0.0.1 $BPORT "$OUT/big.json" "$SERVICES")
python3 tools/gen_scale_config.py 10 127.0.0.1 $BPORT "$OUT/small.json" 1 >/dev/null
# Hostile pushes: YAML nested 100,000 deep (the parser refuses past its depth limit), and a body
# of HUGE_MIB MiB (one long YAML string: read in full, then refused as no valid config).
python3 -c 'import sys; n = 100000; sys.stdout.write("a: " + "[" * n + "]" * n + "\n")' > "$OUT/nested.yaml"
python3 -c "import sys; sys.stdout.write('_format_version: \"3.0\"\nx: ' + 'y' * ($HUGE_MIB << 20) + '\n')" > "$OUT/huge.yaml"

BACKEND_THREADS=1 $BIN/bench-backend 127.0.0.1:$BPORT 2>/dev/null & PIDS+=($!)
wait_port $BPORT || { echo "backend did not start" >&2; exit 1; }
KONG_PROXY_LISTEN="127.0.0.1:$PPORT http2" KONG_STATUS_LISTEN="127.0.0.1:$SPORT" \
SLUICE_ADMIN_SOCKET="$OUT/admin.sock" KONG_PROXY_ACCESS_LOG=off KONG_NGINX_WORKER_PROCESSES=1 \
    "$PROXY" >>"$OUT/proxy.log" 2>&1 &
PROXY_PID=$!; PIDS+=($PROXY_PID)
wait_port $PPORT || { echo "proxy did not start (see $OUT/proxy.log)" >&2; exit 1; }
for _ in $(seq 50); do [ -S "$OUT/admin.sock" ] && break; sleep 0.1; done

push() {  # file [tag] -> "http_code seconds"
    curl -sS --unix-socket "$OUT/admin.sock" -o "$OUT/push-${2:-x}.out" -w '%{http_code} %{time_total}' \
        --data-binary @"$1" http://localhost/config
}
routed() { grpc_reaches_backend $PPORT "$1" "$BODY"; }
# Open-loop gRPC load on grpc-0.example.com (in both configs) for SECS s; latency from its log.
load_start() {  # tag
    rm -f "$OUT/load-$1.log"
    grpc_h2load --rps="$(awk -v r="$RATE" 'BEGIN {printf "%.2f", r / 10}')" -D "$SECS" \
        -H ':authority: grpc-0.example.com' --log-file="$OUT/load-$1.log" \
        "http://127.0.0.1:$PPORT/bench.Echo/Echo" > "$OUT/load-$1.txt" 2>&1 &
    LOAD_PID=$!; PIDS+=($LOAD_PID)
    sleep 1
}
load_end() {  # tag what
    wait "$LOAD_PID"
    local lat ok
    lat=$(cut -f3 "$OUT/load-$1.log" | sort -n | awk '{a[NR] = $1} END {if (NR) printf "p50 %.2f ms, p99 %.2f ms, max %.2f ms over %d calls", a[int((NR + 1) / 2)] / 1000, a[int(NR * 0.99)] / 1000, a[NR] / 1000, NR}')
    P99[$1]=$(echo "$lat" | awk '{print $5}')
    ok=$(awk '/^status codes:/ {print $3}' "$OUT/load-$1.txt")
    say "latency at $RATE gRPC calls/s, $2: $lat (${ok:-?} 2xx)"
}

declare -A P99
say "sluice 100k-route figures ($(date -u '+%F %H:%M UTC'), $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)); timings are wall clock on a shared machine"
say "config: $ROUTES routes over $SERVICES services, $(( $(stat -c %s "$OUT/big.json") / 1024 )) KiB JSON; measured route host $LAST"
read -r code _ < <(push "$OUT/small.json" small)
until routed grpc-0.example.com; do sleep 0.01; done
say "RSS with 10 routes: $(mib "$(kib $PROXY_PID VmRSS)") MiB"

load_start idle; load_end idle "idle (10 routes)"

load_start swap
t0=$(now_ms)
push "$OUT/big.json" big > "$OUT/push-big.code" &
push_pid=$!
until routed "$LAST"; do sleep 0.002; [ $(( $(now_ms) - t0 )) -gt 60000 ] && break; done
t1=$(now_ms)
wait $push_pid; read -r code secs < "$OUT/push-big.code"
LIVE_MS=$((t1 - t0))
say "push-to-live, 10 -> $ROUTES routes: $((t1 - t0)) ms (POST /config answered HTTP $code after ${secs}s)"
load_end swap "during the 10 -> $ROUTES swap"
RSS_MIB=$(mib "$(kib $PROXY_PID VmRSS)")
say "RSS with $ROUTES routes: $(mib "$(kib $PROXY_PID VmRSS)") MiB (peak so far $(mib "$(kib $PROXY_PID VmHWM)") MiB)"

load_start repush
t0=$(now_ms); read -r code secs < <(push "$OUT/big.json" big2); t1=$(now_ms)
say "re-push of the same $ROUTES routes: HTTP $code after $((t1 - t0)) ms"
load_end repush "during a $ROUTES -> $ROUTES re-push"

load_start hostile
push "$OUT/nested.yaml" nested > "$OUT/push-nested.code" & p1=$!
push "$OUT/huge.yaml" huge > "$OUT/push-huge.code" & p2=$!
wait $p1 $p2
say "hostile pushes: nested YAML -> HTTP $(cut -d' ' -f1 "$OUT/push-nested.code") in $(cut -d' ' -f2 "$OUT/push-nested.code")s, $HUGE_MIB MiB body -> HTTP $(cut -d' ' -f1 "$OUT/push-huge.code") in $(cut -d' ' -f2 "$OUT/push-huge.code")s"
load_end hostile "during two hostile pushes"
routed "$LAST" || say "ERROR: the $ROUTES-route config is not live after the hostile pushes"
say "RSS after the hostile pushes: $(mib "$(kib $PROXY_PID VmRSS)") MiB (peak $(mib "$(kib $PROXY_PID VmHWM)") MiB)"
stop_pid "$PROXY_PID"

if [ "$CALLGRIND" = 1 ]; then
    # callgrind.sh's backend listens on 18090: the same configs pointed there.
    python3 tools/gen_scale_config.py "$ROUTES" 127.0.0.1 18090 "$OUT/cg-big.json" "$SERVICES" >/dev/null
    python3 tools/gen_scale_config.py 10 127.0.0.1 18090 "$OUT/cg-small.json" 1 >/dev/null
    for c in small big; do
        host=grpc-0.example.com; [ $c = big ] && host=$LAST
        OURS_CONFIG=$OUT/cg-$c.json LOAD_HOST=$host READY_TRIES=3000 TAG=routes-$c OUT=$OUT/callgrind SLUICE_PROXY=$PROXY \
            N=${N:-5000} WARM=${WARM:-1000} ./callgrind.sh grpc | tail -1 | tee "$OUT/callgrind-$c.txt"
    done
    small=$(awk '{print $3}' "$OUT/callgrind-small.txt"); big=$(awk '{print $3}' "$OUT/callgrind-big.txt")
    CG_RATIO=$(awk -v a="$big" -v b="$small" 'BEGIN {printf "%.3f", a / b}')
    say "callgrind, gRPC unary routed by the last service: 10 routes $small, $ROUTES routes $big instructions per call ($(awk -v a="$big" -v b="$small" 'BEGIN {printf "%.3f", a / b}')x)"
fi

# The targets, each met or not, and the results note with the command.
check() {  # label value op limit unit
    local ok; ok=$(awk -v v="$2" -v l="$4" -v op="$3" 'BEGIN {print (v !~ /^-?[0-9.]+$/ ? "not measured" : ((op == "<" ? v < l : v <= l) ? "met" : "MISSED"))}')
    say "target: $1 $3 $4$5: ${2:-?}$5, $ok"
}
say ""
check "push-to-live" "${LIVE_MS:-}" "<" 1000 " ms"
check "RSS with $ROUTES routes" "${RSS_MIB:-}" "<" 200 " MiB"
check "lookup vs 10 routes (callgrind)" "${CG_RATIO:-}" "<=" 1.2 "x"
idle=${P99[idle]:-}
for phase in swap repush hostile; do
    check "p99 during $phase vs idle" "$(awk -v a="${P99[$phase]:-}" -v b="$idle" 'BEGIN {if (a != "" && b > 0) printf "%.2f", a / b}')" "<=" 2 "x"
done
for phase in swap repush; do
    check "p99 spike during $phase (p99 - idle p99)" "$(awk -v a="${P99[$phase]:-}" -v b="$idle" 'BEGIN {if (a != "") printf "%.2f", a - b}')" "<=" 5 " ms"
done
MD=$HERE/results/${RESULTS_MD:-results-$(date -u +%F)-scale.md}
{
    echo "# 100,000 routes: push-to-live, RSS, lookup cost, latency during swaps and hostile pushes"
    echo
    echo "Command: \`make bench-scale\` (= \`cargo build --release -p proxy\`, \`bench/setup.sh\`,"
    echo "\`ROUTES=$ROUTES SERVICES=$SERVICES RATE=$RATE SECS=$SECS HUGE_MIB=$HUGE_MIB bench/scale100k.sh\`)."
    echo "Proxy: \`$(basename "$PROXY")\`, one worker. Latency and push times are wall clock on a machine"
    echo "shared with other builds: compare the phases of one run side by side; RSS and callgrind counts"
    echo "do not depend on load."
    echo
    echo '```'
    cat "$RESULTS"
    echo '```'
} > "$MD"
echo "wrote $RESULTS and $MD"
