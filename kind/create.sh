#!/usr/bin/env bash
# The hub and two spokes as kind clusters, with the same context names as the local control
# planes (oaas-hub, oaas-spoke-a, oaas-spoke-b) in a kubeconfig of their own, so the e2e
# suite can run against either. `just kind-up` calls it (and installs the system); alone it
# makes bare clusters.
#
#   kind/create.sh up            create the clusters that do not exist yet (safe to re-run)
#   kind/create.sh down          delete exactly those clusters, the kubeconfig and the
#                                certificates (built images stay cached)
#   kind/create.sh kubeconfig    print the kubeconfig's path
#   kind/create.sh running       succeed when all three clusters exist and their nodes run
#   kind/create.sh stop|start CLUSTER COMPONENT   e.g. stop spoke-b kube-apiserver, for the
#       fault tests (OAAS_E2E_CONTROL_PLANE=kind/create.sh): moves the static Pod's manifest
#       out of the node's manifest directory, or back
#
# KIND_NODE_IMAGE names the node image (hack/images.sh builds one here; unset, kind uses its
# public kindest/node). kind comes from PATH, else from the cache hack/build-k8s.sh fills.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../hack/lib.sh"
cd "$REPO_ROOT/kind"
CLUSTERS=(hub spoke-a spoke-b)
PATH="$PATH:$KIND_BIN:$K8S_BIN"
command -v kind >/dev/null || die "kind is required: hack/build-k8s.sh kind builds it (or https://kind.sigs.k8s.io)"

node() { echo "oaas-$1-control-plane"; }
exists() { kind get clusters 2>/dev/null | grep -qx "oaas-$1"; }
# A cluster whose node container stopped (say, Docker was restarted) is not usable.
node_running() { [[ "$(docker inspect -f '{{.State.Running}}' "$(node "$1")" 2>/dev/null)" == true ]]; }

# Warns when Docker's disk is nearly full: above 85 % use a node's kubelet garbage-collects
# images, the preloaded control-plane images among them (nothing can pull them again here),
# and the control plane then never starts (kubeadm times out after 4 minutes).
check_disk() {
  local used
  used="$(df --output=pcent "$(docker info -f '{{.DockerRootDir}}' 2>/dev/null || echo /)" | tail -1 | tr -dc 0-9)"
  if (( used >= 80 )); then
    log "warning: the disk under Docker is ${used}% full; kind nodes fail to start their control plane near 85%: free space (e.g. old build caches) first"
  fi
}

case "${1:-up}" in
  up)
    mkdir -p "$(dirname "$KIND_KUBECONFIG")"
    check_disk
    image=(); [[ -n ${KIND_NODE_IMAGE:-} ]] && image=(--image "$KIND_NODE_IMAGE")
    for c in "${CLUSTERS[@]}"; do
      if exists "$c" && ! node_running "$c"; then
        log "kind cluster oaas-$c exists but its node is not running: creating it anew"
        kind delete cluster --name "oaas-$c"
      fi
      if exists "$c"; then
        log "kind cluster oaas-$c exists"
        kind export kubeconfig --name "oaas-$c" --kubeconfig "$KIND_KUBECONFIG" >/dev/null 2>&1
      else
        log "creating kind cluster oaas-$c"
        kind create cluster --config "$c.yaml" "${image[@]}" --kubeconfig "$KIND_KUBECONFIG" \
          --wait 120s || die "kind could not create oaas-$c (docker logs $(node "$c"))"
      fi
      kubectl --kubeconfig "$KIND_KUBECONFIG" config delete-context "oaas-$c" >/dev/null 2>&1 || true
      kubectl --kubeconfig "$KIND_KUBECONFIG" config rename-context "kind-oaas-$c" "oaas-$c" >/dev/null
    done
    kubectl --kubeconfig "$KIND_KUBECONFIG" config use-context oaas-hub >/dev/null
    ;;
  down)
    # A second pass for what a transient Docker error left; then nothing may remain.
    for pass in 1 2; do
      for c in "${CLUSTERS[@]}"; do
        if exists "$c" || docker inspect "$(node "$c")" >/dev/null 2>&1; then
          kind delete cluster --name "oaas-$c" || [[ $pass == 1 ]] || die "could not delete oaas-$c"
        fi
      done
    done
    # The kubeconfig and the certificates kind-up made; the images stay cached.
    rm -rf "$(dirname "$KIND_KUBECONFIG")"
    ;;
  kubeconfig) echo "$KIND_KUBECONFIG" ;;
  running)
    for c in "${CLUSTERS[@]}"; do exists "$c" && node_running "$c" || exit 1; done
    ;;
  stop | start)
    [[ $# -eq 3 ]] || die "usage: $0 stop|start CLUSTER COMPONENT"
    n="$(node "$2")" manifests=/etc/kubernetes/manifests
    if [[ $1 == stop ]]; then
      docker exec "$n" mv "$manifests/$3.yaml" "/etc/kubernetes/$3.yaml"
      docker exec "$n" sh -c "while crictl ps --name '^$3\$' -q | grep -q .; do sleep 1; done"
    else
      docker exec "$n" mv "/etc/kubernetes/$3.yaml" "$manifests/$3.yaml"
      until docker exec "$n" sh -c "crictl ps --name '^$3\$' -q | grep -q ."; do sleep 1; done
      until kubectl --kubeconfig "$KIND_KUBECONFIG" --context "oaas-$2" get --raw /readyz >/dev/null 2>&1; do sleep 1; done
    fi
    ;;
  *) die "usage: $0 [up|down|kubeconfig|running|stop C COMP|start C COMP]" ;;
esac
