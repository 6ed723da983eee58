#!/usr/bin/env bash
# `make soak`: the mixed soak against a release build of sluice-proxy, run by the
# ignored test proxy/tests/reliability_soak.rs. HTTP/1.1 keep-alive (4 × ~100 req/s), h2c gRPC
# unary (2 × ~100 calls/s), gRPC server streams (2 loops of 50 × 20 ms) and client streams, and
# a config push every 10 s; RSS sampled every 5 s.
#   SOAK_SECONDS  run length (default 1800)
#   SOAK_LOG      where the output is kept (default soak/last-run.log)
# Exit status: non-zero on any request/push error or RSS drift ≥ 5% (baseline = end of warm-up,
# 10% of the run, at least 30 s). The last line of the log is `SOAK RESULT {json}`.
set -euo pipefail
cd "$(dirname "$0")/.."
export SOAK_SECONDS="${SOAK_SECONDS:-1800}"
log="${SOAK_LOG:-soak/last-run.log}"
cargo test --release -p proxy --test reliability_soak --no-run
cargo test --release -p proxy --test reliability_soak -- --ignored --nocapture --test-threads=1 mixed_soak 2>&1 | tee "$log"
grep 'SOAK RESULT' "$log" | tail -1
