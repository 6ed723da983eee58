#!/usr/bin/env bash
# `make conformance`: the Gateway API conformance suite against sluice on a real kube-apiserver.
# Builds (once, cached) kube-apiserver + etcd (scripts/k8s-tools.sh) and the suite + its echo
# backend (scripts/conformance-tools.sh), builds sluice's binaries, then runs
# target/debug/sluice-conformance, which starts everything, runs the suite and stops everything.
# Writes the report under conformance/reports/<suite version>/sluice/ and logs under
# .run/conformance/. Exits 0 only when every GRPCRoute core test passed.
# Extra arguments go to the suite, e.g. `scripts/conformance.sh --run-test=GRPCRouteWeight`.
# Needs root (network namespaces for the backends) and iproute2.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
"$root/scripts/k8s-tools.sh" >/dev/null
suite_bin="$("$root/scripts/conformance-tools.sh" | tail -1)"
version="$(basename "$(dirname "$suite_bin")")"
version="v${version#conformance-}"
target="${CARGO_TARGET_DIR:-$root/target}"
${CARGO:-cargo} build -q -p proxy -p controller -p e2e --bins
reports="$root/conformance/reports/$version/sluice"
mkdir -p "$reports" "$root/.run/conformance"
sluice_version="$(awk -F'"' '/^version *=/ {print $2; exit}' "$root/Cargo.toml")"
start=$SECONDS
status=0
"$target/debug/sluice-conformance" --dir "$root/.run/conformance" --bin-dir "$target/debug" \
  --suite-dir "$suite_bin" --report "$reports/standard-v$sluice_version-default-report.yaml" \
  --summary "$reports/results.md" -- "$@" || status=$?
echo "make conformance: $((SECONDS - start)) s, exit $status (report and per-test results in $reports)"
exit $status
