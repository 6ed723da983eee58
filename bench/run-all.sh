#!/usr/bin/env bash
# `make bench`: install the load generators and peer proxies (by package name), retrain the PGO
# profile (pgo.sh) and build release binaries, run the interleaved side-by-side benchmark (direct,
# nginx, Envoy, HAProxy, sluice as shipped: PGO build with a pushed config, the same + controller
# in --manifests mode, and the proxy built without PGO), then the scale figures. See README.md.
#
# Knobs (env): RUNS=3  TARGETS="all sluice-nopgo sluice-plugins sluice-json sluice-otel sluice-otel-full"  SCALE=1 (0: skip scale.sh)
#   PGO_TRAIN=1 (0: build with the committed pgo/sluice-proxy.profdata as it is)  IDLE=1 (0: skip the idle-connections run)
#   and run.sh's: PIN GRPC_N HTTP_SECS STREAM_N STREAM_MSGS HS_SECS HS_CLIENTS TESTS OUT
# A short run:  RUNS=2 GRPC_N=100000 HTTP_SECS=5 make bench
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
cd "$HERE"
./setup.sh
[ "${PGO_TRAIN:-1}" = 1 ] && ./pgo.sh
# One cargo call per binary, as the Dockerfile: built together, the controller's features of shared
# crates (tracing's `log`) reach the proxy and cost it 8% more instructions per gRPC call.
# `make release`: the PGO proxy in target/pgo/release; the proxy without PGO in target/release.
(cd .. && make release && cargo build --release --locked -p proxy \
    && cargo build --release --locked -p sluice-demo --bin sluice-otlp-sink)
RUNS=${RUNS:-3}
# shellcheck disable=SC2086
./run.sh -r "$RUNS" ${TARGETS:-all sluice-nopgo sluice-plugins sluice-json sluice-otel sluice-otel-full}
if [ "${IDLE:-1}" = 1 ]; then
    # Memory per idle connection (idle.sh): its own invocation, one round, every proxy.
    TESTS=idle FIXED=0 OUT=results-$(date +%F)-idle.md ./run.sh -r 1 nginx envoy haproxy sluice
fi
if [ "${SCALE:-1}" = 1 ]; then
    # The shipped (PGO) proxy.
    SLUICE_PROXY=${SLUICE_PROXY:-$HERE/../target/pgo/release/sluice-proxy} ROUTER_BENCH=${ROUTER_BENCH:-1} ./scale.sh
fi
