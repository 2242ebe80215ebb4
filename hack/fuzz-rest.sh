#!/usr/bin/env bash
# Fuzzes the PM's REST facade from its own OpenAPI document with schemathesis: a PM on the
# running hub, scoped to a namespace of its own (with the sample package in it), gets
# generated valid and invalid requests for every operation. Fails on any 5xx answer or an
# answer that does not match the document. Needs running clusters (`just cluster-up`).
# FUZZ_MAX_EXAMPLES (default 50) sets the examples per operation.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"

[[ -x "$SCHEMATHESIS_VENV/bin/schemathesis" ]] || die "schemathesis is missing: run hack/bootstrap.sh"
bash "$HACK_DIR/cluster.sh" running || die "the local clusters are not running: just cluster-up"
export KUBECONFIG="$OAAS_KUBECONFIG"
kubectl() { "$K8S_BIN/kubectl" --context oaas-hub "$@"; }
TARGET="${CARGO_TARGET_DIR:-target}/debug"
cargo build -q -p oaas-pm

namespace="e2e-fuzz-$RANDOM"
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
log "fuzzing a PM on 127.0.0.1:$port, namespace $namespace"
kubectl apply --server-side --force-conflicts -f manifests/crds/ >/dev/null
kubectl create namespace "$namespace" >/dev/null
kubectl label namespace "$namespace" e2e.oaas.io/test=fuzz >/dev/null
kubectl apply -n "$namespace" -f manifests/samples/package.yaml >/dev/null
pm_log="$(mktemp -t oaas-fuzz-pm.XXXX.log)"
KUBE_CONTEXT=oaas-hub SERVER_PORT="$port" OAAS_PM_WATCH_NAMESPACE="$namespace" \
  OAAS_PM_REST_NAMESPACE="$namespace" OAAS_PM_CLUSTER_SELECTOR="e2e.oaas.io/pm=$namespace" \
  "$TARGET/oaas-pm" > "$pm_log" 2>&1 &
pm=$!
cleanup() {
  # The PM keeps running while the namespace goes, so it removes its finalizers.
  kubectl delete namespace "$namespace" --timeout=120s >/dev/null || true
  kill "$pm" 2>/dev/null || true
  wait "$pm" 2>/dev/null || true
}
trap cleanup EXIT
for _ in $(seq 100); do
  curl -sf "127.0.0.1:$port/readyz" >/dev/null && break
  sleep 0.2
done

status=0
# One worker: hypothesis reads lambdas' source with ast.parse, which CPython 3.11 cannot do
# from two threads at once ("AST constructor recursion depth mismatch").
"$SCHEMATHESIS_VENV/bin/schemathesis" run "http://127.0.0.1:$port/api/v1/openapi.json" \
  --checks not_a_server_error,response_schema_conformance,content_type_conformance \
  --max-examples "${FUZZ_MAX_EXAMPLES:-50}" --workers 1 --seed 1 \
  --suppress-health-check all --no-color || status=$?
if grep -q '"level":"ERROR"\|ERROR' "$pm_log"; then
  log "the PM logged errors while fuzzed (log: $pm_log)"
fi
exit "$status"
