#!/usr/bin/env bash
# Runs every fuzz target for SECONDS each (default 20): `make test` uses 20, `make fuzz` 600.
# Needs the nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz`). Each target starts from
# fuzz/corpus/<target> (committed, minimised) and fuzz/seeds/<target> (committed, hand-written);
# what it finds goes to fuzz/.work/<target> (ignored by git), so a run leaves the tree clean.
# To refresh a committed corpus after a long run, minimised to the inputs that cover every edge
# (counters off: a few hundred files, tens of KB, instead of thousands):
#   cp fuzz/.work/T/* fuzz/corpus/T/ && (cd fuzz && cargo +nightly fuzz cmin T corpus/T -- -use_counters=0)
# Prints one line per target: executions, seconds, and OK or the crash artifact.
set -euo pipefail
secs="${1:-20}"
cd "$(dirname "$0")"
status=0
# FUZZ_BUILD=--dev builds without optimisation (a much shorter build for a short run).
# FUZZ_TARGETS picks targets (default: all). `make test` leaves out `annotations`: it builds the
# whole controller (kube, k8s-openapi, gateway-api) with sanitizer instrumentation, minutes on 2 cores.
for target in ${FUZZ_TARGETS:-listen config router upstream_h1 downstream_h1 differential_h1 differential_upstream_h1 annotations}; do
    features=()
    [ "$target" = annotations ] && features=(--features controller)
    mkdir -p ".work/$target" "corpus/$target" "seeds/$target"
    log="$(mktemp)"
    if cargo +nightly fuzz run ${FUZZ_BUILD:-} "${features[@]}" "$target" ".work/$target" "corpus/$target" "seeds/$target" -- \
        -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 >"$log" 2>&1; then
        result=OK
    else
        result="FAILED: $(grep -o 'artifacts/[^ ]*' "$log" | tail -1 || true)"
        status=1
        tail -40 "$log" >&2
    fi
    runs="$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1 || true)"
    corpus="$(cat <(ls ".work/$target") <(ls "corpus/$target") | sort -u | wc -l)"
    echo "fuzz $target: ${runs:-?} execs in ${secs}s, corpus $corpus, $result"
    rm -f "$log"
done
exit $status
