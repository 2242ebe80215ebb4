#!/usr/bin/env bash
# Shared paths and helpers for the hack/ scripts. Source it; do not run it.
# Its variables are for the scripts that source it, so shellcheck, checking this file on its
# own, would call them unused (SC2034) throughout.
# shellcheck disable=SC2034
set -euo pipefail

HACK_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$HACK_DIR/.." && pwd)"
# shellcheck source=versions.env
source "$HACK_DIR/versions.env"

# Slow-to-build tools live outside the repo, keyed by version, so clean clones reuse them.
OAAS_CACHE="${OAAS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/oaas}"
K8S_BIN="$OAAS_CACHE/k8s-$K8S_VERSION/bin"
ETCD_BIN="$OAAS_CACHE/etcd-$ETCD_VERSION/bin"
KWOK_BIN="$OAAS_CACHE/kwok-$KWOK_VERSION/bin"
SCHEMATHESIS_VENV="$OAAS_CACHE/schemathesis-$SCHEMATHESIS_VERSION"
# The kind test bed: kind, and what goes into the node image (kubelet, kubeadm, kube-proxy,
# crictl, pause, and the etcd and CoreDNS that kubeadm asks for).
KIND_BIN="$OAAS_CACHE/kind-$KIND_VERSION/bin"
NODE_BIN="$OAAS_CACHE/kind-node-$K8S_VERSION/bin"
BUILDX_BIN="$OAAS_CACHE/buildx-$BUILDX_VERSION/bin"
# The kind clusters' kubeconfig (contexts oaas-hub, oaas-spoke-a, oaas-spoke-b).
KIND_KUBECONFIG="$OAAS_CACHE/kind/kubeconfig"
# Running clusters keep their state (etcd data, logs, pid files, kubeconfig) here.
OAAS_STATE="${OAAS_STATE:-$OAAS_CACHE/clusters}"
OAAS_KUBECONFIG="$OAAS_STATE/kubeconfig"

log() { printf '\033[1;34m==>\033[0m %s\n' "$*" >&2; }
die() { printf '\033[1;31merror:\033[0m %s\n' "$*" >&2; exit 1; }

# apply_samples CLUSTERS_FILE LOGS_HINT: registers the spokes on the hub (context oaas-hub),
# applies the sample package and class deployment, waits until the sample is Available (else
# dies, pointing at LOGS_HINT) and shows what the hub holds. For `just up` and `just kind-up`.
apply_samples() {
  log "registering the spokes and applying the samples"
  kubectl --context oaas-hub apply -f "$1" >/dev/null
  kubectl --context oaas-hub apply -n default -f "$REPO_ROOT/manifests/samples/package.yaml" \
    -f "$REPO_ROOT/manifests/samples/classdeployment.yaml" >/dev/null
  if ! kubectl --context oaas-hub wait -n default --for=condition=Available classdeployment/record --timeout=180s >/dev/null; then
    kubectl --context oaas-hub get classdeployment record -o yaml >&2 || true
    die "the sample class deployment did not become Available; see $2"
  fi
  kubectl --context oaas-hub get oclusters,opackages,classdeployments
}

# tls_secret CONTEXT CERTS NAME: the Secret oaas-crm-tls in oaas-system (made if missing)
# with CERTS/ca.crt and CERTS/NAME.{crt,key} (from hack/crm-certs.sh), applied again as is.
tls_secret() {
  kubectl --context "$1" create namespace oaas-system --dry-run=client -o yaml \
    | kubectl --context "$1" apply -f - >/dev/null
  kubectl --context "$1" create secret generic oaas-crm-tls -n oaas-system --dry-run=client -o yaml \
    --from-file=ca.crt="$2/ca.crt" --from-file=tls.crt="$2/$3.crt" --from-file=tls.key="$2/$3.key" \
    | kubectl --context "$1" apply -f - >/dev/null
}

# Certificates, in the current directory. new_ca CN: ca.crt and ca.key.
new_ca() {
  command -v openssl >/dev/null || die "openssl is required (apt-get install openssl)"
  openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 825 \
    -subj "/CN=$1" -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
}

# new_leaf NAME SUBJECT EXTENSIONS: NAME.crt and NAME.key, signed by ./ca.
new_leaf() {
  openssl req -newkey rsa:2048 -nodes -keyout "$1.key" -out "$1.csr" -subj "$2" 2>/dev/null
  printf '%s\n' "$3" > "$1.ext"
  openssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days 825 \
    -out "$1.crt" -extfile "$1.ext" 2>/dev/null
  rm -f "$1.csr" "$1.ext"
}
