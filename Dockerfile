# One image per binary of the workspace, from the same file:
#
#   docker build --build-arg BINARY=oaas-pm -t ghcr.io/oaas/oaas-pm .
#   docker build --build-arg BINARY=oaas-crm --build-arg PORTS="8088 8089" \
#     -t ghcr.io/oaas/oaas-crm .
#   docker build --build-arg BINARY=oaas-echo-function -t ghcr.io/oaas/echo-function .
#   docker build --build-arg BINARY=odgm-test-double --build-arg PORTS=8081 \
#     -t ghcr.io/oaas/odgm-test-double .
#
# The build stage compiles every image's binary at once and does not depend on BINARY, so
# the four builds share it. Protobuf code generation uses the protoc vendored by
# protoc-bin-vendored (proto/build.rs): no system protoc is needed. The registry and target
# directories are BuildKit cache mounts, so rebuilds only compile what changed.
#
# RUST_IMAGE and RUNTIME_IMAGE are build arguments so that a machine without registry access
# can substitute images it made itself (hack/images.sh does: a Debian base from debootstrap,
# and a Rust image from the local toolchain).

ARG RUST_IMAGE=rust:1-bookworm
ARG RUNTIME_IMAGE=gcr.io/distroless/cc-debian12:nonroot

FROM ${RUST_IMAGE} AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release --locked -p oaas-pm -p oaas-crm -p oaas-functions --bins \
 && mkdir -p /out \
 && for b in oaas-pm oaas-crm oaas-echo-function odgm-test-double; do \
      install -m 0755 "target/release/$b" "/out/$b"; \
    done

# The one binary this image is for; a missing or unknown BINARY stops the build here.
FROM build AS binary
ARG BINARY
RUN test -n "${BINARY}" -a -x "/out/${BINARY}" \
 || { echo "set --build-arg BINARY= to one of:" $(ls /out) >&2; exit 1; }

FROM ${RUNTIME_IMAGE}
ARG BINARY
# Documentation only; the Deployments name their ports. PM: 8080 (REST, health, metrics).
# CRM: 8088 (gRPC + HTTP), 8089 (plaintext health and metrics with OPRC_CRM_OPS_PORT).
# Echo function: 8080 (HTTP_PORT). ODGM test double: 8081 (ODGM_HTTP_PORT).
ARG PORTS=8080
LABEL org.opencontainers.image.title="${BINARY}" \
      org.opencontainers.image.source="https://github.com/oaas-io/oaas-control-plane" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=binary /out/${BINARY} /usr/local/bin/app
# distroless's nonroot user, numerically, so that runAsNonRoot can verify it.
USER 65532:65532
EXPOSE ${PORTS}
ENTRYPOINT ["/usr/local/bin/app"]
