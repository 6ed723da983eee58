#!/usr/bin/env bash
# The whole product: sluice-proxy started empty plus sluice-controller in `--manifests` mode, which
# translates Kubernetes objects (Services, EndpointSlices, an Ingress) and pushes the config over
# the admin socket: the `sluice-ctl` target of run.sh. Same routing as ours-sluice.sh:
# /bench.Echo/ -> backend over h2c (gRPC Service), everything else -> backend over HTTP/1.1;
# the backend is reached through an upstream with one target (the EndpointSlice address).
# Both processes are children of this script; TERM stops them (by PID).
#   --print-manifests   print the Kubernetes objects and exit    --dump   print the translated config
set -eu
: "${BACKEND_ADDR:?}" "${OURS_PORT:?}"
HERE=$(cd "$(dirname "$0")" && pwd)
PROXY=${SLUICE_PROXY:-$HERE/../target/release/sluice-proxy}
CONTROLLER=${SLUICE_CONTROLLER:-$HERE/../target/release/sluice-controller}
DIR=$(mktemp -d -p "${OURS_TMP:-/tmp}" ours-ctl-XXXXXX)
HOST=${BACKEND_ADDR%:*} PORT=${BACKEND_ADDR##*:}
cat >"$DIR/manifests.yaml" <<YAML
apiVersion: v1
kind: Service
metadata:
  name: bench-grpc
  namespace: bench
  annotations:
    konghq.com/protocol: grpc
spec:
  ports:
  - {name: grpc, port: 9000, targetPort: $PORT, protocol: TCP}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: bench-grpc-1
  namespace: bench
  labels: {kubernetes.io/service-name: bench-grpc}
addressType: IPv4
ports:
- {name: grpc, port: $PORT, protocol: TCP}
endpoints:
- addresses: ["$HOST"]
  conditions: {ready: true}
---
apiVersion: v1
kind: Service
metadata:
  name: bench-http
  namespace: bench
spec:
  ports:
  - {name: http, port: 80, targetPort: $PORT, protocol: TCP}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: bench-http-1
  namespace: bench
  labels: {kubernetes.io/service-name: bench-http}
addressType: IPv4
ports:
- {name: http, port: $PORT, protocol: TCP}
endpoints:
- addresses: ["$HOST"]
  conditions: {ready: true}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: bench-grpc
  namespace: bench
spec:
  ingressClassName: kong
  rules:
  - http:
      paths:
      - {pathType: Prefix, path: /bench.Echo/, backend: {service: {name: bench-grpc, port: {number: 9000}}}}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: bench-http
  namespace: bench
spec:
  ingressClassName: kong
  rules:
  - http:
      paths:
      - {pathType: Prefix, path: /, backend: {service: {name: bench-http, port: {number: 80}}}}
YAML
case ${1:-} in
    --print-manifests) cat "$DIR/manifests.yaml"; rm -rf "$DIR"; exit 0 ;;
    --dump) "$CONTROLLER" --manifests "$DIR/manifests.yaml" --dump-config; rc=$?; rm -rf "$DIR"; exit $rc ;;
esac
LISTEN="127.0.0.1:$OURS_PORT http2"
[ -n "${OURS_TLS_PORT:-}" ] && LISTEN="$LISTEN, 127.0.0.1:$OURS_TLS_PORT http2 ssl"
export KONG_PROXY_LISTEN=$LISTEN SLUICE_ADMIN_SOCKET=$DIR/admin.sock
export KONG_STATUS_LISTEN=${OURS_STATUS_LISTEN:-127.0.0.1:18100} KONG_PROXY_ACCESS_LOG=${KONG_PROXY_ACCESS_LOG:-off}
export KONG_NGINX_WORKER_PROCESSES=${KONG_NGINX_WORKER_PROCESSES:-1}
[ -n "${TLS_CERT:-}" ] && export KONG_SSL_CERT=$TLS_CERT KONG_SSL_CERT_KEY=$TLS_KEY
PIDS=()
stop() { local p; for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done; for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done; }
trap stop EXIT
trap 'exit 143' TERM INT
"$PROXY" & PIDS+=($!)
for _ in $(seq 100); do [ -S "$DIR/admin.sock" ] && break; sleep 0.1; done
# The controller's own sync period (3 s, as KIC's --proxy-sync-seconds): it checks the proxy's
# config hash that often when nothing changes. At 0.05 s (this script's setting up to s11) those
# 20 status calls a second cost ~1% of the proxy core in this row.
"$CONTROLLER" --manifests "$DIR/manifests.yaml" --kong-admin-url "unix://$DIR/admin.sock" \
    --metrics-bind-address off --health-probe-bind-address off \
    --update-status false --log-level warn & PIDS+=($!)
wait -n "${PIDS[@]}" || true
