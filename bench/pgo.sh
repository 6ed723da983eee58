#!/usr/bin/env bash
# Trains the profile for the profile-guided (PGO) release build of sluice-proxy and writes it to
# pgo/sluice-proxy.profdata (committed; `make release` and the Dockerfile build with it).
#
#   ./pgo.sh          (or `make pgo-profile`)   env: TRAIN_N=100000 (gRPC unary calls; the other
#                                                shapes scale from it)  PGO_OUT=../pgo/sluice-proxy.profdata
#
# 1. builds an instrumented proxy (-Cprofile-generate) in target/pgo-gen;
# 2. runs it against the bench backend with the traffic shapes of run.sh: gRPC unary over h2c and
#    over TLS, gRPC server streaming, HTTP/1.1 keep-alive, new TLS handshakes, and a 2,000-route
#    config push (the admin path, so that it is not left cold);
# 3. merges the counts with llvm-profdata (Debian's llvm-19 reads the raw profiles of rustc 1.95's
#    LLVM; installed by package name when missing). `--sparse`: functions that never ran get no
#    profile rather than a "never runs" one, so paths the training did not reach (errors, rare
#    protocols) are optimised as without PGO instead of for size.
# Retrain after changing the request path: a function whose code changed no longer matches its
# counts and is built as without PGO (correct, only slower).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
cd "$HERE"
OUT=${PGO_OUT:-$ROOT/pgo/sluice-proxy.profdata}
N=${TRAIN_N:-100000}
GEN=$ROOT/target/pgo-gen
RAW=$GEN/profraw

profdata() {
    local p
    for p in llvm-profdata-19 /usr/lib/llvm-19/bin/llvm-profdata; do
        command -v "$p" >/dev/null 2>&1 && { echo "$p"; return; }
    done
    return 1
}
PROFDATA=$(profdata) || {
    apt-get update >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y llvm-19 >/dev/null
    PROFDATA=$(profdata) || { echo "pgo.sh: llvm-profdata-19 missing after installing llvm-19" >&2; exit 1; }
}
[ -x backend/target/release/bench-backend ] && command -v h2load >/dev/null || ./setup.sh

# Build scripts and proc macros are instrumented too and write profiles while cargo runs: RAW is
# emptied after the build, so only the proxy's own run is merged.
(cd "$ROOT" && CARGO_TARGET_DIR=$GEN RUSTFLAGS="-Cprofile-generate=$RAW" cargo build --release --locked -p proxy)
rm -rf "$RAW"; mkdir -p "$RAW"

BIN=backend/target/release
TMP=$(mktemp -d -p "$GEN" train-XXXXXX)
BACKEND_PORT=18290; PORT=18295; TLS_PORT=18296   # apart from run.sh, callgrind.sh, syscalls.sh
source "$HERE/lib.sh"
BODY=$TMP/body.bin
"$BIN/bench-check" mkbody "$BODY" 100
self_signed_cert "$TMP/key.pem" "$TMP/cert.pem"
BACKEND_THREADS=1 "$BIN/bench-backend" 127.0.0.1:$BACKEND_PORT 2>"$TMP/backend.log" &
PIDS+=($!)
wait_port $BACKEND_PORT
BACKEND_ADDR=127.0.0.1:$BACKEND_PORT OURS_PORT=$PORT OURS_TLS_PORT=$TLS_PORT OURS_TMP=$TMP \
OURS_STATUS_LISTEN=127.0.0.1:18297 TLS_CERT=$TMP/cert.pem TLS_KEY=$TMP/key.pem SLUICE_PROXY=$GEN/release/sluice-proxy \
    ./ours-sluice.sh >"$TMP/proxy.log" 2>&1 &
pid=$!; PIDS+=($pid)
wait_port $PORT && wait_port $TLS_PORT
for _ in $(seq 100); do "$BIN/bench-check" grpc 127.0.0.1:$PORT 1 >/dev/null 2>&1 && break; sleep 0.1; done
"$BIN/bench-check" grpc 127.0.0.1:$PORT 1 >/dev/null || { echo "pgo.sh: the proxy does not answer (see $TMP/proxy.log)" >&2; exit 1; }

check() {  # label, h2load output file: every request must have succeeded
    local ok
    ok=$(awk '/^requests:/ {print $8 == $2 ? "yes" : "no"}' "$2")
    [ "$ok" = yes ] || { echo "pgo.sh: training load '$1' had failures:" >&2; cat "$2" >&2; exit 1; }
    echo "  $1: $(awk '/^requests:/ {print $2}' "$2") requests"
}
echo "training the instrumented proxy"
grpc_h2load -n "$N" "http://127.0.0.1:$PORT/bench.Echo/Echo" >"$TMP/grpc.txt" 2>&1; check "gRPC unary h2c" "$TMP/grpc.txt"
grpc_h2load -n $((N / 5)) "https://127.0.0.1:$TLS_PORT/bench.Echo/Echo" >"$TMP/tls.txt" 2>&1; check "gRPC unary TLS" "$TMP/tls.txt"
grpc_h2load -n $((N / 50)) "http://127.0.0.1:$PORT/bench.Echo/Stream" >"$TMP/stream.txt" 2>&1; check "gRPC streaming" "$TMP/stream.txt"
h2load --h1 -t 1 -c 50 -n "$N" "http://127.0.0.1:$PORT/" >"$TMP/http1.txt" 2>&1; check "HTTP/1.1" "$TMP/http1.txt"
timeout 30 openssl s_time -connect 127.0.0.1:$TLS_PORT -new -time 2 >"$TMP/hs.txt" 2>&1 || true
grep -q "connections in" "$TMP/hs.txt" || { echo "pgo.sh: TLS handshakes failed:" >&2; cat "$TMP/hs.txt" >&2; exit 1; }
echo "  TLS handshakes: $(awk '/connections in .* real seconds/ {print $1; exit}' "$TMP/hs.txt")"
# The admin path: a config of 2,000 routes, pushed as the controller does.
python3 - "$TMP/routes.json" "$BACKEND_PORT" <<'PY'
import json, sys
path, port = sys.argv[1], int(sys.argv[2])
svcs = [{"name": f"s{i}", "protocol": "grpc" if i % 2 else "http", "host": "127.0.0.1", "port": port,
         "routes": [{"name": f"r{i}", "hosts": [f"h{i}.example"], "paths": [f"/p{i}/"]}]} for i in range(2000)]
json.dump({"_format_version": "3.0", "services": svcs}, open(path, "w"))
PY
code=$(curl -sS --unix-socket "$TMP"/ours-sluice-*/admin.sock -o "$TMP/push.out" -w '%{http_code}' \
    -H 'content-type: application/json' --data-binary @"$TMP/routes.json" http://localhost/config)
[ "$code" = 201 ] || { echo "pgo.sh: config push answered $code: $(cat "$TMP/push.out")" >&2; exit 1; }
echo "  config push: 2,000 routes"
stop_pid "$pid"   # SIGTERM: the proxy drains and exits, and the profile is written at exit

ls "$RAW"/*.profraw >/dev/null 2>&1 || { echo "pgo.sh: the proxy wrote no profile into $RAW" >&2; exit 1; }
mkdir -p "$(dirname "$OUT")"
"$PROFDATA" merge --sparse -o "$OUT" "$RAW"/*.profraw
echo "wrote $OUT ($(du -k "$OUT" | cut -f1) KiB, $("$PROFDATA" show "$OUT" | awk -F': ' '/Total functions/ {print $2}') functions)"
