# sluice: the two commands that matter are `make demo` and `make test`.
SHELL := /bin/bash
CARGO ?= cargo
# Test threads: tests are I/O-bound (loopback servers), so more threads than the 2 cores help.
TEST_THREADS ?= 4
# No incremental cache for make's builds: it doubles target/ (a clean `make test` needs ~3 GB of
# disk without it, ~6 GB with it) and a from-scratch CI build never reuses it. Plain `cargo`
# keeps its default.
export CARGO_INCREMENTAL ?= 0

.PHONY: help build release pgo-profile demo cluster cluster-down test deps deps-audit lint fmt fmt-check clippy doc-refs unit crds crds-check bench bench-scale fuzz fuzz-short soak clean-demo peers-report conformance

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/' | expand -t 16

build: ## Build every binary (debug)
	$(CARGO) build --workspace --bins

# The proxy as shipped (Dockerfile): release, built with the profile in pgo/ (profile-guided
# optimisation, bench/pgo.sh), in its own target dir so that plain `cargo build --release` builds
# (target/release, without PGO) do not rebuild it. One cargo call per binary, as the Dockerfile.
release: ## Release binaries: target/pgo/release/sluice-proxy (PGO), target/release/sluice-controller
	CARGO_TARGET_DIR=target/pgo RUSTFLAGS="-Cprofile-use=$(CURDIR)/pgo/sluice-proxy.profdata" \
		$(CARGO) build --release --locked -p proxy
	$(CARGO) build --release --locked -p controller

pgo-profile: ## Retrain pgo/sluice-proxy.profdata (after changing the request path; see bench/pgo.sh)
	./bench/pgo.sh

demo: ## Start backends, proxy and controller on examples/, make the example calls (DEMO_ONESHOT=1 to exit after)
	./scripts/demo.sh

cluster: ## Real kube-apiserver + etcd with sluice on it, in the background; writes .run/cluster/env
	./scripts/cluster.sh up

cluster-down: ## Stop what make cluster started
	./scripts/cluster.sh down

test: deps lint deps-audit unit crds-check fuzz-short ## Everything CI runs: fmt, clippy, dependency audit, unit, golden, integration, e2e, CRD drift, short fuzz
	@echo "make test: all checks passed"

deps: ## Install test dependencies by package name (idempotent)
	./scripts/install-deps.sh

lint: fmt-check clippy doc-refs ## cargo fmt --check, clippy -D warnings, no reference outside the repository

fmt: ## Format the workspace
	$(CARGO) fmt --all

fmt-check:
	$(CARGO) fmt --all -- --check

deps-audit: ## No unused dependency (cargo machete) and every crate under an allowed license
	cargo machete
	./scripts/check-licenses.py

doc-refs: ## Fail naming file:line where code or docs cite notes outside the repository or an issue number
	./scripts/check-doc-refs.sh

clippy:
	$(CARGO) clippy --workspace --all-targets -- -D warnings

unit: ## Unit, golden, integration and e2e tests (with h2spec and the gRPC interop matrix, docs/conformance.md)
	$(CARGO) test --workspace -- --test-threads=$(TEST_THREADS)

crds: ## Regenerate crds/ and the Gateway API CRDs in manifests/, and the Helm chart's copies of both
	$(CARGO) run -q -p controller --bin crdgen
	cp crds/*.yaml charts/sluice/crds/
	cp manifests/gateway-api-crds.yaml charts/sluice/charts/gateway-api-crds/crds/

crds-check: ## Fail when crds/ is stale (the controller's crds_fresh test does the comparison)
	@test -d crds || { echo "crds/ missing: run make crds"; exit 1; }

peers-report: deps ## Rerun h2spec and the gRPC interop matrix (part of make test); rewrite docs/conformance.md
	CARGO=$(CARGO) ./peers/report.sh

conformance: ## Gateway API conformance suite on a real kube-apiserver; report in conformance/ (docs/conformance.md)
	CARGO=$(CARGO) ./scripts/conformance.sh

bench: ## Side-by-side benchmark with direct, Envoy, nginx and HAProxy (see bench/README.md)
	./bench/run-all.sh

bench-scale: ## 100,000 routes pushed under gRPC load: push-to-live, RSS, p99, callgrind lookup (bench/README.md)
	$(CARGO) build --release --locked -p proxy
	./bench/setup.sh
	SLUICE_PROXY=$${CARGO_TARGET_DIR:-$(CURDIR)/target}/release/sluice-proxy ./bench/scale100k.sh

fuzz: ## Long fuzz run (10 minutes per target)
	./fuzz/run.sh 600

fuzz-short: ## Short fuzz run of the proxy-side targets (part of make test)
	FUZZ_BUILD=--dev FUZZ_TARGETS="listen config router upstream_h1 downstream_h1 differential_h1 differential_upstream_h1" ./fuzz/run.sh $${FUZZ_SECONDS:-15}

soak: ## 30-minute mixed soak (SOAK_SECONDS to change)
	./soak/soak.sh
