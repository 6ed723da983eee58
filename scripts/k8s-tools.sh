#!/usr/bin/env bash
# Builds the real Kubernetes control plane the e2e tests run against (kube-apiserver from
# k8s.io/kubernetes, etcd from go.etcd.io/etcd/server/v3; modules in tools/k8s/) into a cache
# outside the repository keyed by version, and only when a binary there is missing:
#   ${XDG_CACHE_HOME:-$HOME/.cache}/sluice/k8s-<version>/bin/{kube-apiserver,etcd}
# Prints that bin directory on its last line. `k8s-tools.sh --print-dir` prints it without building.
# Versions are read from the go.mod files, so bumping one there moves the cache key with it.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
mod="$root/tools/k8s"
k8s_version="$(awk '$1 == "k8s.io/kubernetes" && $2 ~ /^v/ {print $2}' "$mod/go.mod")"
etcd_version="$(awk '$1 == "go.etcd.io/etcd/server/v3" && $2 ~ /^v/ {print $2}' "$mod/etcd/go.mod")"
if [ -z "$k8s_version" ] || [ -z "$etcd_version" ]; then
  echo "ERROR: cannot read the pinned versions from $mod/go.mod and $mod/etcd/go.mod" >&2
  exit 1
fi
bin="${XDG_CACHE_HOME:-$HOME/.cache}/sluice/k8s-${k8s_version#v}-etcd-${etcd_version#v}/bin"
if [ "${1:-}" = "--print-dir" ]; then
  echo "$bin"
  exit 0
fi
command -v go >/dev/null || { echo "ERROR: go is required to build kube-apiserver and etcd" >&2; exit 1; }
mkdir -p "$bin"
# Test binaries call this script concurrently: one builds, the others wait for it.
exec 9>"$bin/../build.lock"
flock 9
build_date="$(date -u +%Y-%m-%dT%H:%M:%SZ)"

if [ ! -x "$bin/kube-apiserver" ]; then
  echo "building kube-apiserver $k8s_version (first time only; about 15 minutes on 2 cores)" >&2
  minor="${k8s_version#v1.}"; minor="${minor%%.*}"
  ld="-s -w"
  # As upstream's hack/lib/version.sh, so /version (and kubectl version) report the real version.
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ld+=" -X $pkg.gitVersion=$k8s_version -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
    ld+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=$build_date"
  done
  start=$SECONDS
  (cd "$mod" && CGO_ENABLED=0 go build -trimpath -ldflags "$ld" -o "$bin/kube-apiserver.tmp" \
    k8s.io/kubernetes/cmd/kube-apiserver)
  mv "$bin/kube-apiserver.tmp" "$bin/kube-apiserver"
  echo "built kube-apiserver in $((SECONDS - start)) s" >&2
fi

if [ ! -x "$bin/etcd" ]; then
  echo "building etcd $etcd_version (first time only)" >&2
  start=$SECONDS
  (cd "$mod/etcd" && CGO_ENABLED=0 go build -trimpath \
    -ldflags "-s -w -X go.etcd.io/etcd/api/v3/version.GitSHA=$etcd_version" \
    -o "$bin/etcd.tmp" go.etcd.io/etcd/server/v3)
  mv "$bin/etcd.tmp" "$bin/etcd"
  echo "built etcd in $((SECONDS - start)) s" >&2
fi
"$bin/kube-apiserver" --version >&2
"$bin/etcd" --version | head -1 >&2
echo "$bin"
