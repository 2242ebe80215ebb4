#!/usr/bin/env bash
# The e2e tests against the system on kind: brings it up first (hack/kind-up.sh, which only
# does what is missing), then runs e2e/tests/kind.rs (the system in the clusters) and the
# suites that need no operator processes of their own (clusters, crd_schemas), one test at a
# time (one deletes a spoke's CRM Pods). Extra arguments go to the test binaries (a filter).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"

bash "$HACK_DIR/kind-up.sh"
export KUBECONFIG="$KIND_KUBECONFIG"
export PATH="$K8S_BIN:$KIND_BIN:$PATH"
# Fault tests stop control-plane components through kind's static Pod manifests.
export OAAS_E2E_CONTROL_PLANE="$REPO_ROOT/kind/create.sh"
cargo test -p oaas-e2e --features kind --test kind --test clusters --test crd_schemas -- \
  --include-ignored --test-threads=1 "$@"
