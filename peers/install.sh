#!/usr/bin/env bash
# Builds the peers' test tools pinned in peers/go.mod (h2spec, the gRPC interop client and server)
# into the cache outside the repository, keyed by version:
#   ${XDG_CACHE_HOME:-$HOME/.cache}/sluice/h2spec-<version>/h2spec
#   ${XDG_CACHE_HOME:-$HOME/.cache}/sluice/grpc-interop-<version>/{grpc-interop-client,grpc-interop-server}
# Idempotent: a directory whose .go.sum stamp matches peers/go.sum is kept. Called by
# scripts/install-deps.sh; proxy/tests/h2spec.rs and grpc_interop.rs find the binaries there.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cache=${XDG_CACHE_HOME:-$HOME/.cache}/sluice
if ! command -v go >/dev/null; then
  echo "ERROR: go (1.26) is required to build h2spec and the gRPC interop client/server" >&2
  exit 1
fi
cd "$here"
version() { go list -m -f '{{.Version}}' "$1"; }
h2spec_v=$(version github.com/summerwind/h2spec)
grpc_v=$(version google.golang.org/grpc)
sum=$(sha256sum go.sum | cut -d' ' -f1)

# build <dir> <output name> <package>...: builds into a temp dir, then moves it in place whole.
build() {
  local dir=$1; shift
  if [ -f "$dir/.go.sum" ] && [ "$(cat "$dir/.go.sum")" = "$sum" ]; then return; fi
  local tmp
  tmp=$(mktemp -d "$cache/.build.XXXXXX")
  while [ $# -gt 0 ]; do
    go build -mod=readonly -o "$tmp/$1" "$2"
    shift 2
  done
  echo "$sum" >"$tmp/.go.sum"
  rm -rf "$dir"
  mv "$tmp" "$dir"
}
mkdir -p "$cache"
build "$cache/h2spec-${h2spec_v%+incompatible}" h2spec github.com/summerwind/h2spec/cmd/h2spec
build "$cache/grpc-interop-$grpc_v" \
  grpc-interop-client google.golang.org/grpc/interop/client \
  grpc-interop-server google.golang.org/grpc/interop/server
echo "peers ok: h2spec $h2spec_v, grpc interop $grpc_v (in $cache)"
