#!/usr/bin/env bash
# Instruction counts per request of sluice-proxy's request path, with valgrind's callgrind: a
# count that does not depend on what else the machine is doing (unlike µs), so it can be compared
# between builds while the machine is busy.
#
#   ./callgrind.sh [TEST...]     TEST: grpc http1 grpc-tls grpc-stream (default: grpc http1 grpc-tls)
#   env: N=20000 (requests measured)  WARM=2000  SLUICE_PROXY=../target/release/sluice-proxy
#        OUT=.run/callgrind  TAG=label for the output files  SLUICE_METRICS=on|off
#        OURS_PLUGINS, OURS_OTEL + OURS_OTEL_ENDPOINT: plugins on the routes (see ours-sluice.sh)
#        with key-auth every gRPC call sends `apikey: BENCH_APIKEY`; with jwt, BENCH_JWT_ALG=HS256|RS256|ES256
#        (default HS256) picks the consumer's key and every gRPC call sends a token (tools/jwt_bench.py)
#        OURS_CONFIG=file: that config instead; LOAD_HOST=name: the load's :authority / Host
#        (scale100k.sh: a route at the end of a 100k-route table)
#
# The proxy runs under callgrind with one worker thread and the same config as ours-sluice.sh; the
# backend and h2load/wrk run natively. After WARM requests the counters are zeroed
# (callgrind_control -z), N requests are sent with the same shape as run.sh (h2load 10 connections
# x 5 streams; HTTP/1.1: 50 keep-alive connections, N requests via h2load --h1), then dumped
# (callgrind_control -d). Prints instructions per request (user space only; syscalls' kernel time
# is not counted) and writes the top functions (inclusive and self) next to the dump.
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
cd "$HERE"
TESTS=("$@"); [ ${#TESTS[@]} -gt 0 ] || TESTS=(grpc http1 grpc-tls)
N=${N:-20000}; WARM=${WARM:-2000}; TAG=${TAG:-$(date +%H%M%S)}
OUT=${OUT:-$HERE/.run/callgrind}; mkdir -p "$OUT"
PROXY=${SLUICE_PROXY:-$HERE/../target/release/sluice-proxy}
BIN=backend/target/release
[ -x $BIN/bench-backend ] || { echo "build the backend first: ./setup.sh" >&2; exit 1; }
command -v valgrind >/dev/null || { echo "valgrind missing (apt-get install valgrind)" >&2; exit 1; }
cp "$PROXY" "$OUT/sluice-proxy.$TAG"
PROXY=$OUT/sluice-proxy.$TAG
BODY=$OUT/body.bin; $BIN/bench-check mkbody "$BODY" 100
TLS_DIR=$OUT/tls; mkdir -p "$TLS_DIR"
source "$HERE/lib.sh"
[ -s "$TLS_DIR/cert.pem" ] || self_signed_cert "$TLS_DIR/key.pem" "$TLS_DIR/cert.pem"
BACKEND_PORT=18090; PORT=18095; TLS_PORT=18096   # apart from run.sh's ports

AUTH=()   # the credentials the auth plugins on the gRPC route ask for
case ",${OURS_PLUGINS:-}," in *,key-auth,*)
    export BENCH_APIKEY=${BENCH_APIKEY:-bench-key-0123456789}; AUTH+=(-H "apikey: $BENCH_APIKEY") ;;
esac
case ",${OURS_PLUGINS:-}," in *,jwt,*)
    export BENCH_JWT_ALG=${BENCH_JWT_ALG:-HS256} BENCH_JWT_KEY_FILE=$OUT/jwt-key.txt
    BENCH_JWT=$(python3 "$HERE/tools/jwt_bench.py" "$BENCH_JWT_ALG" "$OUT") || exit 1
    export BENCH_JWT; AUTH+=(-H "authorization: Bearer $BENCH_JWT") ;;
esac

STOP_TRIES=100 WAIT_TRIES=600   # valgrind starts and stops slowly

BACKEND_THREADS=1 $BIN/bench-backend 127.0.0.1:$BACKEND_PORT 2>/dev/null &
PIDS+=($!); wait_port $BACKEND_PORT || { echo "backend did not start" >&2; exit 1; }

HOSTHDR=(); [ -n "${LOAD_HOST:-}" ] && HOSTHDR=(-H ":authority: $LOAD_HOST")
load() {  # test count
    case $1 in
        grpc) grpc_h2load "${AUTH[@]}" "${HOSTHDR[@]}" -n "$2" "http://127.0.0.1:$PORT/bench.Echo/Echo" ;;
        grpc-tls) grpc_h2load "${AUTH[@]}" "${HOSTHDR[@]}" -n "$2" "https://127.0.0.1:$TLS_PORT/bench.Echo/Echo" ;;
        grpc-stream) grpc_h2load "${HOSTHDR[@]}" -n "$2" "http://127.0.0.1:$PORT/bench.Echo/Stream" ;;
        http1) h2load --h1 -t 1 -c 50 "${HOSTHDR[@]}" -n "$2" "http://127.0.0.1:$PORT/" ;;
    esac
}
ready() {  # 0 once a gRPC call reaches the backend
    if [ -z "${LOAD_HOST:-}" ]; then $BIN/bench-check grpc 127.0.0.1:$PORT 1 >/dev/null 2>&1; return; fi
    grpc_reaches_backend $PORT "$LOAD_HOST" "$BODY"
}

printf '%-12s %-10s %14s %10s %s\n' test tag Ir/request requests "ok"
for t in "${TESTS[@]}"; do
    n=$N; [ "$t" = grpc-stream ] && n=$(( N / 10 ))
    f=$OUT/callgrind.$TAG.$t
    rm -f "$f" "$f".*
    BACKEND_ADDR=127.0.0.1:$BACKEND_PORT OURS_PORT=$PORT OURS_TLS_PORT=$TLS_PORT OURS_TMP=$OUT \
    OURS_STATUS_LISTEN=127.0.0.1:18097 TLS_CERT=$TLS_DIR/cert.pem TLS_KEY=$TLS_DIR/key.pem SLUICE_PROXY=$PROXY \
    SLUICE_WRAP="valgrind --tool=callgrind --callgrind-out-file=$f" \
        ./ours-sluice.sh > "$f.log" 2>&1 &
    pid=$!; PIDS+=($pid)
    wait_port $PORT && wait_port $TLS_PORT || { echo "proxy did not start (see $f.log)" >&2; exit 1; }
    # Ready once a call passes (with the credentials above: the auth plugins are in force).
    ok=0
    for _ in $(seq "${READY_TRIES:-300}"); do ready && { ok=1; break; }; sleep 0.2; done
    [ $ok = 1 ] || { echo "no call passed through the proxy (see $f.log)" >&2; exit 1; }
    load "$t" "$WARM" > "$f.warm.txt" 2>&1
    callgrind_control -z "$pid" >/dev/null 2>&1
    load "$t" "$n" > "$f.load.txt" 2>&1
    callgrind_control -d "$pid" >/dev/null 2>&1
    sleep 1
    stop_pid "$pid"
    dump=$(ls -t "$f".* 2>/dev/null | grep -v -e '\.txt$' -e '\.log$' | head -1)
    ok=$(awk '/^requests:/ {print $8}' "$f.load.txt")
    total=$(awk '/^summary:|^totals:/ {print $2}' "$dump" | tail -1)
    per=$(awk -v t="$total" -v n="$n" 'BEGIN {printf "%.0f", t / n}')
    [ "$t" = grpc-stream ] && per="$per/call"
    printf '%-12s %-10s %14s %10s %s\n' "$t" "$TAG" "$per" "$n" "${ok:-?} succeeded"
    callgrind_annotate --inclusive=yes "$dump" 2>/dev/null | head -80 > "$f.inclusive.txt"
    callgrind_annotate "$dump" 2>/dev/null | head -60 > "$f.self.txt"
    printf '%s\t%s\t%s\t%s\t%s\n' "$t" "$TAG" "$total" "$n" "$ok" >> "$OUT/summary.tsv"
done
