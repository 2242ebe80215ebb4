# OaaS control plane: every routine task. `just --list` is the manual.

set shell := ["bash", "-euo", "pipefail", "-c"]

export KUBECONFIG := env("KUBECONFIG", `bash hack/cluster.sh kubeconfig`)

# List the recipes
default:
    @just --list --unsorted

# Install every tool the project needs (Debian packages, just, Kubernetes binaries); idempotent
bootstrap:
    bash hack/bootstrap.sh

# Bring the whole system up on local clusters: hub + 2 spokes, PM, CRMs, samples
up:
    bash hack/up.sh

# Stop everything `up` started
down: cluster-down

# Run the whole test suite: lint, unit, and tests against real API servers (what CI runs)
test:
    bash hack/test.sh

# Unit tests only; needs no cluster
unit:
    cargo test --workspace --all-targets

# Tests against the running clusters only (start them with `just cluster-up`)
e2e *ARGS:
    cargo build --workspace --bins
    cargo test --workspace --all-targets -- --ignored {{ARGS}}

# Fuzz the PM's REST facade from its OpenAPI document with schemathesis (needs cluster-up)
fuzz-rest:
    bash hack/fuzz-rest.sh

# Convert an OaaS package file (YAML or JSON) into OPackage/OClassDeployment manifests
convert FILE *ARGS:
    @cargo run -q -p oaas-pm -- convert {{ARGS}} {{FILE}}

# Delete namespaces that failed e2e tests left behind, in every cluster
e2e-clean:
    cargo run -q -p oaas-e2e --bin e2e-clean

# Regenerate manifests/crds/*.yaml from the Rust types in crds/ (a test fails if they drift)
generate:
    cargo run -q -p oaas-crds --bin crdgen

# Benchmarks on real local clusters (release build); prints a table, writes target/bench.json
bench *ARGS:
    bash hack/bench.sh {{ARGS}}

# Formatting, clippy and script checks
lint:
    bash hack/lint.sh

# Format the code
fmt:
    cargo fmt --all

# Build every crate
build:
    cargo build --workspace

# Start the hub and two spokes (etcd, API server, controller-manager, scheduler, kwok each)
cluster-up:
    bash hack/cluster.sh up

# Stop the local clusters and remove their state
cluster-down:
    bash hack/cluster.sh down

# Show the local clusters' components and nodes
cluster-status:
    bash hack/cluster.sh status

# Print the path of the kubeconfig with the oaas-hub, oaas-spoke-a, oaas-spoke-b contexts
kubeconfig:
    @bash hack/cluster.sh kubeconfig

# The whole system on kind: hub + 2 spokes as kind clusters, PM and CRMs as Pods from images built here, samples
kind-up:
    bash hack/kind-up.sh

# Delete the kind clusters kind-up made, and their kubeconfig
kind-down:
    bash kind/create.sh down

# Print the path of the kind clusters' kubeconfig (contexts oaas-hub, oaas-spoke-a, oaas-spoke-b)
kind-kubeconfig:
    @bash kind/create.sh kubeconfig

# The kind e2e tests against the system on kind (brings it up first if needed)
e2e-kind *ARGS:
    bash hack/e2e-kind.sh {{ARGS}}

# Build the container images here, without a registry: node | operators | all
images *ARGS:
    bash hack/images.sh {{ARGS}}
