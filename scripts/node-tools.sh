#!/usr/bin/env bash
# Installs the npm packages of tools/grpc-web-node (the Node.js gRPC-Web client of
# proxy/tests/grpc_web.rs) into ~/.cache/sluice/node-grpc-web-<hash of package.json>/, outside the
# repository, once per package.json; prints that directory (its node_modules holds the packages).
set -euo pipefail
src="$(cd "$(dirname "$0")/../tools/grpc-web-node" && pwd)"
command -v npm >/dev/null || { echo "ERROR: npm (Node.js) is required by the gRPC-Web Node client test" >&2; exit 1; }
key=$(sha256sum "$src/package.json" | cut -c1-16)
dir="${SLUICE_CACHE:-$HOME/.cache/sluice}/node-grpc-web-$key"
if [ ! -f "$dir/.done" ]; then
  mkdir -p "$dir"
  cp "$src/package.json" "$dir/"
  (cd "$dir" && npm install --silent --no-audit --no-fund >&2)
  touch "$dir/.done"
fi
echo "$dir"
