# syntax=docker/dockerfile:1
# One image per operator, from the same file:
#
#   docker build --build-arg BINARY=oaas-pm -t ghcr.io/oaas/oaas-pm .
#   docker build --build-arg BINARY=oaas-crm --build-arg PORTS="8088 8089" \
#     -t ghcr.io/oaas/oaas-crm .
#
# BINARY is both the Cargo package and its binary (operators/pm, operators/crm). Protobuf code
# generation uses the protoc vendored by protoc-bin-vendored (proto/build.rs): no system
# protoc is needed. The registry and target directories are BuildKit cache mounts, so
# rebuilds only compile what changed.

ARG RUST_IMAGE=rust:1-bookworm
ARG RUNTIME_IMAGE=gcr.io/distroless/cc-debian12:nonroot

FROM ${RUST_IMAGE} AS build
ARG BINARY
RUN test -n "${BINARY}" || { echo "set --build-arg BINARY=oaas-pm or oaas-crm" >&2; exit 1; }
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release --locked -p "${BINARY}" --bin "${BINARY}" \
 && install -D -m 0755 "target/release/${BINARY}" /out/operator

FROM ${RUNTIME_IMAGE}
ARG BINARY
# Documentation only; the Deployments name their ports. PM: 8080 (REST, health, metrics).
# CRM: 8088 (gRPC + HTTP), 8089 (plaintext health and metrics with OPRC_CRM_OPS_PORT).
ARG PORTS=8080
LABEL org.opencontainers.image.title="${BINARY}" \
      org.opencontainers.image.source="https://github.com/oaas-io/oaas-control-plane" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /out/operator /usr/local/bin/operator
# distroless's nonroot user, numerically, so that runAsNonRoot can verify it.
USER 65532:65532
EXPOSE ${PORTS}
ENTRYPOINT ["/usr/local/bin/operator"]
