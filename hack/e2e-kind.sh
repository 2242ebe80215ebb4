#!/usr/bin/env bash
# The e2e suite against the system on kind. Brings it up first (hack/kind-up.sh, which only
# does what is missing), then:
#   1. e2e/tests/kind.rs: the system installed in the clusters, one test at a time (one
#      deletes a spoke's CRM Pods);
#   2. every other e2e suite, whose tests run their own PM and CRM processes on the host
#      against the kind API servers. The hub's installed PM is scaled to zero meanwhile
#      (it watches every namespace and would reconcile the tests' objects too) and restored
#      afterwards.
# Extra arguments go to the test binaries (a name filter).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"

bash "$HACK_DIR/kind-up.sh"
export KUBECONFIG="$KIND_KUBECONFIG"
export PATH="$K8S_BIN:$KIND_BIN:$PATH"
# Fault tests stop control-plane components through kind's static Pod manifests.
export OAAS_E2E_CONTROL_PLANE="$REPO_ROOT/kind/create.sh"

# The suite's workloads name placeholder images (img/<name>:<n>, and the samples' next
# version) that kwok "runs" without any image. On kind they must exist: they are the echo
# function image under those names, loaded into the spokes.
E2E_IMAGES=(img/f:1 img/f:2 img/f:3 img/echo:1 img/echo:2 img/echo:3 img/update:1
  img/update:2 img/work:1 img/work:2 img/add:1 ghcr.io/oaas/echo-function:0.1.1)
for image in "${E2E_IMAGES[@]}"; do docker tag ghcr.io/oaas/echo-function:0.1.0 "$image"; done
for spoke in spoke-a spoke-b; do
  kind load docker-image --name "oaas-$spoke" "${E2E_IMAGES[@]}" >/dev/null
done

status=0
cargo test -p oaas-e2e --features kind --test kind -- --include-ignored --test-threads=1 "$@" \
  || status=1

log "scaling the hub's PM to zero for the suites that run their own"
pm=(kubectl --context oaas-hub -n oaas-system)
replicas="$("${pm[@]}" get deployment/oaas-pm -o jsonpath='{.spec.replicas}')"
trap '"${pm[@]}" scale deployment/oaas-pm --replicas="$replicas" >/dev/null' EXIT
"${pm[@]}" scale deployment/oaas-pm --replicas=0 >/dev/null
"${pm[@]}" wait --for=delete pod -l app.kubernetes.io/name=oaas-pm --timeout=60s >/dev/null
suites=()
for f in e2e/tests/*.rs; do
  name="$(basename "$f" .rs)"
  [[ $name == kind ]] || suites+=(--test "$name")
done
cargo test -p oaas-e2e "${suites[@]}" --no-fail-fast -- --include-ignored "$@" || status=1
exit "$status"
