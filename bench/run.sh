#!/usr/bin/env bash
# Side-by-side proxy benchmark on loopback. See README.md.
#
#   ./run.sh [-r RUNS] TARGET...   TARGET: direct nginx envoy haproxy sluice sluice-ctl
#                                  sluice-nometrics sluice-nopgo sluice-plugins sluice-grpcweb sluice-json ours | all (= direct
#                                  nginx envoy haproxy sluice sluice-ctl) | metrics (= sluice sluice-nometrics)
#                                  | plugins (= sluice sluice-plugins) | grpcweb (= envoy sluice-grpcweb, with
#                                  TESTS="grpc grpc-web grpc-web-h1": gRPC-Web unary over h2c and HTTP/1.1
#                                  TESTS=idle: memory per idle h2c / TLS connection (idle.sh; IDLE_N=20000)
#                                  against plain gRPC in the same run; sluice: the grpc-web plugin,
#                                  Envoy: its grpc_web filter) | otel (= sluice sluice-otel
#                                  sluice-otel-full: opentelemetry at sampling 0.01 and 1, exporting to
#                                  sluice-otlp-sink, SLUICE_OTLP_SINK default ../target/release/sluice-otlp-sink)
#                                  | sluice-auth envoy-auth | auth (= sluice sluice-auth envoy envoy-auth)
# Env knobs (defaults):  PIN=1  GRPC_N=200000  HTTP_SECS=10  STREAM_N=5000  STREAM_MSGS=100
#   HS_SECS=5  HS_CLIENTS=4  TESTS="grpc http1 grpc-tls grpc-stream tls-hs json"  TLS=1
#   (json: only on sluice-json, grpc-gateway's JSON call POST /v1/echo transcoded to bench.Echo/Echo)
#   FIXED=1 FIXED_PCT=50 FIXED_SECS=5: then latency at equal load (see "equal load" below)
#   sluice*: SLUICE_PROXY (default: ../target/pgo/release/sluice-proxy, `make release`: the PGO build
#          as shipped), SLUICE_PROXY_NOPGO (sluice-nopgo; default ../target/release/sluice-proxy),
#          SLUICE_CONTROLLER (default ../target/release/sluice-controller); copied to .run/bin
#   ours:  OURS_CMD="path/to/proxy --flags" OURS_NAME=label (started with exec, pinned like the peers;
#          gets BACKEND_ADDR, OURS_PORT, OURS_TLS_PORT, TLS_CERT, TLS_KEY in its env)
# Every process this script starts is stopped by PID on exit; all traffic is 127.0.0.1.
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
cd "$HERE"

usage() { sed -n '2,13p' "$0" >&2; exit 2; }
RUNS=3
while getopts "r:h" o; do case $o in r) RUNS=$OPTARG ;; *) usage ;; esac; done
shift $((OPTIND - 1))
[ $# -gt 0 ] || usage
TARGETS=()
for t in "$@"; do
    case $t in
        all) TARGETS+=(direct nginx envoy haproxy sluice sluice-ctl); [ -n "${OURS_CMD:-}" ] && TARGETS+=(ours) ;;
        metrics) TARGETS+=(sluice sluice-nometrics) ;;
        plugins) TARGETS+=(sluice sluice-plugins) ;;
        otel) TARGETS+=(sluice sluice-otel sluice-otel-full) ;;
        grpcweb) TARGETS+=(envoy sluice-grpcweb) ;;
        auth) TARGETS+=(sluice sluice-auth envoy envoy-auth) ;;
        direct|nginx|envoy|envoy-auth|haproxy|ours|sluice|sluice-ctl|sluice-nometrics|sluice-nopgo|sluice-plugins|sluice-otel|sluice-otel-full|sluice-grpcweb|sluice-json|sluice-auth) TARGETS+=("$t") ;;
        *) echo "unknown target $t" >&2; usage ;;
    esac
done

PIN=${PIN:-1}
GRPC_N=${GRPC_N:-200000}; GRPC_C=10; GRPC_M=5          # 10 conns x 5 streams = 50 in flight
HTTP_SECS=${HTTP_SECS:-10}; HTTP_C=50
STREAM_N=${STREAM_N:-5000}; STREAM_MSGS=${STREAM_MSGS:-100}; export STREAM_MSGS
HS_SECS=${HS_SECS:-5}; HS_CLIENTS=${HS_CLIENTS:-4}
FIXED=${FIXED:-1}; FIXED_PCT=${FIXED_PCT:-50}; FIXED_SECS=${FIXED_SECS:-5}
TESTS=${TESTS:-grpc http1 grpc-tls grpc-stream tls-hs json}
has_test() { case " $TESTS " in *" $1 "*) return 0 ;; esac; return 1; }
TLS=${TLS:-1}
BACKEND_HOST=127.0.0.1; BACKEND_PORT=18080; BACKEND_ADDR=$BACKEND_HOST:$BACKEND_PORT
NGINX_H2C_PORT=18081; NGINX_HTTP_PORT=18082; NGINX_TLS_PORT=18443
ENVOY_PORT=18083; ENVOY_TLS_PORT=18444; ENVOY_ADMIN_PORT=19901
HAPROXY_PORT=18084; HAPROXY_TLS_PORT=18445
MAXCONN=8192  # nginx worker_connections, HAProxy maxconn; the idle test raises it (idle.sh)
OURS_PORT=${OURS_PORT:-18085}; OURS_TLS_PORT=${OURS_TLS_PORT:-}
SLUICE_PORT=18085; SLUICE_TLS_PORT=18446
export BACKEND_ADDR OURS_PORT OURS_TLS_PORT OURS_TMP=$HERE/.run
# Every gRPC call carries this API key (metadata `apikey`); only the *-auth targets check it.
# AUTH_PLUGINS: the plugins of sluice-auth on the gRPC route (envoy-auth: RBAC key check + local_ratelimit).
export BENCH_APIKEY=${BENCH_APIKEY:-bench-key-0123456789}
AUTH_PLUGINS=${AUTH_PLUGINS:-key-auth,rate-limiting}

if [ "$PIN" = 1 ]; then PROXY_CPU=(taskset -c 1); SIDE_CPU=(taskset -c 0)
else PROXY_CPU=(); SIDE_CPU=(); fi

RUN=$HERE/.run
# Start clean, but keep what callgrind.sh and scale.sh left in .run/.
mkdir -p "$RUN"
find "$RUN" -mindepth 1 -maxdepth 1 ! -name callgrind ! -name scale -exec rm -rf {} +
mkdir -p "$RUN/tls" "$RUN/nginx-tmp"
RAW=$RUN/raw.tsv
printf 'target\tround\ttest\trps\tmean_us\tp50_us\tp99_us\terrors\tproxy_cpu_pct\tproxy_cpu_us_per_req\tcpu0_busy_pct\tcpu1_busy_pct\tbg_before\tothers_pct\tproxy_sys_pct\n' > "$RAW"
HWM=$RUN/hwm.tsv; printf 'target\tround\tpeak_rss_kb\n' > "$HWM"
BIN=backend/target/release
ENVOY=${ENVOY:-$(ls .venv/lib/python3*/site-packages/envoy/_bin/envoy 2>/dev/null | head -1)}
BODY=$RUN/body.bin
JSON_BODY=$RUN/body.json
export TLS_CERT=$RUN/tls/cert.pem TLS_KEY=$RUN/tls/key.pem

[ -x $BIN/bench-backend ] || { echo "build first: ./setup.sh" >&2; exit 1; }
source "$HERE/lib.sh"
# Our binaries are copied so a rebuild during the run cannot change what is measured.
mkdir -p "$RUN/bin"
SLUICE_PROXY=${SLUICE_PROXY:-$HERE/../target/pgo/release/sluice-proxy}
SLUICE_PROXY_NOPGO=${SLUICE_PROXY_NOPGO:-$HERE/../target/release/sluice-proxy}
SLUICE_CONTROLLER=${SLUICE_CONTROLLER:-$HERE/../target/release/sluice-controller}
# Copies of an earlier run are removed first: a missing binary must fail its target, not run an old one.
rm -f "$RUN/bin/sluice-proxy" "$RUN/bin/sluice-proxy-nopgo" "$RUN/bin/sluice-controller"
[ -x "$SLUICE_PROXY" ] && cp "$SLUICE_PROXY" "$RUN/bin/sluice-proxy"
[ -x "$SLUICE_PROXY_NOPGO" ] && cp "$SLUICE_PROXY_NOPGO" "$RUN/bin/sluice-proxy-nopgo"
[ -x "$SLUICE_CONTROLLER" ] && cp "$SLUICE_CONTROLLER" "$RUN/bin/sluice-controller"
export SLUICE_PROXY=$RUN/bin/sluice-proxy SLUICE_PROXY_NOPGO=$RUN/bin/sluice-proxy-nopgo
export SLUICE_CONTROLLER=$RUN/bin/sluice-controller
$BIN/bench-check mkbody "$BODY" 100
# The same message as JSON (grpc-gateway's proto3 mapping: bytes as base64), for the json test.
python3 -c 'import base64; print("{\"payload\":\"%s\"}" % base64.b64encode(bytes(97 + i % 26 for i in range(98))).decode(), end="")' > "$JSON_BODY"
self_signed_cert "$TLS_KEY" "$TLS_CERT"
cat "$TLS_CERT" "$TLS_KEY" > "$RUN/tls/combined.pem"

# The OTLP/HTTP receiver of the sluice-otel targets (started once, on the side CPU): the spans
# must really be received and decoded during the run, as with a collector.
SLUICE_OTLP_SINK=${SLUICE_OTLP_SINK:-$HERE/../target/release/sluice-otlp-sink}
OTLP_SINK_PORT=18110; OTLP_SINK_PID=""
otlp_sink() {
    [ -n "$OTLP_SINK_PID" ] && return 0
    [ -x "$SLUICE_OTLP_SINK" ] || { echo "no sluice-otlp-sink (cargo build --release -p sluice-demo --bin sluice-otlp-sink)" >&2; return 1; }
    "${SIDE_CPU[@]}" "$SLUICE_OTLP_SINK" --quiet --listen 127.0.0.1:$OTLP_SINK_PORT >"$RUN/otlp-sink.log" 2>&1 &
    OTLP_SINK_PID=$!; PIDS+=("$OTLP_SINK_PID")
    wait_port $OTLP_SINK_PORT
}

tree_pids() { echo "$1"; ps -o pid= --ppid "$1" 2>/dev/null | tr -d ' '; }
cpu_ticks() {  # "total sys": utime+stime and stime of the process and its children, in clock ticks
    local p t=0 k=0 u v
    [ -n "$1" ] || { echo 0 0; return; }
    for p in $(tree_pids "$1"); do
        read -r u v < <(sed 's/.*) //' "/proc/$p/stat" 2>/dev/null | awk '{print $12 + $13, $13}')
        t=$((t + ${u:-0})); k=$((k + ${v:-0}))
    done
    echo $t $k
}
peak_rss_kb() {  # VmHWM summed over the process and its children
    local p t=0 v
    for p in $(tree_pids "$1"); do
        v=$(awk '/^VmHWM/ {print $2}' "/proc/$p/status" 2>/dev/null)
        t=$((t + ${v:-0}))
    done
    echo $t
}
cpu_snap() {  # "busy0 total0 busy1 total1" jiffies from /proc/stat
    awk '$1 == "cpu0" || $1 == "cpu1" { t = 0; for (i = 2; i <= NF; i++) t += $i; printf "%d %d ", t - $5 - $6, t }' /proc/stat
}
busy_pct() {  # before-snapshot after-snapshot -> "pct0 pct1"
    awk -v a="$1" -v b="$2" 'BEGIN { split(a, x, " "); split(b, y, " ");
        printf "%.0f %.0f", 100 * (y[1] - x[1]) / (y[2] - x[2]), 100 * (y[3] - x[3]) / (y[4] - x[4]) }'
}
QUIET_PCT=${QUIET_PCT:-10}; QUIET_WAIT=${QUIET_WAIT:-90}
wait_quiet() {  # other tenants share this machine: wait (bounded) for both cores < QUIET_PCT% busy over 1 s
    local i a b busy
    for i in $(seq "$QUIET_WAIT"); do
        a=$(cpu_snap); sleep 1; b=$(cpu_snap); busy=$(busy_pct "$a" "$b")
        [ "${busy% *}" -lt "$QUIET_PCT" ] && [ "${busy#* }" -lt "$QUIET_PCT" ] && { BG="$busy"; return 0; }
    done
    BG="$busy"; echo "  (machine not quiet after ${QUIET_WAIT}s: background busy cpu0/1 ${busy/ //}%; measuring anyway)"
}
render() {  # template -> file, filling @VARS@
    sed -e "s|@RUN@|$RUN|g" -e "s|@BACKEND@|$BACKEND_ADDR|g" \
        -e "s|@BACKEND_HOST@|$BACKEND_HOST|g" -e "s|@BACKEND_PORT@|$BACKEND_PORT|g" \
        -e "s|@NGINX_H2C_PORT@|$NGINX_H2C_PORT|g" -e "s|@NGINX_HTTP_PORT@|$NGINX_HTTP_PORT|g" \
        -e "s|@NGINX_TLS_PORT@|$NGINX_TLS_PORT|g" -e "s|@ENVOY_PORT@|$ENVOY_PORT|g" \
        -e "s|@ENVOY_TLS_PORT@|$ENVOY_TLS_PORT|g" -e "s|@ENVOY_ADMIN_PORT@|$ENVOY_ADMIN_PORT|g" \
        -e "s|@HAPROXY_PORT@|$HAPROXY_PORT|g" -e "s|@HAPROXY_TLS_PORT@|$HAPROXY_TLS_PORT|g" \
        -e "s|@BENCH_APIKEY@|$BENCH_APIKEY|g" -e "s|@MAXCONN@|$MAXCONN|g" \
        "conf/$1.in" > "$RUN/$1"
}

# Sets PROXY_PID, GRPC_ADDR, HTTP_ADDR, TLS_ADDR (empty: no TLS test) for a target.
start_target() {
    PROXY_PID=""; TLS_ADDR=""
    case $1 in
        direct)
            GRPC_ADDR=$BACKEND_ADDR; HTTP_ADDR=$BACKEND_ADDR; return 0 ;;
        nginx)
            render nginx.conf
            "${PROXY_CPU[@]}" nginx -p "$RUN" -c "$RUN/nginx.conf" -e "$RUN/nginx-error.log" 2>>"$RUN/nginx.stderr" &
            PROXY_PID=$!
            GRPC_ADDR=127.0.0.1:$NGINX_H2C_PORT; HTTP_ADDR=127.0.0.1:$NGINX_HTTP_PORT; TLS_ADDR=127.0.0.1:$NGINX_TLS_PORT ;;
        envoy|envoy-auth)
            [ -x "$ENVOY" ] || { echo "envoy binary missing (./setup.sh)" >&2; return 1; }
            local conf=envoy.yaml
            [ "$1" = envoy-auth ] && conf=envoy-auth.yaml
            render "$conf"
            "${PROXY_CPU[@]}" "$ENVOY" -c "$RUN/$conf" --concurrency 1 --disable-hot-restart \
                --log-level warn --log-path "$RUN/envoy.log" 2>>"$RUN/envoy.stderr" &
            PROXY_PID=$!
            GRPC_ADDR=127.0.0.1:$ENVOY_PORT; HTTP_ADDR=$GRPC_ADDR; TLS_ADDR=127.0.0.1:$ENVOY_TLS_PORT ;;
        haproxy)
            render haproxy.cfg
            "${PROXY_CPU[@]}" haproxy -db -f "$RUN/haproxy.cfg" >>"$RUN/haproxy.log" 2>&1 &
            PROXY_PID=$!
            GRPC_ADDR=127.0.0.1:$HAPROXY_PORT; HTTP_ADDR=$GRPC_ADDR; TLS_ADDR=127.0.0.1:$HAPROXY_TLS_PORT ;;
        sluice|sluice-nometrics|sluice-ctl|sluice-nopgo|sluice-plugins|sluice-otel|sluice-otel-full|sluice-grpcweb|sluice-json|sluice-auth)
            local script=ours-sluice.sh metrics=on proxy=$SLUICE_PROXY plugins="" otel=""
            [ "$1" = sluice-plugins ] && plugins=cors,correlation-id
            [ "$1" = sluice-grpcweb ] && plugins=grpc-web
            [ "$1" = sluice-json ] && plugins=grpc-gateway
            [ "$1" = sluice-auth ] && plugins=$AUTH_PLUGINS
            [ "$1" = sluice-otel ] && otel=0.01
            [ "$1" = sluice-otel-full ] && otel=1
            if [ -n "$otel" ] && ! otlp_sink; then return 1; fi
            [ "$1" = sluice-ctl ] && script=ours-controller.sh
            [ "$1" = sluice-nometrics ] && metrics=off
            [ "$1" = sluice-nopgo ] && proxy=$SLUICE_PROXY_NOPGO
            [ -x "$proxy" ] || { echo "no sluice-proxy binary for $1 (make release; cargo build --release -p proxy)" >&2; return 1; }
            if [ "$1" = sluice-ctl ] && [ ! -x "$SLUICE_CONTROLLER" ]; then
                echo "no sluice-controller binary (cargo build --release -p controller)" >&2; return 1
            fi
            OURS_PORT=$SLUICE_PORT OURS_TLS_PORT=$SLUICE_TLS_PORT SLUICE_METRICS=$metrics SLUICE_PROXY=$proxy OURS_PLUGINS=$plugins \
                OURS_OTEL=$otel OURS_OTEL_ENDPOINT=http://127.0.0.1:$OTLP_SINK_PORT/v1/traces \
                "${PROXY_CPU[@]}" "$HERE/$script" >>"$RUN/$1.log" 2>&1 &
            PROXY_PID=$!
            GRPC_ADDR=127.0.0.1:$SLUICE_PORT; HTTP_ADDR=$GRPC_ADDR; TLS_ADDR=127.0.0.1:$SLUICE_TLS_PORT ;;
        ours)
            [ -n "${OURS_CMD:-}" ] || { echo "set OURS_CMD" >&2; return 1; }
            "${PROXY_CPU[@]}" bash -c "exec $OURS_CMD" >>"$RUN/ours.log" 2>&1 &
            PROXY_PID=$!
            GRPC_ADDR=127.0.0.1:$OURS_PORT; HTTP_ADDR=$GRPC_ADDR
            [ -n "$OURS_TLS_PORT" ] && TLS_ADDR=127.0.0.1:$OURS_TLS_PORT ;;
    esac
    PIDS+=("$PROXY_PID")
    wait_port "${GRPC_ADDR#*:}" && wait_port "${HTTP_ADDR#*:}" || return 1
    [ -z "$TLS_ADDR" ] || wait_port "${TLS_ADDR#*:}" || return 1
    # Listening is not routing: wait (up to 20 s) until a call goes through, e.g. until the
    # controller has pushed its config.
    local i
    for i in $(seq 100); do
        $BIN/bench-check grpc "$GRPC_ADDR" 1 >/dev/null 2>&1 && break
        sleep 0.2
    done
    sleep 0.3
}

to_us() {  # "1.23ms" / "456.00us" / "1.2s" -> microseconds
    awk -v x="$1" 'BEGIN { v = x + 0; if (x ~ /us$/) f = 1; else if (x ~ /ms$/) f = 1000; else if (x ~ /s$/) f = 1000000; else f = 1; printf "%.0f", v * f }'
}
record() { local IFS=$'\t'; echo "$*" >> "$RAW"; }

TCK=$(getconf CLK_TCK)
FOREIGN_MAX=${FOREIGN_MAX:-10}; ATTEMPTS=${ATTEMPTS:-3}
task_jiffies() { awk '$1 == "cpu0" || $1 == "cpu1" { t += $2 + $3 + $4 } END { print t }' /proc/stat; }
child_ticks() { sed 's/.*) //' /proc/$$/stat | awk '{print $14 + $15}'; }  # reaped children of this shell
# measure CMD...: runs the load command; sets M_PROXY (proxy ticks), M_WALL (ns), M_BUSY ("c0 c1" %),
# M_FOREIGN (% of one core used by processes that are not ours: other tenants of this machine),
# M_SYS (% of the proxy's CPU time spent in the kernel)
measure() {
    local c0 c1 b0 b1 l0 l1 j0 j1 t0 t1 s0 s1 k0 k1
    read -r c0 k0 < <(cpu_ticks "$PROXY_PID"); read -r b0 _ < <(cpu_ticks "$BACKEND_PID"); l0=$(child_ticks)
    j0=$(task_jiffies); s0=$(cpu_snap); t0=$(date +%s%N)
    "$@"
    t1=$(date +%s%N); s1=$(cpu_snap); j1=$(task_jiffies)
    l1=$(child_ticks); read -r b1 _ < <(cpu_ticks "$BACKEND_PID"); read -r c1 k1 < <(cpu_ticks "$PROXY_PID")
    M_SYS=$(awk -v k=$((k1 - k0)) -v c=$((c1 - c0)) 'BEGIN { if (c > 0) printf "%.0f", 100 * k / c; else print "NA" }')
    M_PROXY=$((c1 - c0)); M_WALL=$((t1 - t0)); M_BUSY=$(busy_pct "$s0" "$s1")
    M_FOREIGN=$(awk -v j=$((j1 - j0 - (c1 - c0) - (b1 - b0) - (l1 - l0))) -v t="$TCK" -v w="$M_WALL" \
        'BEGIN { v = 100 * j / t / (w / 1e9); if (v < 0) v = 0; printf "%.0f", v }')
}
# run_clean CMD...: wait for a quiet machine, measure; redo (up to ATTEMPTS) if others used > FOREIGN_MAX%
run_clean() {
    local i
    for i in $(seq "$ATTEMPTS"); do
        wait_quiet
        measure "$@"
        [ "$M_FOREIGN" -le "$FOREIGN_MAX" ] && return 0
        echo "  (other processes used ${M_FOREIGN}% of a core during the test; attempt $i/$ATTEMPTS)"
    done
}

# gRPC load: 10 connections x 5 streams, one 105-byte gRPC frame per call.
GRPC_LOAD=(h2load -t 1 -c $GRPC_C -m $GRPC_M -d "$BODY" -H 'content-type: application/grpc' -H 'te: trailers'
           -H "apikey: $BENCH_APIKEY")
log_latency() {  # h2load --log-file -> "mean p50 p99" of the request times (us)
    cut -f3 "$1" | sort -n | awk '{a[NR] = $1; s += $1} END {if (NR) printf "%.0f %d %d\n", s / NR, a[int((NR + 1) / 2)], a[int(NR * 0.99)]; else print "NA NA NA"}'
}

# Unary calls via h2load: h2load_unary TARGET ROUND URL TEST LOAD... (LOAD: the h2load command line).
h2load_unary() {
    local target=$1 round=$2 url=$3 test=$4 out=$RUN/$1-$2-$4; shift 4
    local h2=("$@")
    timeout 60 "${SIDE_CPU[@]}" "${h2[@]}" -n 10000 "$url" > "$out.warm" 2>&1
    # h2load appends to a log file: removed in the measured command, which run_clean may redo.
    run_clean eval 'rm -f "$out.log"; timeout 300 "${SIDE_CPU[@]}" "${h2[@]}" -n "$GRPC_N" --log-file="$out.log" "$url" > "$out.txt" 2>&1'
    local rps ok s2xx mean p50 p99 err
    rps=$(awk '/^finished in/ {print $4}' "$out.txt" | tr -d ',')
    ok=$(awk '/^requests:/ {print $8}' "$out.txt")
    s2xx=$(awk '/^status codes:/ {print $3}' "$out.txt")
    read -r mean p50 p99 < <(log_latency "$out.log")
    err=$(( GRPC_N - ${ok:-0} + GRPC_N - ${s2xx:-0} ))
    rm -f "$out.log"
    emit "$target" "$round" "$test" "${rps:-0}" "$mean" "$p50" "$p99" "$err" "$GRPC_N"
}
# gRPC unary; $3 = scheme (http = h2c prior knowledge, https = TLS + ALPN h2)
bench_grpc() { h2load_unary "$1" "$2" "$3://$4/bench.Echo/Echo" "$5" "${GRPC_LOAD[@]}"; }

# grpc-gateway's transcoded unary call: the gRPC load's connections and streams, a JSON POST
# (the same 100-byte message as JSON) to /v1/echo over h2c, answered as JSON.
bench_json() {
    h2load_unary "$1" "$2" "http://$3/v1/echo" json \
        h2load -t 1 -c $GRPC_C -m $GRPC_M -d "$JSON_BODY" -H 'content-type: application/json'
}

# gRPC-Web unary (binary, the same 105-byte frame) via h2load over h2c or HTTP/1.1 ($3 = h2 | h1);
# only for targets that translate gRPC-Web (envoy's grpc_web filter, sluice-grpcweb's plugin).
grpc_web_target() { [ "$1" = envoy ] || [ "$1" = sluice-grpcweb ]; }
bench_grpc_web() {
    local web=(-d "$BODY" -H 'content-type: application/grpc-web+proto' -H 'x-grpc-web: 1')
    local load=(h2load -t 1 -c $GRPC_C -m $GRPC_M "${web[@]}")
    [ "$3" = h1 ] && load=(h2load --h1 -t 1 -c $HTTP_C "${web[@]}")
    h2load_unary "$1" "$2" "http://$4/bench.Echo/Echo" "$5" "${load[@]}"
}
# One gRPC-Web call by hand: its last frame must carry grpc-status 0 (else the target is skipped).
check_grpc_web() {
    curl -sS --max-time 10 --data-binary @"$BODY" -H 'content-type: application/grpc-web+proto' -H 'x-grpc-web: 1' \
        "http://$1/bench.Echo/Echo" | tr -d '\r' | grep -aqE 'grpc-status: ?0'
}

bench_http1() {
    local target=$1 round=$2 addr=$3 out=$RUN/$target-$round-http1
    local url=http://$addr/
    timeout 30 "${SIDE_CPU[@]}" wrk -t 1 -c $HTTP_C -d 2s "$url" > "$out.warm" 2>&1
    run_clean eval 'timeout $((HTTP_SECS + 30)) "${SIDE_CPU[@]}" wrk -t 1 -c $HTTP_C -d "${HTTP_SECS}s" --latency "$url" > "$out.txt" 2>&1'
    local rps mean p50 p99 n bad sock
    rps=$(awk '/^Requests\/sec:/ {printf "%.2f", $2}' "$out.txt")
    mean=$(to_us "$(awk '$1 == "Latency" {print $2; exit}' "$out.txt")")
    p50=$(to_us "$(awk '$1 == "50%" {print $2}' "$out.txt")")
    p99=$(to_us "$(awk '$1 == "99%" {print $2}' "$out.txt")")
    n=$(awk '/requests in/ {print $1}' "$out.txt")
    bad=$(awk '/Non-2xx/ {print $NF}' "$out.txt")
    sock=$(awk '/Socket errors/ {gsub(",", ""); print $4 + $6 + $8 + $10}' "$out.txt")
    emit "$target" "$round" http1 "${rps:-0}" "$mean" "$p50" "$p99" $(( ${bad:-0} + ${sock:-0} )) "${n:-0}"
}

# gRPC server-streaming: STREAM_N calls of STREAM_MSGS messages each; rate and CPU are per message.
bench_stream() {
    local target=$1 round=$2 addr=$3 out=$RUN/$1-$2-grpc-stream
    local url=http://$addr/bench.Echo/Stream
    local h2=("${GRPC_LOAD[@]}")
    timeout 60 "${SIDE_CPU[@]}" "${h2[@]}" -n $(( STREAM_N / 10 + 50 )) "$url" > "$out.warm" 2>&1
    run_clean eval 'rm -f "$out.log"; timeout 300 "${SIDE_CPU[@]}" "${h2[@]}" -n "$STREAM_N" --log-file="$out.log" "$url" > "$out.txt" 2>&1'
    local rps ok s2xx mean p50 p99 err
    rps=$(awk -v m="$STREAM_MSGS" '/^finished in/ {gsub(",", "", $4); printf "%.2f", $4 * m}' "$out.txt")
    ok=$(awk '/^requests:/ {print $8}' "$out.txt")
    s2xx=$(awk '/^status codes:/ {print $3}' "$out.txt")
    read -r mean p50 p99 < <(log_latency "$out.log")
    err=$(( STREAM_N - ${ok:-0} + STREAM_N - ${s2xx:-0} ))
    rm -f "$out.log"
    emit "$target" "$round" grpc-stream "${rps:-0}" "$mean" "$p50" "$p99" "$err" $(( STREAM_N * STREAM_MSGS ))
}

# New TLS handshakes: HS_CLIENTS parallel `openssl s_time -new` loops (full handshake per
# connection, no resumption) for HS_SECS; rate = handshakes / wall time, CPU per handshake.
hs_load() {  # out-prefix addr
    local i pids=()
    for i in $(seq "$HS_CLIENTS"); do
        timeout $((HS_SECS + 20)) "${SIDE_CPU[@]}" openssl s_time -connect "$2" -new -time "$HS_SECS" > "$1.$i.txt" 2>&1 &
        pids+=($!)
    done
    wait "${pids[@]}"
}
bench_hs() {
    local target=$1 round=$2 addr=$3 out=$RUN/$1-$2-tls-hs
    local HS_SECS_SAVED=$HS_SECS
    HS_SECS=1; hs_load "$out.warm" "$addr"; HS_SECS=$HS_SECS_SAVED
    run_clean hs_load "$out" "$addr"
    local n err rps
    n=$(cat "$out".[0-9]*.txt | awk '/connections in .* real seconds/ {s += $1} END {print s + 0}')
    err=$(cat "$out".[0-9]*.txt | grep -ci 'error' || true)
    rps=$(awk -v n="$n" -v w="$M_WALL" 'BEGIN {printf "%.2f", n / (w / 1e9)}')
    emit "$target" "$round" tls-hs "$rps" NA NA NA "${err:-0}" "$n"
}

# Equal load: TEST at RATE (requests/s; messages/s for grpc-stream) offered open loop (h2load
# --rps: each client sends on schedule, whatever the replies do), recorded as test "TEST-fixed".
bench_fixed() {  # target round test url rate
    local target=$1 round=$2 test=$3 url=$4 rate=$5 out=$RUN/$1-$2-$3-fixed
    local load clients=$GRPC_C unit=1
    case $test in
        http1) load=(h2load --h1 -t 1 -c $HTTP_C); clients=$HTTP_C ;;
        grpc-stream) load=("${GRPC_LOAD[@]}"); unit=$STREAM_MSGS ;;
        *) load=("${GRPC_LOAD[@]}") ;;
    esac
    local per; per=$(awk -v r="$rate" -v u="$unit" -v c="$clients" 'BEGIN {printf "%.2f", r / u / c}')
    timeout 30 "${SIDE_CPU[@]}" "${load[@]}" --rps="$per" -D 1 "$url" > "$out.warm" 2>&1
    run_clean eval 'rm -f "$out.log"; timeout $((FIXED_SECS + 30)) "${SIDE_CPU[@]}" "${load[@]}" --rps="$per" -D "$FIXED_SECS" --log-file="$out.log" "$url" > "$out.txt" 2>&1'
    # Errors: failed requests and replies other than 2xx. (Not done - 2xx: a reply whose status
    # arrived just before the end is counted in 2xx but not yet done.)
    local rps done err mean p50 p99
    rps=$(awk -v u="$unit" '/^finished in/ {gsub(",", "", $4); printf "%.2f", $4 * u}' "$out.txt")
    done=$(awk '/^requests:/ {print $6}' "$out.txt")
    err=$(awk '/^requests:/ {f = $10} /^status codes:/ {n = $5 + $7 + $9} END {print f + n}' "$out.txt")
    read -r mean p50 p99 < <(log_latency "$out.log")
    rm -f "$out.log"
    emit "$target" "$round" "$test-fixed" "${rps:-0}" "$mean" "$p50" "$p99" "${err:-0}" $(( ${done:-0} * unit ))
}
# The rate for TEST: FIXED_PCT% of the lowest median req/s (msg/s) among the proxies (not direct)
# in the closed-loop rounds of this run; 0 when TEST did not run.
fixed_rate() {
    python3 - "$RAW" "$1" "$FIXED_PCT" <<'PY'
import csv, statistics, sys
from collections import defaultdict
raw, test, pct = sys.argv[1], sys.argv[2], float(sys.argv[3])
rates = defaultdict(list)
for r in csv.DictReader(open(raw), delimiter="\t"):
    if r["test"] == test and r["target"] != "direct" and float(r["rps"] or 0) > 0:
        rates[r["target"]].append(float(r["rps"]))
print(round(min(statistics.median(v) for v in rates.values()) * pct / 100) if rates else 0)
PY
}

emit() {  # target round test rps mean p50 p99 errors requests   (+ M_* from measure)
    local cpu_pct=NA cpu_per=NA
    if [ -n "$PROXY_PID" ]; then
        cpu_pct=$(awk -v c="$M_PROXY" -v t="$TCK" -v w="$M_WALL" 'BEGIN {printf "%.0f", 100 * c / t / (w / 1e9)}')
        cpu_per=$(awk -v c="$M_PROXY" -v t="$TCK" -v n="$9" 'BEGIN {if (n > 0) printf "%.1f", c / t * 1e6 / n; else print "NA"}')
    fi
    record "$1" "$2" "$3" "$4" "$5" "$6" "$7" "$8" "$cpu_pct" "$cpu_per" ${M_BUSY% *} ${M_BUSY#* } "${BG/ //}" "$M_FOREIGN" "$M_SYS"
    printf '  %-8s r%s %-8s %9s req/s  mean %5s us  p50 %5s us  p99 %5s us  err %s  proxy %s%% %s us/req (%s%% sys)  busy cpu0/1 %s/%s%%  others %s%%\n' \
        "$1" "$2" "$3" "$4" "$5" "$6" "$7" "$8" "$cpu_pct" "$cpu_per" "$M_SYS" ${M_BUSY% *} ${M_BUSY#* } "$M_FOREIGN"
}

source "$HERE/idle.sh"

# --- main ------------------------------------------------------------------
"${SIDE_CPU[@]}" $BIN/bench-backend "$BACKEND_ADDR" 2>"$RUN/backend.log" &
BACKEND_PID=$!; PIDS+=("$BACKEND_PID")
wait_port $BACKEND_PORT || exit 1
echo "backend pid $BACKEND_PID: $(cat "$RUN/backend.log")   pinning: PIN=$PIN"
CHECKS=$RUN/checks.txt; : > "$CHECKS"

# Targets run in the given order in odd rounds and reversed in even ones: no target always follows
# the same neighbour or sits at the same point of a round, while the machine drifts within a run
# (RESULTS.md, s14-s15: the target right after HAProxy measured up to 15% slower than the same
# proxy binary two slots later).
round_targets() {
    if (( $1 % 2 )); then printf '%s\n' "${TARGETS[@]}"; else printf '%s\n' "${TARGETS[@]}" | tac; fi
}

json_check() {  # the transcoded call answers the JSON it was sent (the backend echoes the message)
    local got; got=$(curl -sS --http2-prior-knowledge -H 'content-type: application/json' --data-binary @"$JSON_BODY" "http://$1/v1/echo")
    [ "$got" = "$(cat "$JSON_BODY")" ] || { echo "json check: sent $(cat "$JSON_BODY"), got $got"; return 1; }
}

for round in $(seq "$RUNS"); do
    for target in $(round_targets "$round"); do
        echo "== $target round $round"
        if ! start_target "$target"; then
            echo "  $target: failed to start (see .run/)" | tee -a "$CHECKS"
            [ -n "$PROXY_PID" ] && stop_pid "$PROXY_PID"; continue
        fi
        # Correctness first: 200 echoed unary calls with grpc-status 0, 200 HTTP/1.1 GETs.
        if ! { $BIN/bench-check grpc "$GRPC_ADDR" 200 && $BIN/bench-check http1 "$HTTP_ADDR" 200 \
               && { ! has_test grpc-stream || $BIN/bench-check stream "$GRPC_ADDR" 20; } \
               && { ! grpc_web_target "$target" || ! { has_test grpc-web || has_test grpc-web-h1; } \
                    || check_grpc_web "$GRPC_ADDR"; } \
               && { [ "$target" != sluice-json ] || json_check "$GRPC_ADDR"; }; } >> "$CHECKS" 2>&1; then
            echo "  $target: CHECK FAILED, skipped (see .run/checks.txt)" | tee -a "$CHECKS"
            [ -n "$PROXY_PID" ] && stop_pid "$PROXY_PID"; continue
        fi
        if [ "$round" = 1 ]; then  # one call by hand with nghttp, frames shown
            { echo "--- $target: nghttp -nv (h2c) trailer lines"
              timeout 10 nghttp -nv -H 'content-type: application/grpc' -H 'te: trailers' -d "$BODY" \
                  "http://$GRPC_ADDR/bench.Echo/Echo" 2>&1 | grep -E 'recv \(stream_id=[0-9]+\) (:status|grpc-status|content-type)'
              if [ "$TLS" = 1 ] && [ -n "$TLS_ADDR" ]; then
                  echo "--- $target: nghttp -nv (TLS, ALPN h2) trailer lines"
                  timeout 10 nghttp -nv -H 'content-type: application/grpc' -H 'te: trailers' -d "$BODY" \
                      "https://$TLS_ADDR/bench.Echo/Echo" 2>&1 | grep -E 'recv \(stream_id=[0-9]+\) (:status|grpc-status)'
              fi; } >> "$CHECKS"
        fi
        name=$target; [ "$target" = ours ] && name=${OURS_NAME:-ours}
        has_test grpc && bench_grpc "$name" "$round" http "$GRPC_ADDR" grpc
        has_test http1 && bench_http1 "$name" "$round" "$HTTP_ADDR"
        if [ "$TLS" = 1 ] && [ -n "$TLS_ADDR" ]; then
            has_test grpc-tls && bench_grpc "$name" "$round" https "$TLS_ADDR" grpc-tls
        fi
        has_test grpc-stream && bench_stream "$name" "$round" "$GRPC_ADDR"
        if grpc_web_target "$target"; then
            has_test grpc-web && bench_grpc_web "$name" "$round" h2 "$GRPC_ADDR" grpc-web
            has_test grpc-web-h1 && bench_grpc_web "$name" "$round" h1 "$GRPC_ADDR" grpc-web-h1
        fi
        [ "$target" = sluice-json ] && has_test json && bench_json "$name" "$round" "$GRPC_ADDR"
        if [ "$TLS" = 1 ] && [ -n "$TLS_ADDR" ]; then
            has_test tls-hs && bench_hs "$name" "$round" "$TLS_ADDR"
        fi
        has_test idle && bench_idle "$name" "$round" "$GRPC_ADDR" "$([ "$TLS" = 1 ] && echo "$TLS_ADDR")"
        if [ -n "$PROXY_PID" ]; then
            printf '%s\t%s\t%s\n' "$name" "$round" "$(peak_rss_kb "$PROXY_PID")" >> "$HWM"
            stop_pid "$PROXY_PID"
        fi
    done
done

# --- equal load --------------------------------------------------------------------------------
# The rounds above are closed loop: each proxy runs as fast as it goes. A fast one keeps both cores
# busy, and then its p99 is mostly h2load/wrk and the backend waiting for each other on core 0
# (RESULTS.md, "Latency at equal load"). Here every target gets the same offered rate per test,
# FIXED_PCT% of what the slowest proxy managed above, so latency is compared at equal load.
if [ "$FIXED" = 1 ]; then
    FIXED_TESTS=(); FIXED_RATES=(); : > "$RUN/fixed-rates.tsv"
    for t in grpc http1 grpc-tls grpc-stream; do
        has_test "$t" || continue
        r=$(fixed_rate "$t"); [ "${r:-0}" -gt 0 ] || continue
        FIXED_TESTS+=("$t"); FIXED_RATES+=("$r"); printf '%s\t%s\n' "$t" "$r" >> "$RUN/fixed-rates.tsv"
    done
    [ ${#FIXED_TESTS[@]} -gt 0 ] && echo "== equal load: ${FIXED_TESTS[*]} at ${FIXED_RATES[*]} /s (${FIXED_PCT}% of the slowest proxy)"
    for round in $(seq "$RUNS"); do
        [ ${#FIXED_TESTS[@]} -gt 0 ] || break
        for target in $(round_targets "$round"); do
            echo "== $target round $round, equal load"
            if ! start_target "$target"; then
                echo "  $target: failed to start (see .run/)" | tee -a "$CHECKS"
                [ -n "$PROXY_PID" ] && stop_pid "$PROXY_PID"; continue
            fi
            name=$target; [ "$target" = ours ] && name=${OURS_NAME:-ours}
            for i in "${!FIXED_TESTS[@]}"; do
                t=${FIXED_TESTS[$i]}
                case $t in
                    grpc) bench_fixed "$name" "$round" grpc "http://$GRPC_ADDR/bench.Echo/Echo" "${FIXED_RATES[$i]}" ;;
                    http1) bench_fixed "$name" "$round" http1 "http://$HTTP_ADDR/" "${FIXED_RATES[$i]}" ;;
                    grpc-tls) [ "$TLS" = 1 ] && [ -n "$TLS_ADDR" ] && \
                        bench_fixed "$name" "$round" grpc-tls "https://$TLS_ADDR/bench.Echo/Echo" "${FIXED_RATES[$i]}" ;;
                    grpc-stream) bench_fixed "$name" "$round" grpc-stream "http://$GRPC_ADDR/bench.Echo/Stream" "${FIXED_RATES[$i]}" ;;
                esac
            done
            [ -n "$PROXY_PID" ] && stop_pid "$PROXY_PID"
        done
    done
fi

stop_pid "$BACKEND_PID"
{
    echo "h2load: $(h2load --version | head -1)"; echo "wrk: $(wrk -v 2>&1 | head -1)"
    echo "nginx: $(nginx -v 2>&1)"; echo "haproxy: $(haproxy -v | head -1)"
    [ -x "$ENVOY" ] && echo "envoy: $("$ENVOY" --version | grep -o 'version: .*')"
    echo "kernel: $(uname -r)"; echo "cpu: $(lscpu | sed -n 's/^Model name: *//p') x $(nproc)"
    echo "rustc: $(rustc --version 2>/dev/null)"
    echo "openssl: $(openssl version)"
    echo "sluice: $(cd "$HERE/.." && git rev-parse --short HEAD 2>/dev/null) (working tree$(cd "$HERE/.." && git diff --quiet HEAD -- proxy controller proxy-config 2>/dev/null || echo ' with uncommitted changes'))"
} > "$RUN/versions.txt"
SUFFIX=""; [ "$PIN" = 1 ] || SUFFIX=-nopin
python3 summarize.py "$RUN" "PIN=$PIN GRPC_N=$GRPC_N HTTP_SECS=$HTTP_SECS STREAM_N=$STREAM_N STREAM_MSGS=$STREAM_MSGS HS_SECS=$HS_SECS HS_CLIENTS=$HS_CLIENTS RUNS=$RUNS TESTS='$TESTS' FIXED=$FIXED FIXED_PCT=$FIXED_PCT FIXED_SECS=$FIXED_SECS" "results/${OUT:-results-$(date +%F)$SUFFIX.md}"
