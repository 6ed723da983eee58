# syntax=docker/dockerfile:1
# One image with both binaries; the Deployment (manifests/30-deployment.yaml) picks one per container
# with `command`. Build from the repository root:
#
#   docker build -t sluice:dev .
#
# Runs as uid/gid 65532 (non-root) and needs nothing writable but the shared /var/run/sluice volume.

FROM rust:1.95-bookworm AS builder
WORKDIR /src
COPY . .
# The whole workspace is copied (cargo reads every member's manifest) but only the two binaries are
# built, one cargo call each (`make release`): built together, the controller's features of shared
# crates (tracing's `log`) reach the proxy too, +8% instructions per gRPC call (bench/callgrind.sh).
# The proxy is built with the committed profile pgo/sluice-proxy.profdata (profile-guided
# optimisation, -25% instructions per gRPC call; bench/pgo.sh retrains it), in target/pgo. The cache
# mounts keep the registry and target/ between builds; they are not in the image.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target \
    make release \
 && install -D -m 0755 target/pgo/release/sluice-proxy /out/sluice-proxy \
 && install -D -m 0755 target/release/sluice-controller /out/sluice-controller

FROM debian:bookworm-slim
# ca-certificates: trust roots for TLS to upstreams and to the API server outside a cluster. Not
# pinned: it should follow the distribution's updates.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 65532 sluice \
 && useradd --system --uid 65532 --gid 65532 --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin sluice \
 && install -d -o 65532 -g 65532 -m 0700 /var/run/sluice
COPY --from=builder /out/sluice-proxy /out/sluice-controller /usr/local/bin/
USER 65532:65532
# proxy (h2c + HTTP/1.1), proxy TLS, proxy status + /metrics, controller health, controller /metrics
EXPOSE 8000 8443 8100 10254 10255
CMD ["/usr/local/bin/sluice-proxy"]
