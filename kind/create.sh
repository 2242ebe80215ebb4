#!/usr/bin/env bash
# Creates the hub and two spokes as kind clusters, for users who have Docker, with the
# same context names as the local control planes (oaas-hub, oaas-spoke-a, oaas-spoke-b),
# so the e2e suite runs unchanged: KUBECONFIG=<file> just e2e
# Not exercised by this repository's CI (its machines have no Docker engine).
#
#   kind/create.sh [up|down]
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
  *) echo "usage: $0 [up|down]" >&2; exit 1 ;;
esac
