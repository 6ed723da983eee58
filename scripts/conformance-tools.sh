#!/usr/bin/env bash
# Builds the Gateway API conformance suite and its echo backend (module in tools/conformance/) into
# a cache outside the repository keyed by the suite's version, and only when a binary there is missing:
#   ${XDG_CACHE_HOME:-$HOME/.cache}/sluice/conformance-<version>/bin/{conformance.test,echo-basic}
# conformance.test is tools/conformance/conformance_test.go compiled with `go test -c`; echo-basic is
# the backend every suite Deployment runs (the pod runner maps its image to this binary).
# Prints that bin directory on its last line. `conformance-tools.sh --print-dir` prints it without building.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
mod="$root/tools/conformance"
version="$(awk '$1 == "sigs.k8s.io/gateway-api/conformance" && $2 ~ /^v/ {print $2}; $1 == "require" && $2 == "sigs.k8s.io/gateway-api/conformance" {print $3}' "$mod/go.mod")"
crds_version="$(awk '/gateway.networking.k8s.io\/bundle-version:/ {print $2; exit}' "$root/manifests/gateway-api-crds.yaml")"
if [ -z "$version" ]; then
  echo "ERROR: cannot read the pinned suite version from $mod/go.mod" >&2
  exit 1
fi
# The suite refuses CRDs of another bundle version: keep the pin and the manifests in step.
if [ "$version" != "$crds_version" ]; then
  echo "ERROR: tools/conformance pins $version but manifests/gateway-api-crds.yaml is bundle-version $crds_version" >&2
  exit 1
fi
bin="${XDG_CACHE_HOME:-$HOME/.cache}/sluice/conformance-${version#v}/bin"
if [ "${1:-}" = "--print-dir" ]; then
  echo "$bin"
  exit 0
fi
command -v go >/dev/null || { echo "ERROR: go is required to build the conformance suite" >&2; exit 1; }
mkdir -p "$bin"
exec 9>"$bin/../build.lock"
flock 9

if [ ! -x "$bin/echo-basic" ]; then
  echo "building echo-basic $version (first time only)" >&2
  start=$SECONDS
  (cd "$mod" && CGO_ENABLED=0 go build -trimpath -o "$bin/echo-basic.tmp" \
    sigs.k8s.io/gateway-api/conformance/echo-basic)
  mv "$bin/echo-basic.tmp" "$bin/echo-basic"
  echo "built echo-basic in $((SECONDS - start)) s" >&2
fi

if [ ! -x "$bin/conformance.test" ]; then
  echo "building the conformance suite $version (first time only)" >&2
  start=$SECONDS
  (cd "$mod" && CGO_ENABLED=0 go test -c -trimpath -o "$bin/conformance.test.tmp" .)
  mv "$bin/conformance.test.tmp" "$bin/conformance.test"
  echo "built the conformance suite in $((SECONDS - start)) s" >&2
fi
echo "$bin"
