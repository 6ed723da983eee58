#!/usr/bin/env bash
# `make demo`: builds, starts the demo gRPC backends, sluice-proxy and sluice-controller (file mode
# on examples/), makes the calls of the examples through the proxy and prints what came back.
# Keeps running until Ctrl-C; DEMO_ONESHOT=1 exits after the calls (non-zero if a call failed).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PROXY_PORT=${DEMO_PROXY_PORT:-8000}
TLS_PORT=${DEMO_TLS_PORT:-8443}
STATUS_PORT=${DEMO_STATUS_PORT:-8100}
BIN=${CARGO_TARGET_DIR:-$ROOT/target}/debug
WORK=$(mktemp -d -t sluice-demo-XXXXXX)
PIDS=()

cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "==> building (cargo build -p proxy -p controller -p sluice-demo)"
cargo build -q -p proxy -p controller -p sluice-demo --bins

# wait_for FILE PATTERN SECONDS: until FILE contains PATTERN (a readiness line), bounded.
wait_for() {
  local deadline=$((SECONDS + $3))
  until grep -q "$2" "$1" 2>/dev/null; do
    if ((SECONDS >= deadline)); then echo "timed out waiting for '$2' in $1" >&2; cat "$1" >&2 || true; return 1; fi
    sleep 0.1
  done
}

backend() { # NAME ADDR [TLS]
  local log=$WORK/backend-$1-${2//[:.]/_}.log
  if [ "${3:-}" = tls ]; then
    "$BIN/sluice-demo-backend" --listen "$2" --name "$1" \
      --tls-cert examples/local/demo-backend-tls.crt --tls-key examples/local/demo-backend-tls.key >"$log" 2>&1 &
  else
    "$BIN/sluice-demo-backend" --listen "$2" --name "$1" >"$log" 2>&1 &
  fi
  PIDS+=($!)
  wait_for "$log" "listening on" 10
}

echo "==> starting demo backends"
backend grpcbin 127.0.0.1:19001
backend echo-v1 127.0.0.1:19002
backend echo-v2 127.0.0.1:19003
backend foo-svc 127.0.0.1:19004
backend bar-svc 127.0.0.1:19005
backend bar-svc-canary 127.0.0.1:19006
backend pool-a 127.0.0.1:19007
backend pool-b 127.0.0.2:19007
backend tls-pool-a 127.0.0.1:19009 tls
backend tls-pool-b 127.0.0.2:19009 tls

echo "==> starting sluice-otlp-sink (the OTLP/HTTP collector of examples/06-opentelemetry) on 127.0.0.1:4318"
"$BIN/sluice-otlp-sink" --listen 127.0.0.1:4318 >"$WORK/otlp.log" 2>&1 &
PIDS+=($!)
wait_for "$WORK/otlp.log" "listening on" 10

echo "==> starting sluice-proxy (KONG_PROXY_LISTEN=\"127.0.0.1:$PROXY_PORT http2, 127.0.0.1:$TLS_PORT http2 ssl\")"
KONG_PROXY_LISTEN="127.0.0.1:$PROXY_PORT http2, 127.0.0.1:$TLS_PORT http2 ssl" \
KONG_STATUS_LISTEN="127.0.0.1:$STATUS_PORT" \
SLUICE_ADMIN_SOCKET="$WORK/run/admin.sock" \
KONG_PROXY_ACCESS_LOG="$WORK/access.log" \
  "$BIN/sluice-proxy" 2>"$WORK/proxy.log" &
PIDS+=($!)
wait_for "$WORK/proxy.log" "sluice-proxy started" 10

echo "==> starting sluice-controller --manifests examples/"
"$BIN/sluice-controller" --manifests examples/ --kong-admin-url "unix://$WORK/run/admin.sock" \
  --proxy-sync-seconds 0.2 --metrics-bind-address 127.0.0.1:0 --health-probe-bind-address 127.0.0.1:0 \
  --publish-status-address 127.0.0.1 2>"$WORK/controller.log" &
PIDS+=($!)
deadline=$((SECONDS + 20))
until curl -sf "http://127.0.0.1:$STATUS_PORT/status/ready" >/dev/null; do
  if ((SECONDS >= deadline)); then echo "proxy never became ready" >&2; tail -20 "$WORK/controller.log" >&2; exit 1; fi
  sleep 0.1
done
echo "    proxy ready: $(curl -s "http://127.0.0.1:$STATUS_PORT/status")"

FAILED=0
call() { # TITLE, then sluice-grpc-call arguments
  local title=$1; shift
  printf '\n--- %s\n$ sluice-grpc-call %s\n' "$title" "$*"
  if ! "$BIN/sluice-grpc-call" "$@"; then FAILED=$((FAILED + 1)); fi
}

echo
echo "==> In a cluster, the same state comes from:"
cat <<'KUBECTL'
    kubectl apply -f crds/ && kubectl wait --for=condition=Established crd --all
    kubectl apply -f examples/00-gateway/ -f examples/01-grpcbin/ -f examples/02-echo/ \
                  -f examples/03-gateway-api-guide/ -f examples/04-grpc-grpcs-upstreams/ -f examples/05-plugins/ \
                  -f examples/06-opentelemetry/ -f examples/07-grpc-web/ \
                  -f examples/08-grpc-gateway/
    kubectl annotate service grpcbin konghq.com/protocol=grpc --overwrite
    KONG_PROXY_LISTEN="0.0.0.0:8000 http2, 0.0.0.0:8443 http2 ssl"   # the proxy's listen setting
KUBECTL

echo
echo "==> Calls through the proxy"
P=127.0.0.1:$PROXY_PORT
T=127.0.0.1:$TLS_PORT
call "Kong's gRPC guide (Ingress, plaintext h2c)" --plaintext "$P" hello.HelloService/SayHello '{"greeting":"Kong"}'
call "Kong's gRPC guide (GRPCRoute example.com, TLS with ALPN h2)" --insecure --authority example.com "$T" hello.HelloService/SayHello '{"greeting":"Kong"}'
call "echo: echo.Echo/Echo -> v1" --plaintext --authority echo.example.com "$P" echo.Echo/Echo '{"message":"hi"}'
call "echo: header env=canary -> v2" --plaintext --authority echo.example.com -H 'env: canary' "$P" echo.Echo/Echo '{"message":"hi"}'
call "echo: echo.Echo/EchoV2 -> v2" --plaintext --authority echo.example.com "$P" echo.Echo/EchoV2 '{"message":"hi"}'
call "echo: reflection through the proxy" --plaintext --authority echo.example.com "$P" list
call "Gateway API guide: foo.example.com Login -> foo-svc" --plaintext --authority foo.example.com "$P" com.example.User/Login '{"username":"alice"}'
call "Gateway API guide: bar.example.com -> bar-svc" --plaintext --authority bar.example.com "$P" com.example.User/Login '{"username":"bob"}'
call "Gateway API guide: bar.example.com env=canary -> bar-svc-canary" --plaintext --authority bar.example.com -H 'env: canary' "$P" com.example.User/Login '{"username":"bob"}'
call "KongPlugin add-echo-header (request-transformer via a GRPCRoute ExtensionRef): the backend echoes x-echo-plugin" \
  -v --plaintext --authority plugins.example.com "$P" echo.Echo/Echo '{"message":"hi"}'
call "KongPlugin limit-echo (rate-limiting on one method via a GRPCRoute ExtensionRef): x-ratelimit-* metadata" \
  -v --plaintext --authority limits.example.com "$P" echo.Echo/Echo '{"message":"hi"}'
for i in 1 2; do
  call "gRPC upstream (h2c), round robin #$i" --plaintext --authority plain.example.com "$P" echo.Echo/Echo '{"message":"rr"}'
done
for i in 1 2; do
  call "gRPCS upstream (h2 over TLS), round robin #$i" --plaintext --authority secure.example.com "$P" echo.Echo/Echo '{"message":"rr"}'
done
for i in 1 2; do
  call "KongPlugin trace-to-collector (opentelemetry via a GRPCRoute ExtensionRef): traced call #$i" \
    --plaintext --authority traced.example.com "$P" echo.Echo/Echo '{"message":"traced"}'
done
echo
echo "==> spans at the collector (sluice-otlp-sink, batch_flush_delay 1 s):"
if wait_for "$WORK/otlp.log" "received" 10; then grep received "$WORK/otlp.log"; else FAILED=$((FAILED + 1)); fi

# gRPC-Web (examples/07-grpc-web): HelloRequest{greeting: "Kong"} as one base64 (grpc-web-text) frame.
printf '\n--- gRPC-Web text over HTTP/1.1 (KongPlugin grpc-web on an HTTPRoute)\n'
printf '$ curl -s -H "host: web.example.com" -H "content-type: application/grpc-web-text" --data-binary AAAAAAYKBEtvbmc= http://%s/hello.HelloService/SayHello | base64 -d | od -c\n' "$P"
if curl -sf -H 'host: web.example.com' -H 'content-type: application/grpc-web-text' -H 'x-grpc-web: 1' \
  --data-binary AAAAAAYKBEtvbmc= "http://$P/hello.HelloService/SayHello" | base64 -d >"$WORK/grpc-web.bin"; then
  od -c "$WORK/grpc-web.bin"
  grep -aq 'grpc-status: 0' "$WORK/grpc-web.bin" || FAILED=$((FAILED + 1))
else
  FAILED=$((FAILED + 1))
fi

json_call() { # TITLE, then curl arguments
  local title=$1; shift
  printf '\n--- %s\n$ curl %s\n' "$title" "$*"
  if ! curl -sS --fail-with-body "$@"; then FAILED=$((FAILED + 1)); fi
  echo
}
json_call "JSON to gRPC (grpc-gateway, library.Library/GetBook)" -H 'host: library.example.com' \
  "http://$P/v1/shelves/1/books/2?version=3&full=true&genre=SCIENCE&tags=a&tags=b&author.name=Ursula"
json_call "JSON to gRPC, a server stream as a JSON array (library.Library/ListBooks)" -H 'host: library.example.com' \
  "http://$P/v1/shelves/1/books?count=2"

echo
echo "==> /metrics (excerpt): curl http://127.0.0.1:$STATUS_PORT/metrics"
curl -s "http://127.0.0.1:$STATUS_PORT/metrics" | grep -E '^(sluice_grpc_requests_total|kong_http_requests_total)' | head -12 || true

if [ "$FAILED" -ne 0 ]; then echo; echo "$FAILED call(s) failed"; fi
if [ -n "${DEMO_ONESHOT:-}" ]; then
  exit $((FAILED > 0))
fi
echo
echo "==> Running. Proxy: h2c/HTTP1 127.0.0.1:$PROXY_PORT, TLS 127.0.0.1:$TLS_PORT, status 127.0.0.1:$STATUS_PORT. Ctrl-C to stop."
while true; do sleep 3600; done
