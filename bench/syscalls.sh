#!/usr/bin/env bash
# System calls per request of sluice-proxy (strace -c -f), to go with callgrind.sh's user-space
# instruction counts: kernel time per request follows the number of reads, writes and wakeups.
#   ./syscalls.sh [TEST...]   TEST: grpc http1 grpc-tls grpc-stream (default: grpc http1)   env: N=20000 SLUICE_PROXY
#   grpc-stream: server-streaming calls of STREAM_MSGS (100) messages; counts are per message
# strace slows the proxy down, which changes batching somewhat; compare builds, not absolute cost.
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
cd "$HERE"
TESTS=("$@"); [ ${#TESTS[@]} -gt 0 ] || TESTS=(grpc http1)
N=${N:-20000}; TAG=${TAG:-$(date +%H%M%S)}
OUT=$HERE/.run/callgrind; mkdir -p "$OUT"
PROXY=${SLUICE_PROXY:-$HERE/../target/release/sluice-proxy}
BIN=backend/target/release
command -v strace >/dev/null || { echo "strace missing (apt-get install strace)" >&2; exit 1; }
BODY=$OUT/body.bin; $BIN/bench-check mkbody "$BODY" 100
TLS_DIR=$OUT/tls; mkdir -p "$TLS_DIR"
source "$HERE/lib.sh"
[ -s "$TLS_DIR/cert.pem" ] || self_signed_cert "$TLS_DIR/key.pem" "$TLS_DIR/cert.pem"
BACKEND_PORT=18092; PORT=18093; TLS_PORT=18094   # apart from run.sh and callgrind.sh
STOP_TRIES=100 WAIT_TRIES=300
STREAM_MSGS=${STREAM_MSGS:-100}; export STREAM_MSGS
BACKEND_THREADS=1 $BIN/bench-backend 127.0.0.1:$BACKEND_PORT 2>/dev/null & PIDS+=($!)
wait_port $BACKEND_PORT || exit 1
for t in "${TESTS[@]}"; do
    BACKEND_ADDR=127.0.0.1:$BACKEND_PORT OURS_PORT=$PORT OURS_TLS_PORT=$TLS_PORT OURS_TMP=$OUT \
    OURS_STATUS_LISTEN=127.0.0.1:18089 TLS_CERT=$TLS_DIR/cert.pem TLS_KEY=$TLS_DIR/key.pem SLUICE_PROXY=$PROXY \
        ./ours-sluice.sh > "$OUT/strace.$TAG.$t.log" 2>&1 &
    pid=$!; PIDS+=($pid)
    wait_port $PORT && wait_port $TLS_PORT || exit 1
    case $t in
        grpc) load=(grpc_h2load -n "$N" "http://127.0.0.1:$PORT/bench.Echo/Echo") ;;
        grpc-tls) load=(grpc_h2load -n "$N" "https://127.0.0.1:$TLS_PORT/bench.Echo/Echo") ;;
        http1) load=(h2load --h1 -t 1 -c 50 -n "$N" "http://127.0.0.1:$PORT/") ;;
        grpc-stream) load=(grpc_h2load -n "$N" "http://127.0.0.1:$PORT/bench.Echo/Stream") ;;
    esac
    units=$N; [ "$t" = grpc-stream ] && units=$((N * STREAM_MSGS))
    "${load[@]}" > /dev/null 2>&1   # warm-up: connections to the backend exist
    strace -c -f -p "$pid" -o "$OUT/strace.$TAG.$t.txt" 2>/dev/null & spid=$!
    sleep 1
    "${load[@]}" > "$OUT/strace.$TAG.$t.load.txt" 2>&1
    kill -INT "$spid"; wait "$spid" 2>/dev/null
    stop_pid "$pid"
    awk -v n="$units" -v t="$t" -v tag="$TAG" '$NF == "total" {printf "%-8s %-8s %6.2f syscalls/request (grpc-stream: per message)\n", t, tag, $(NF-2) / n}
        $1 ~ /^[0-9.]+$/ && NF >= 5 && $NF != "total" {printf "    %-16s %6.3f/request\n", $NF, $4 / n}' "$OUT/strace.$TAG.$t.txt" | head -12
done
