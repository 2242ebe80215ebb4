#!/usr/bin/env bash
# Creates the hub and two spokes as kind clusters, for users who have Docker, with the
# same context names as the local control planes (oaas-hub, oaas-spoke-a, oaas-spoke-b),
# so the e2e suite runs unchanged: KUBECONFIG=<file> just e2e
# Not exercised by this repository's CI (its machines have no Docker engine).
#
#   kind/create.sh [up|down]
#   kind/create.sh stop|start CLUSTER COMPONENT   e.g. stop spoke-b kube-apiserver, for the
#       fault tests (OAAS_E2E_CONTROL_PLANE=kind/create.sh): moves the static Pod's manifest
#       out of the node's manifest directory, or back
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
KUBECONFIG_OUT="${KUBECONFIG_OUT:-$HOME/.kube/oaas-kind}"
command -v kind >/dev/null || { echo "kind is required: https://kind.sigs.k8s.io" >&2; exit 1; }

case "${1:-up}" in
  up)
    for c in hub spoke-a spoke-b; do
      kind get clusters | grep -qx "oaas-$c" || kind create cluster --config "$c.yaml" --kubeconfig "$KUBECONFIG_OUT"
      kubectl --kubeconfig "$KUBECONFIG_OUT" config rename-context "kind-oaas-$c" "oaas-$c" 2>/dev/null || true
    done
    kubectl --kubeconfig "$KUBECONFIG_OUT" config use-context oaas-hub >/dev/null
    echo "export KUBECONFIG=$KUBECONFIG_OUT"
    ;;
  down)
    for c in hub spoke-a spoke-b; do kind delete cluster --name "oaas-$c"; done
    ;;
  stop | start)
    [[ $# -eq 3 ]] || { echo "usage: $0 stop|start CLUSTER COMPONENT" >&2; exit 1; }
    node="oaas-$2-control-plane" manifests=/etc/kubernetes/manifests
    if [[ $1 == stop ]]; then
      docker exec "$node" mv "$manifests/$3.yaml" "/etc/kubernetes/$3.yaml"
      docker exec "$node" sh -c "while crictl ps --name '^$3\$' -q | grep -q .; do sleep 1; done"
    else
      docker exec "$node" mv "/etc/kubernetes/$3.yaml" "$manifests/$3.yaml"
      until docker exec "$node" sh -c "crictl ps --name '^$3\$' -q | grep -q ."; do sleep 1; done
      until kubectl --context "oaas-$2" get --raw /readyz >/dev/null 2>&1; do sleep 1; done
    fi
    ;;
  *) echo "usage: $0 [up|down|stop C COMP|start C COMP]" >&2; exit 1 ;;
esac
