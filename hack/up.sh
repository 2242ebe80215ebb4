#!/usr/bin/env bash
# The whole system on local clusters: the hub and two spokes, the PM on the hub, a CRM on
# each spoke, the spokes registered as OClusters, and the samples applied.
# `just down` (cluster.sh down) stops all of it.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"

bash "$HACK_DIR/cluster.sh" up >/dev/null
export KUBECONFIG="$OAAS_KUBECONFIG"
kubectl() { "$K8S_BIN/kubectl" "$@"; }
TARGET="${CARGO_TARGET_DIR:-target}/debug"

log "building the operators"
cargo build -q -p oaas-pm -p oaas-crm

log "installing CRDs"
kubectl --context oaas-hub apply --server-side --force-conflicts -f manifests/crds/opackages.oaas.io.yaml \
  -f manifests/crds/classdeployments.oaas.io.yaml -f manifests/crds/oclusters.oaas.io.yaml >/dev/null
for spoke in spoke-a spoke-b; do
  kubectl --context "oaas-$spoke" apply --server-side --force-conflicts -f manifests/crds/classruntimes.oaas.io.yaml >/dev/null
done
kubectl --context oaas-hub wait --for=condition=Established crd --all --timeout=60s >/dev/null

# run_operator CLUSTER NAME BINARY ENV...: one background process with a pid file and a log.
run_operator() {
  local cluster=$1 name=$2 binary=$3; shift 3
  local dir="$OAAS_STATE/$cluster" pidfile="$OAAS_STATE/$cluster/pids/$name.pid"
  if [[ -f "$pidfile" ]] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
    log "$name on $cluster is already running"
    return
  fi
  env "$@" setsid "$TARGET/$binary" > "$dir/logs/$name.log" 2>&1 < /dev/null &
  echo $! > "$pidfile"
  log "$name on $cluster started (log: $dir/logs/$name.log)"
}

# PM ↔ CRM is mutual TLS: one CA, a server certificate for the CRMs, a client certificate for
# the PM, which reads them from the Secret the sample OClusters reference.
CERTS="$OAAS_STATE/pki/crm"
bash "$HACK_DIR/crm-certs.sh" "$CERTS"
tls_secret oaas-hub "$CERTS" pm
CRM_TLS=(OPRC_CRM_TLS_CERT_FILE="$CERTS/crm.crt" OPRC_CRM_TLS_KEY_FILE="$CERTS/crm.key"
  OPRC_CRM_TLS_CLIENT_CA_FILE="$CERTS/ca.crt" OPRC_CRM_BIND_ADDRESS=127.0.0.1)

# CRM ports match manifests/samples/clusters.yaml; probes and metrics on the next port.
run_operator spoke-a oaas-crm oaas-crm KUBE_CONTEXT=oaas-spoke-a HTTP_PORT=30188 \
  OPRC_CRM_OPS_PORT=30189 OPRC_CRM_CLUSTER_NAME=spoke-a "${CRM_TLS[@]}"
run_operator spoke-b oaas-crm oaas-crm KUBE_CONTEXT=oaas-spoke-b HTTP_PORT=30288 \
  OPRC_CRM_OPS_PORT=30289 OPRC_CRM_CLUSTER_NAME=spoke-b "${CRM_TLS[@]}"
run_operator hub oaas-pm oaas-pm KUBE_CONTEXT=oaas-hub SERVER_HOST=127.0.0.1 SERVER_PORT=8080

apply_samples manifests/samples/clusters.yaml "the logs in $OAAS_STATE/*/logs/"
cat <<MSG

The system is up. Try:
  export KUBECONFIG=$OAAS_KUBECONFIG
  kubectl get classdeployments                         # on the hub (context oaas-hub)
  kubectl get oaas                                     # every OaaS resource in the namespace
  kubectl --context oaas-spoke-a get classruntimes,deployments,services
  curl -s 127.0.0.1:8080/api/v1/deployments           # the same through the PM's REST API
  curl -s -XPOST 127.0.0.1:8080/api/v1/packages -H 'content-type: application/yaml' \
       --data-binary @manifests/samples/oaas-package.yaml   # an OaaS package file, deployed
  curl -s 127.0.0.1:8080/metrics | grep oaas_pm_       # the PM's metrics
  curl -s 127.0.0.1:30189/metrics | grep oaas_crm_     # spoke-a's CRM (its gRPC port 30188 is mutual TLS)
Stop everything with: just down
MSG
