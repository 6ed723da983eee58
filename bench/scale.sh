#!/usr/bin/env bash
# Scale figures of sluice-proxy (and the controller): RSS idle and with 10,000 routes, time from
# `POST /config` of 10,000 routes to a request routed by the last route, router lookup at 10 vs
# 10,000 routes (the proxy's criterion bench), and the controller's event-to-live latency
# (--manifests mode: a new Ingress file until the proxy routes its path).
#
#   ./scale.sh            env: ROUTES=10000  SLUICE_PROXY SLUICE_CONTROLLER (default ../target/release)
#                         REPEAT=5 (event-to-live samples)  ROUTER_BENCH=1 (0 to skip the criterion run)
# Ports (loopback): backend 18091, proxy 18098, status 18099. Every process started is stopped by PID.
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
cd "$HERE"
ROUTES=${ROUTES:-10000}; REPEAT=${REPEAT:-5}; ROUTER_BENCH=${ROUTER_BENCH:-1}
PROXY=${SLUICE_PROXY:-$HERE/../target/release/sluice-proxy}
CONTROLLER=${SLUICE_CONTROLLER:-$HERE/../target/release/sluice-controller}
BIN=backend/target/release
[ -x "$PROXY" ] && [ -x $BIN/bench-backend ] || { echo "build first (run-all.sh builds everything)" >&2; exit 1; }
OUT=$HERE/.run/scale; rm -rf "$OUT"; mkdir -p "$OUT"; chmod 700 "$OUT"
BPORT=18091; PPORT=18098; SPORT=18099
source "$HERE/lib.sh"
RESULTS=$OUT/results.txt; : > "$RESULTS"

BACKEND_THREADS=1 $BIN/bench-backend 127.0.0.1:$BPORT 2>/dev/null & PIDS+=($!)
wait_port $BPORT || { echo "backend did not start" >&2; exit 1; }

start_proxy() {  # workers (empty = default: one per core)
    KONG_PROXY_LISTEN="127.0.0.1:$PPORT http2" KONG_STATUS_LISTEN="127.0.0.1:$SPORT" \
    SLUICE_ADMIN_SOCKET="$OUT/admin.sock" KONG_PROXY_ACCESS_LOG=off KONG_NGINX_WORKER_PROCESSES="$1" \
        "$PROXY" >>"$OUT/proxy.log" 2>&1 &
    PROXY_PID=$!; PIDS+=($PROXY_PID)
    wait_port $PPORT || { echo "proxy did not start (see $OUT/proxy.log)" >&2; exit 1; }
    for _ in $(seq 50); do [ -S "$OUT/admin.sock" ] && break; sleep 0.1; done
}
push() {  # file -> "http_code seconds"
    curl -sS --unix-socket "$OUT/admin.sock" -o "$OUT/push.out" -w '%{http_code} %{time_total}' \
        -H 'content-type: application/json' --data-binary @"$1" http://localhost/config
}
routed() {  # host path -> 0 when the proxy answers 200
    [ "$(curl -s -o /dev/null -w '%{http_code}' -H "Host: $1" "http://127.0.0.1:$PPORT$2")" = 200 ]
}

say "sluice scale figures ($(date -u '+%F %H:%M UTC'), $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg))"
for workers in 1 ""; do
    label=${workers:-default (one per core)}
    start_proxy "$workers"
    sleep 1
    say "workers=$label: idle RSS, empty config: $(mib "$(kib $PROXY_PID VmRSS)") MiB"
    python3 tools/gen_config.py 2 127.0.0.1 $BPORT "$OUT/small.json"
    push "$OUT/small.json" >/dev/null
    for i in $(seq 200); do routed host-1.example.com /r1/ || true; done
    say "workers=$label: idle RSS, 2 routes, after 200 requests: $(mib "$(kib $PROXY_PID VmRSS)") MiB"
    python3 tools/gen_config.py "$ROUTES" 127.0.0.1 $BPORT "$OUT/big.json"
    last=$((ROUTES - 1))
    t0=$(now_ms)
    read -r code secs < <(push "$OUT/big.json")
    t1=$(now_ms)
    until routed "host-$last.example.com" "/r$last/"; do sleep 0.001; [ $(( $(now_ms) - t0 )) -gt 30000 ] && break; done
    t2=$(now_ms)
    say "workers=$label: POST /config of $ROUTES routes ($(( $(stat -c %s "$OUT/big.json") / 1024 )) KiB JSON): HTTP $code after $((t1 - t0)) ms (curl: ${secs}s); last route live after $((t2 - t0)) ms"
    sleep 0.5
    say "workers=$label: RSS with $ROUTES routes: $(mib "$(kib $PROXY_PID VmRSS)") MiB (peak during the push: $(mib "$(kib $PROXY_PID VmHWM)") MiB)"
    # Every route's metric series are made on its first request: RSS once all have served one.
    hit=$(python3 tools/hit_routes.py "$ROUTES" 127.0.0.1 $PPORT)
    say "workers=$label: RSS with $ROUTES routes after one request to each ($hit answered 200): $(mib "$(kib $PROXY_PID VmRSS)") MiB"
    # A second push of the same size: the swap keeps only one config alive afterwards.
    t0=$(now_ms); read -r code secs < <(push "$OUT/big.json"); t1=$(now_ms)
    say "workers=$label: re-push of the same $ROUTES routes: HTTP $code after $((t1 - t0)) ms; RSS $(mib "$(kib $PROXY_PID VmRSS)") MiB"
    stop_pid "$PROXY_PID"
done

if [ -x "$CONTROLLER" ]; then
    start_proxy 1
    MAN=$OUT/manifests; mkdir -p "$MAN"
    # The bench objects without the catch-all Ingress (`/` to bench-http), so a new host is not
    # routed until the controller has pushed it.
    BACKEND_ADDR=127.0.0.1:$BPORT OURS_PORT=$PPORT OURS_TMP=$OUT ./ours-controller.sh --print-manifests \
        | awk 'BEGIN {RS = "---\n"; ORS = "---\n"} !/name: bench-http\n  namespace: bench\nspec:\n  ingressClassName/' \
        > "$MAN/base.yaml"
    "$CONTROLLER" --manifests "$MAN" --kong-admin-url "unix://$OUT/admin.sock" --proxy-sync-seconds 0.05 \
        --metrics-bind-address off --health-probe-bind-address off --update-status false --log-level warn \
        >>"$OUT/controller.log" 2>&1 &
    PIDS+=($!)
    # Wait until the controller's first push is live (the gRPC Ingress answers gRPC calls).
    for _ in $(seq 200); do $BIN/bench-check grpc 127.0.0.1:$PPORT 1 >/dev/null 2>&1 && break; sleep 0.05; done
    routed new-0.example.com /new-0/ && say "WARNING: a path is routed before its Ingress exists"
    samples=()
    for i in $(seq "$REPEAT"); do
        sleep "1.$((RANDOM % 1000))"   # a random phase against the 250 ms file poll
        cat > "$MAN/new-$i.yaml.tmp" <<YAML
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: new-$i, namespace: bench}
spec:
  ingressClassName: kong
  rules:
  - host: new-$i.example.com
    http:
      paths:
      - {pathType: Prefix, path: /new-$i/, backend: {service: {name: bench-http, port: {number: 80}}}}
YAML
        t0=$(now_ms)
        mv "$MAN/new-$i.yaml.tmp" "$MAN/new-$i.yaml"
        until routed "new-$i.example.com" "/new-$i/"; do sleep 0.002; [ $(( $(now_ms) - t0 )) -gt 10000 ] && break; done
        samples+=($(( $(now_ms) - t0 )))
    done
    sorted=$(printf '%s\n' "${samples[@]}" | sort -n | tr '\n' ' ')
    say "controller --manifests, new Ingress file to routed: ${sorted}ms (median $(printf '%s\n' "${samples[@]}" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}') ms; the controller polls files every 250 ms, debounce 50 ms)"
fi

if [ "$ROUTER_BENCH" = 1 ]; then
    (cd .. && cargo bench -q -p proxy --bench router -- --warm-up-time 1 --measurement-time 3 hosts) > "$OUT/router-bench.txt" 2>&1
    # criterion: "router/hosts/10   time: [low median high]" for 10 lookups per iteration.
    awk '$1 ~ /^router\/hosts\/[0-9]+$/ && $2 == "time:" {gsub(/\[/, "", $3);
            printf "router lookup, %s routes: %.1f ns per lookup (criterion median %s %s per 10 lookups)\n",
                   substr($1, 14), ($5 + 0) / 10, $5, $6}' "$OUT/router-bench.txt" | tee -a "$RESULTS"
fi
echo "wrote $RESULTS"
