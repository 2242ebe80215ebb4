#!/usr/bin/env bash
# Benchmarks against real local clusters (started and stopped here if none are running).
# Prints one table and writes target/bench.json. Arguments go to the bench binary.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"

if ! bash "$HACK_DIR/cluster.sh" running; then
  trap 'bash "$HACK_DIR/cluster.sh" down' EXIT
  bash "$HACK_DIR/cluster.sh" up
fi
export KUBECONFIG="$OAAS_KUBECONFIG"
cargo build --release --workspace --bins
BENCH_OUT="${BENCH_OUT:-${CARGO_TARGET_DIR:-target}/bench.json}" "${CARGO_TARGET_DIR:-target}/release/bench" "$@"
