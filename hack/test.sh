#!/usr/bin/env bash
# The whole test suite: lint, unit tests, and the tests against real API servers.
# Uses running local clusters if there are any; otherwise starts them and, at the end,
# stops them and checks that nothing of ours is left running (itself a test).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"

start=$SECONDS
bash "$HACK_DIR/lint.sh"

started_clusters=false
if bash "$HACK_DIR/cluster.sh" running; then
  log "using the running local clusters"
else
  trap 'bash "$HACK_DIR/cluster.sh" down' EXIT # on interruption; the normal path is below
  bash "$HACK_DIR/cluster.sh" up
  started_clusters=true
fi
export KUBECONFIG="$OAAS_KUBECONFIG"
export PATH="$K8S_BIN:$PATH"

# The e2e tests run the operators as processes, so their binaries must exist.
cargo build --workspace --bins
# --include-ignored runs the cluster tests too; plain `cargo test` skips them.
results="$(mktemp)"
status=0
passed=0 failed=0
# count FILE: adds the passed and failed counts of cargo's "test result:" lines in FILE.
count() {
  local p f
  read -r p f < <(awk '/^test result:/ {
    for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i }
  } END { print p + 0, f + 0 }' "$1")
  passed=$((passed + p)) failed=$((failed + f))
}
# --no-fail-fast: one failing test binary must not hide the results of the others.
cargo test --workspace --all-targets --no-fail-fast -- --include-ignored 2>&1 | tee "$results" || status=$?
count "$results"

# The REST facade fuzzed from its OpenAPI document: one test in the summary.
if bash "$HACK_DIR/fuzz-rest.sh"; then
  passed=$((passed + 1))
else
  failed=$((failed + 1)); status=1
fi

if $started_clusters; then
  trap - EXIT
  if bash "$HACK_DIR/cluster.sh" down && bash "$HACK_DIR/cluster.sh" assert-down; then
    passed=$((passed + 1))
  else
    failed=$((failed + 1)); status=1
  fi
fi

# The kind test bed: the system from its own images in real clusters with real Pods. Clusters
# that were running before are kept; those made here are deleted at the end.
kind_start=$SECONDS
kind_was_up=false
bash "$REPO_ROOT/kind/create.sh" running && kind_was_up=true
if bash "$HACK_DIR/e2e-kind.sh" 2>&1 | tee "$results"; then
  count "$results"
else
  status=1
  count "$results"
  # kind-up itself failing leaves no test result: count it as a failure.
  grep -q '^test result:' "$results" || failed=$((failed + 1))
fi
$kind_was_up || bash "$REPO_ROOT/kind/create.sh" down
log "kind stage finished in $((SECONDS - kind_start))s"
rm -f "$results"
log "test suite finished in $((SECONDS - start))s"
echo "summary: ${passed:-0} passed, ${failed:-0} failed"
exit "$status"
