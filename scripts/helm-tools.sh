#!/usr/bin/env bash
# Builds helm from its Go module (helm.sh/helm/v4/cmd/helm, pinned in tools/helm/go.mod) into a
# cache outside the repository keyed by version, and only when the binary there is missing:
#   ${XDG_CACHE_HOME:-$HOME/.cache}/sluice/helm-<version>/bin/helm
# Prints that bin directory on its last line. `helm-tools.sh --print-dir` prints it without building.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
mod="$root/tools/helm"
version="$(awk '$1 == "helm.sh/helm/v4" && $2 ~ /^v/ {print $2}' "$mod/go.mod")"
if [ -z "$version" ]; then
  echo "ERROR: cannot read the pinned helm version from $mod/go.mod" >&2
  exit 1
fi
bin="${XDG_CACHE_HOME:-$HOME/.cache}/sluice/helm-${version#v}/bin"
if [ "${1:-}" = "--print-dir" ]; then
  echo "$bin"
  exit 0
fi
command -v go >/dev/null || { echo "ERROR: go is required to build helm" >&2; exit 1; }
mkdir -p "$bin"
# Test binaries may call this script concurrently: one builds, the others wait for it.
exec 9>"$bin/../build.lock"
flock 9
if [ ! -x "$bin/helm" ]; then
  echo "building helm $version (first time only; a few minutes on 2 cores)" >&2
  start=$SECONDS
  # As upstream's Makefile: the version `helm version` reports.
  ld="-s -w -X helm.sh/helm/v4/internal/version.version=$version"
  (cd "$mod" && CGO_ENABLED=0 go build -trimpath -ldflags "$ld" -o "$bin/helm.tmp" helm.sh/helm/v4/cmd/helm)
  mv "$bin/helm.tmp" "$bin/helm"
  echo "built helm in $((SECONDS - start)) s" >&2
fi
"$bin/helm" version --short >&2
echo "$bin"
