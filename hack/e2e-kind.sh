#!/usr/bin/env bash
# The kind test bed's e2e tests (e2e/tests/kind.rs) against the system on kind: brings it up
# first (hack/kind-up.sh, which only does what is missing), then runs the tests one at a time
# (one deletes a spoke's CRM Pods). Extra arguments go to the test binary (a name filter).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"

bash "$HACK_DIR/kind-up.sh"
export KUBECONFIG="$KIND_KUBECONFIG"
export PATH="$K8S_BIN:$KIND_BIN:$PATH"
# Fault tests stop control-plane components through kind's static Pod manifests.
export OAAS_E2E_CONTROL_PLANE="$REPO_ROOT/kind/create.sh"
cargo test -p oaas-e2e --features kind --test kind -- --include-ignored --test-threads=1 "$@"
