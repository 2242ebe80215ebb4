#!/usr/bin/env bash
# The e2e tests against the system on kind: brings it up first (hack/kind-up.sh, which only
# does what is missing), then runs e2e/tests/kind.rs (the system installed in the clusters)
# and the suites that start no operator processes of their own (clusters, crd_schemas), one
# test at a time (one deletes a spoke's CRM Pods). Extra arguments go to the test binaries
# (a name filter). The other suites stay on the loopback clusters: docs/testing.md, "Not on
# kind", says why.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"

bash "$HACK_DIR/kind-up.sh"
export KUBECONFIG="$KIND_KUBECONFIG"
export PATH="$K8S_BIN:$KIND_BIN:$PATH"
cargo test -p oaas-e2e --features kind --test kind --test clusters --test crd_schemas -- \
  --include-ignored --test-threads=1 "$@"
