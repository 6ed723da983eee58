#!/usr/bin/env bash
# `make bench`: install the load generators and peer proxies (by package name), build release
# binaries, run the interleaved side-by-side benchmark (direct, nginx, Envoy, HAProxy, sluice with
# a pushed config, sluice + controller in --manifests mode, sluice with SLUICE_METRICS=off), then
# the scale figures. See README.md.
#
# Knobs (env): RUNS=3  TARGETS="all sluice-nometrics"  SCALE=1 (0: skip scale.sh)
#   and run.sh's: PIN GRPC_N HTTP_SECS STREAM_N STREAM_MSGS HS_SECS HS_CLIENTS TESTS OUT
# A short run:  RUNS=2 GRPC_N=100000 HTTP_SECS=5 make bench
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
cd "$HERE"
./setup.sh
# One cargo call per binary, as the Dockerfile: built together, the controller's features of shared
# crates (tracing's `log`) reach the proxy and cost it 8% more instructions per gRPC call.
(cd .. && cargo build --release -p proxy && cargo build --release -p controller)
RUNS=${RUNS:-3}
# shellcheck disable=SC2086
./run.sh -r "$RUNS" ${TARGETS:-all sluice-nometrics}
if [ "${SCALE:-1}" = 1 ]; then
    ROUTER_BENCH=${ROUTER_BENCH:-1} ./scale.sh
fi
