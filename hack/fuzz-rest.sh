#!/usr/bin/env bash
# Fuzzes the PM's REST facade from its own OpenAPI document with schemathesis: a PM on the
# running hub, scoped to a namespace of its own (with the sample package in it), gets
# generated valid and invalid requests for every operation. Fails on any 5xx answer or an
# answer that does not match the document, and when the PM logged a server error while
# fuzzed (an ERROR line, a panic, or a request served with a 5xx status). Needs running
# clusters (`just cluster-up`).
# FUZZ_MAX_EXAMPLES (default 50) sets the examples per operation.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"

# pm_server_errors LOG: prints the lines of the PM's log LOG that show a server error and
# succeeds if there are any. The log is the PM's plain-text format (OAAS_PM_LOG_JSON=false,
# no colours) with the request span at debug level, as started below:
#   2025-01-01T00:00:00.000000Z ERROR oaas_pm::...: message        an ERROR event
#   thread 'tokio-runtime-worker' panicked at operators/pm/src/...: a panic (and its message)
#   ... DEBUG http{method=GET route=/api/v1/... correlation_id=... status=500}: ...: request served
# Colour codes are stripped first in case the PM ever writes them. Fails (status 2) when the
# log shows no served request at all: then the request log has changed and this check would
# be blind, so it must be updated rather than pass.
pm_server_errors() {
  local text
  text="$(sed 's/\x1b\[[0-9;]*m//g' "$1")"
  if ! grep -Eq 'http\{.* status=[0-9]{3}\}' <<<"$text"; then
    log "the PM log $1 shows no served request (no 'http{... status=NNN}' line): update hack/fuzz-rest.sh"
    return 2
  fi
  local found=1
  grep -nE '^[^ ]+ +ERROR |http\{.* status=5[0-9]{2}\}' <<<"$text" && found=0
  grep -nE -A1 'panicked at' <<<"$text" && found=0 # the panic's message is on the next line
  return "$found"
}

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
# Plain-text logs without colours, with each request's status (the `http` span's debug
# event), so pm_server_errors can read them.
KUBE_CONTEXT=oaas-hub SERVER_PORT="$port" OAAS_PM_WATCH_NAMESPACE="$namespace" \
  OAAS_PM_REST_NAMESPACE="$namespace" OAAS_PM_CLUSTER_SELECTOR="e2e.oaas.io/pm=$namespace" \
  OAAS_PM_LOG_JSON=false NO_COLOR=1 RUST_LOG='info,oaas_pm[http]=debug' \
  "$TARGET/oaas-pm" > "$pm_log" 2>&1 &
pm=$!
# shellcheck disable=SC2317 # reached through the EXIT trap, which shellcheck 0.9 does not see
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
errors_status=0
pm_server_errors "$pm_log" >&2 || errors_status=$?
case $errors_status in
  0) log "the PM logged server errors while fuzzed (above; log: $pm_log)"; status=1 ;;
  1) ;; # none
  *) status=1 ;;
esac
exit "$status"
