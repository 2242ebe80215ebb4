#!/usr/bin/env bash
# The whole system on kind: the hub and two spokes as kind clusters, the PM installed in the
# hub and a CRM in each spoke from the kustomize bases (through kind/overlays), from images
# built here; the spokes registered as OClusters; the samples applied. Safe to re-run: it
# builds only what changed and applies the same objects again. `just kind-down` removes it.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"
PATH="$K8S_BIN:$KIND_BIN:$PATH"
export KUBECONFIG="$KIND_KUBECONFIG"
started=$SECONDS

bash "$HACK_DIR/docker.sh"
bash "$HACK_DIR/build-k8s.sh" kind >/dev/null
KIND_NODE_IMAGE="$(bash "$HACK_DIR/images.sh" node)" || exit 1
export KIND_NODE_IMAGE
# name=tag lines for the operators, the echo function and the ODGM test double.
built="$(bash "$HACK_DIR/images.sh" operators)" || exit 1
declare -A TAG
while IFS='=' read -r name tag; do TAG[$name]=$tag; done <<<"$built"
bash "$REPO_ROOT/kind/create.sh" up

# load CLUSTER IMAGE...: copies images from Docker into the cluster's node.
load() {
  local cluster=$1; shift
  kind load docker-image --name "oaas-$cluster" "$@" >/dev/null || die "kind load into oaas-$cluster failed"
}
log "loading images into the nodes"
load hub "${TAG[ghcr.io/oaas/oaas-pm]}"
for spoke in spoke-a spoke-b; do
  load "$spoke" "${TAG[ghcr.io/oaas/oaas-crm]}" ghcr.io/oaas/echo-function:0.1.0 \
    ghcr.io/oaas/odgm-test-double:0.1.0
done

# apply_overlay CLUSTER IMAGE TAG: the cluster's overlay with the image pinned to the build
# just loaded (a new build is a new tag, so the Deployment rolls out). kustomize takes
# relative paths only. The tag is quoted: an image id's hex prefix can read as a YAML number
# (074519392643 did, and kustomize refused it).
apply_overlay() {
  local cluster=$1 image=$2 pinned=$3 dir
  dir="$(mktemp -d)"
  cat >"$dir/kustomization.yaml" <<EOF
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - $(realpath --relative-to="$dir" "$REPO_ROOT/kind/overlays/$cluster")
images:
  - name: $image
    newTag: "${pinned##*:}"
EOF
  kubectl --context "oaas-$cluster" apply --server-side --force-conflicts -k "$dir" >/dev/null \
    || die "installing kind/overlays/$cluster into oaas-$cluster failed"
  rm -rf "$dir"
}

# Mutual TLS between the PM and the CRMs: the CRMs' server certificate is valid for the node
# names the hub dials.
CERTS="$OAAS_CACHE/kind/pki"
bash "$HACK_DIR/crm-certs.sh" "$CERTS" oaas-spoke-a-control-plane oaas-spoke-b-control-plane

log "installing the PM in the hub and a CRM in each spoke"
tls_secret oaas-hub "$CERTS" pm
apply_overlay hub ghcr.io/oaas/oaas-pm "${TAG[ghcr.io/oaas/oaas-pm]}"
for spoke in spoke-a spoke-b; do
  tls_secret "oaas-$spoke" "$CERTS" crm
  apply_overlay "$spoke" ghcr.io/oaas/oaas-crm "${TAG[ghcr.io/oaas/oaas-crm]}"
done
# ready CLUSTER DEPLOYMENT JQ-FILTER: waits until the Deployment (in oaas-system) passes.
ready() {
  local cluster=$1 name=$2 i
  for ((i = 0; i < 90; i++)); do
    kubectl --context "oaas-$cluster" -n oaas-system get "deployment/$name" -o json \
      | jq -e "$3" >/dev/null 2>&1 && return
    sleep 2
  done
  kubectl --context "oaas-$cluster" -n oaas-system get pods -o wide >&2
  die "$name did not become ready in oaas-$cluster (kubectl --context oaas-$cluster -n oaas-system logs deploy/$name)"
}
# Only the PM that holds the Lease is Ready (the others are standbys, /readyz 503), so
# `kubectl rollout status`, which waits for every replica, would never finish: wait for the
# rollout to be done and one replica Ready. Every CRM replica is Ready.
rolled_out='.status.observedGeneration >= .metadata.generation and .status.updatedReplicas == .spec.replicas'
ready hub oaas-pm "$rolled_out and .status.readyReplicas >= 1"
for spoke in spoke-a spoke-b; do
  ready "$spoke" oaas-crm "$rolled_out and .status.readyReplicas == .spec.replicas"
done

kubectl --context oaas-hub wait --for=condition=Established crd --all --timeout=60s >/dev/null
# The samples go into the hub's `default` namespace, which maps to `default` in each spoke. A
# CRM creates the namespaces it needs but uses an existing one only once it is handed over
# (labelled with the CRM's own namespace), as an administrator does here.
for spoke in spoke-a spoke-b; do
  kubectl --context "oaas-$spoke" label namespace default oaas.io/crm=oaas-workloads \
    --overwrite >/dev/null
done
apply_samples kind/clusters.yaml "kubectl --context oaas-hub -n oaas-system logs deploy/oaas-pm"
log "kind-up finished in $((SECONDS - started))s"
cat <<MSG

The system runs on kind. Try:
  export KUBECONFIG=$KIND_KUBECONFIG
  kubectl get classdeployments                                  # on the hub (context oaas-hub)
  kubectl -n oaas-system get pods -o wide                       # the PM, from an image built here
  kubectl --context oaas-spoke-a get pods                       # the sample's function and ODGM Pods
  kubectl --context oaas-spoke-b -n oaas-system get pods        # spoke-b's CRM
  curl -s 127.0.0.1:30080/api/v1/openapi.json | head -c 300     # the PM's REST facade (NodePort)
Remove it with: just kind-down
MSG
