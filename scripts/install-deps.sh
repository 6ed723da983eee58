#!/usr/bin/env bash
# Installs what `make test` needs beyond the Rust toolchain, by package name, idempotently:
# rustfmt/clippy (from rust-toolchain.toml), curl, chromium + node/npm and the npm packages of
# tools/grpc-web-node (the gRPC-Web browser and Node.js client tests; scripts/node-tools.sh caches them), python grpcio + grpcio-tools (the Python gRPC
# client test), redis-server (the rate-limiting tests), cargo-fuzz, cargo-machete, iproute2 (the e2e
# backends' network namespaces), h2spec and
# the gRPC interop client/server (peers/install.sh builds them with go), checks kubectl (shipped with
# this machine image; e2e fails loudly without it), and builds kube-apiserver and etcd from their Go
# modules into a cache outside the repository (scripts/k8s-tools.sh; reused when already there), and
# helm the same way (scripts/helm-tools.sh).
set -euo pipefail
need_apt=()
command -v curl >/dev/null || need_apt+=(curl)
command -v python3 >/dev/null || need_apt+=(python3 python3-pip)
command -v ip >/dev/null || need_apt+=(iproute2)
command -v chromium >/dev/null || need_apt+=(chromium)
command -v npm >/dev/null || need_apt+=(nodejs npm)
# redis-server (Debian package) for rate-limiting's redis policy tests (proxy/tests/rate_limiting.rs).
command -v redis-server >/dev/null || need_apt+=(redis-server)
if [ ${#need_apt[@]} -gt 0 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}"
fi
if ! python3 -c 'import grpc, grpc_tools' 2>/dev/null; then
  python3 -m pip install --quiet grpcio grpcio-tools
fi
# The gRPC-Web clients' npm packages (proxy/tests/grpc_web.rs), cached outside the repository.
echo "deps ok: gRPC-Web client packages in $("$(dirname "$0")/node-tools.sh")"
# cargo-fuzz (crates registry, by name) for the short fuzz run; the nightly toolchain it drives
# ships with this machine image.
if ! command -v cargo-fuzz >/dev/null; then
  cargo install --quiet --locked cargo-fuzz
fi
# cargo-machete (crates registry, by name): `make deps-audit` fails on an unused dependency.
if ! command -v cargo-machete >/dev/null; then
  cargo install --quiet --locked cargo-machete
fi
if ! command -v kubectl >/dev/null; then
  # Debian's own kubernetes-client is far older than the 1.32 the e2e tests target; try the
  # machine image's package first, then fail loudly.
  (apt-get install -y -qq kubectl 2>/dev/null) || true
fi
if ! command -v kubectl >/dev/null; then
  echo "ERROR: kubectl (1.32) is required by the e2e tests and is not installed" >&2
  exit 1
fi
# h2spec and grpc-go's interop client/server, pinned in peers/go.mod (proxy/tests/h2spec.rs, grpc_interop.rs).
"$(dirname "$0")/../peers/install.sh"
if ! command -v go >/dev/null; then
  echo "ERROR: go (1.26, with the Go module proxy) is required to build kube-apiserver and etcd for the e2e tests" >&2
  exit 1
fi
k8s_bin="$("$(dirname "$0")/k8s-tools.sh" | tail -1)"
echo "deps ok: kube-apiserver and etcd in $k8s_bin"
# helm for the chart tests (e2e/tests/helm.rs), pinned in tools/helm/go.mod.
helm_bin="$("$(dirname "$0")/helm-tools.sh" | tail -1)"
echo "deps ok: helm in $helm_bin"
echo "deps ok: $(kubectl version --client 2>/dev/null | head -1), python grpcio $(python3 -c 'import grpc; print(grpc.__version__)')"
