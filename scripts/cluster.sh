#!/usr/bin/env bash
# `make cluster` / `make cluster-down`: a real Kubernetes control plane (etcd + kube-apiserver from
# the cached builds of scripts/k8s-tools.sh) with sluice's CRDs, manifests/ and the GatewayClass and
# Gateway of examples/00-gateway applied, sluice-controller running as the manifests' ServiceAccount
# and sluice-proxy, plus the demo backends behind the Services of examples/ (in a network namespace,
# with EndpointSlices pointing at them), all in the background (target/debug/sluice-cluster holds
# them and stops them by PID). Writes .run/cluster/kubeconfig and .run/cluster/env.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
run="$root/.run/cluster"
pid_file="$run/pid"
bin="${CARGO_TARGET_DIR:-$root/target}/debug"

running() { [ -f "$pid_file" ] && kill -0 "$(cat "$pid_file")" 2>/dev/null; }

usage() {
  cat <<USAGE
sluice cluster is up (pid $(cat "$pid_file"); logs in $run):
$(sed 's/^/  /' "$run/env")

  source $run/env            # or: export KUBECONFIG=$run/kubeconfig
  kubectl get gateway kong   # Programmed: the controller and proxy are serving
  kubectl apply -f examples/01-grpcbin
  $bin/sluice-grpc-call --plaintext \$PROXY_HTTP hello.HelloService/SayHello '{"greeting":"Kong"}'
  $bin/sluice-grpc-call --tls --insecure --authority example.com \$PROXY_TLS hello.HelloService/SayHello '{"greeting":"Kong"}'
  curl -s http://\$PROXY_STATUS/status     # the proxy's status endpoint
The demo backends of examples/ run in a network namespace, behind EndpointSlices
<slice>-cluster-<i> (kubectl get endpointslices); the other examples/*/ apply the same way.

Stop everything with: make cluster-down
USAGE
}

case "${1:-}" in
up)
  if running; then
    usage
    exit 0
  fi
  "$root/scripts/k8s-tools.sh" >/dev/null
  (cd "$root" && cargo build -q -p proxy -p controller -p e2e -p sluice-demo --bins)
  mkdir -p "$run"
  rm -f "$run/env"
  nohup "$bin/sluice-cluster" --dir "$run" --bin-dir "$bin" \
    >"$run/cluster.log" 2>&1 </dev/null &
  echo $! >"$pid_file"
  # Ready when sluice-cluster writes env (after the Gateway is Programmed); 240 s at most.
  deadline=$((SECONDS + 240))
  until [ -f "$run/env" ]; do
    if ! running; then
      echo "ERROR: sluice-cluster exited; $run/cluster.log:" >&2
      tail -30 "$run/cluster.log" >&2
      rm -f "$pid_file"
      exit 1
    fi
    if [ $SECONDS -ge $deadline ]; then
      echo "ERROR: not ready within 240 s; stopping it. $run/cluster.log:" >&2
      tail -30 "$run/cluster.log" >&2
      kill "$(cat "$pid_file")"
      exit 1
    fi
    sleep 0.2
  done
  usage
  ;;
down)
  if ! running; then
    echo "no sluice cluster running"
    rm -f "$pid_file"
    exit 0
  fi
  pid="$(cat "$pid_file")"
  kill "$pid"
  deadline=$((SECONDS + 30))
  while kill -0 "$pid" 2>/dev/null; do
    if [ $SECONDS -ge $deadline ]; then
      echo "ERROR: sluice-cluster (pid $pid) did not stop within 30 s" >&2
      exit 1
    fi
    sleep 0.1
  done
  rm -f "$pid_file"
  echo "sluice cluster stopped"
  ;;
*)
  echo "usage: $0 up|down" >&2
  exit 2
  ;;
esac
