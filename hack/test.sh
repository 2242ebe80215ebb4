#!/usr/bin/env bash
# The whole test suite: lint, unit tests, and the tests against real API servers.
# Uses running local clusters if there are any; otherwise starts them and, at the end,
# stops them and checks that nothing of ours is left running.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"

start=$SECONDS
bash "$HACK_DIR/lint.sh"

if bash "$HACK_DIR/cluster.sh" running; then
  log "using the running local clusters"
else
  bash "$HACK_DIR/cluster.sh" up
  trap 'bash "$HACK_DIR/cluster.sh" down && bash "$HACK_DIR/cluster.sh" assert-down' EXIT
fi
export KUBECONFIG="$OAAS_KUBECONFIG"
export PATH="$K8S_BIN:$PATH"

# --include-ignored runs the cluster tests too; plain `cargo test` skips them.
cargo test --workspace --all-targets -- --include-ignored
log "test suite finished in $((SECONDS - start))s"
