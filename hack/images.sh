#!/usr/bin/env bash
# Builds every container image the kind test bed runs, here, without any registry:
#
#   images.sh node        the kind node image (and the Debian base and control-plane images)
#   images.sh operators   oaas-pm, oaas-crm, the echo function and the ODGM test double,
#                         from the project's Dockerfile
#   images.sh all         both
#
# Slow images are cached by version: a Docker tag, plus a saved tarball under
# $OAAS_CACHE/images that is loaded when the tag is gone. Each step logs to
# $OAAS_CACHE/logs/images-<step>.log; a failing step stops the script and says which step
# failed and where its log is. The operator images print their tags on stdout, one per line
# (`name=image:tag`), for hack/kind-up.sh.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

DEBIAN_SUITE=bookworm
DEBIAN_MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
BASE_IMAGE="oaas/debian:$DEBIAN_SUITE"
IMAGES_CACHE="$OAAS_CACHE/images"
LOGS="$OAAS_CACHE/logs"
# Images that the operators' Dockerfile builds: image name => Cargo binary.
declare -A OPERATOR_IMAGES=(
  [ghcr.io/oaas/oaas-pm]=oaas-pm
  [ghcr.io/oaas/oaas-crm]=oaas-crm
  [ghcr.io/oaas/echo-function]=oaas-echo-function
  [ghcr.io/oaas/odgm-test-double]=odgm-test-double
)

# step NAME COMMAND...: runs COMMAND with its output in the step's log; on failure, dies
# naming the step, the end of the log and where the whole log is.
step() {
  local name=$1; shift
  local logfile="$LOGS/images-$name.log" started=$SECONDS
  mkdir -p "$LOGS"
  log "images: $name"
  if ! "$@" >"$logfile" 2>&1; then
    tail -n 15 "$logfile" >&2
    die "image step '$name' failed after $((SECONDS - started))s; full log: $logfile"
  fi
  log "images: $name done in $((SECONDS - started))s"
}

have_image() { docker image inspect "$1" >/dev/null 2>&1; }

# cached TAG TARBALL: true when TAG is in Docker, loading it from TARBALL if needed.
cached() {
  have_image "$1" && return 0
  [[ -f $2 ]] && docker load -i "$2" >/dev/null 2>&1 && have_image "$1"
}

save() { mkdir -p "$IMAGES_CACHE" && docker save "$1" -o "$2.tmp" && mv "$2.tmp" "$2"; }

# BuildKit for the Dockerfile's cache mounts (docker CLIs from 23 on need the buildx plugin,
# which hack/build-k8s.sh kind builds when missing).
docker_build() { DOCKER_BUILDKIT=1 docker build "$@"; }

# ---- Debian base: debootstrap into a folder, then docker import -------------------------
debootstrap_base() {
  command -v debootstrap >/dev/null || die "debootstrap is required (hack/bootstrap.sh installs it)"
  local root; root="$(mktemp -d)"
  debootstrap --variant=minbase --include=ca-certificates "$DEBIAN_SUITE" "$root" "$DEBIAN_MIRROR"
  cat >"$root/etc/apt/sources.list" <<EOF
deb $DEBIAN_MIRROR $DEBIAN_SUITE main
deb $DEBIAN_MIRROR $DEBIAN_SUITE-updates main
deb ${DEBIAN_MIRROR%/debian}/debian-security $DEBIAN_SUITE-security main
EOF
  # What an image does not need: package caches, lists, documentation.
  rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/cache/apt/*.bin \
    "$root"/var/lib/apt/lists/* "$root"/usr/share/doc/* "$root"/usr/share/man/* \
    "$root"/usr/share/info/*
  tar -C "$root" -c . | docker import \
    -c 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    -c 'CMD ["bash"]' - "$BASE_IMAGE"
  rm -rf "$root"
}

build_base() {
  local tarball="$IMAGES_CACHE/debian-$DEBIAN_SUITE.tar"
  if ! cached "$BASE_IMAGE" "$tarball"; then step base debootstrap_base; fi
  [[ -f $tarball ]] || save "$BASE_IMAGE" "$tarball"
}

# ---- the control-plane images kubeadm asks for -------------------------------------------
# component_image NAME BINARY [PACKAGES]: builds image NAME holding BINARY.
component_image() {
  local name=$1 binary=$2 packages=${3:-}
  have_image "$name" && return
  local ctx; ctx="$(mktemp -d)"
  cp "$binary" "$ctx/"
  docker_build -f "$REPO_ROOT/kind/images/component.Dockerfile" --build-arg "BASE_IMAGE=$BASE_IMAGE" \
    --build-arg "BINARY=$(basename "$binary")" --build-arg "PACKAGES=$packages" -t "$name" "$ctx"
  rm -rf "$ctx"
}

kubeadm_images() { "$NODE_BIN/kubeadm" config images list --kubernetes-version "$K8S_VERSION"; }

# The binary (and Debian packages) behind each image kubeadm lists.
build_components() {
  local name binary packages
  while read -r name; do
    packages=""
    case "$name" in
      */kube-proxy:*) binary="$NODE_BIN/kube-proxy"; packages="iptables conntrack" ;;
      */kube-*:*) binary="$K8S_BIN/$(basename "${name%%:*}")" ;;
      */etcd:*) binary="$(echo "$NODE_BIN"/etcd-*/etcd)" ;;
      */coredns:*) binary="$(echo "$NODE_BIN"/coredns-*/coredns)" ;;
      */pause:*) binary="$(echo "$NODE_BIN"/pause-*/pause)" ;;
      *) echo "no recipe for image $name" >&2; return 1 ;;
    esac
    [[ -x $binary ]] || { echo "missing $binary (run hack/build-k8s.sh kind)" >&2; return 1; }
    component_image "$name" "$binary" "$packages"
  done < <(kubeadm_images)
}

# ---- the kind node image ------------------------------------------------------------------
# Its tag carries a hash of what goes into it, so a change to kind/node rebuilds it.
node_image() {
  local hash
  hash="$(cat "$HACK_DIR/versions.env" "$HACK_DIR/images.sh" \
    <(cd "$REPO_ROOT/kind" && find node images -type f | sort | xargs cat) | sha256sum | cut -c1-10)"
  echo "oaas/kind-node:$K8S_VERSION-$hash"
}

node_context() {
  local ctx=$1 kind_src
  kind_src="$(cd /tmp && GOFLAGS='' go mod download -json "sigs.k8s.io/kind@$KIND_VERSION" | jq -r .Dir)"
  [[ -d $kind_src/images/base/files ]] || { echo "kind $KIND_VERSION sources not found" >&2; return 1; }
  mkdir -p "$ctx/kind-base" "$ctx/bin" "$ctx/images"
  cp -r "$kind_src/images/base/files/." "$ctx/kind-base/"
  chmod -R u+w "$ctx/kind-base"
  # Ours replace kind's containerd 2 settings (Debian ships containerd 1.6).
  rm -f "$ctx/kind-base/etc/containerd/config.toml" "$ctx/kind-base/etc/systemd/system/containerd.service"
  cp -r "$REPO_ROOT/kind/node/files" "$ctx/files"
  cp "$NODE_BIN/kubelet" "$NODE_BIN/kubeadm" "$NODE_BIN/crictl" "$K8S_BIN/kubectl" "$ctx/bin/"
  local images; mapfile -t images < <(kubeadm_images)
  docker save "${images[@]}" -o "$ctx/images/control-plane.tar"
}

# Prints the node image's tag.
build_node_image() {
  local tag ctx pause
  tag="$(node_image)"
  if cached "$tag" "$IMAGES_CACHE/kind-node-${tag#*:}.tar"; then
    log "images: $tag cached"; echo "$tag"; return
  fi
  build_base
  step components build_components
  ctx="$(mktemp -d)"
  step node-context node_context "$ctx"
  pause="$(kubeadm_images | grep /pause:)"
  step node docker_build -f "$REPO_ROOT/kind/node/Dockerfile" --build-arg "BASE_IMAGE=$BASE_IMAGE" \
    --build-arg "K8S_VERSION=$K8S_VERSION" --build-arg "PAUSE_IMAGE=$pause" -t "$tag" "$ctx"
  rm -rf "$ctx"
  # Only the newest node image is kept on disk.
  rm -f "$IMAGES_CACHE"/kind-node-*.tar
  save "$tag" "$IMAGES_CACHE/kind-node-${tag#*:}.tar"
  echo "$tag"
}

# ---- the operators, the echo function and the ODGM test double ----------------------------
rust_image() { echo "oaas/rust:$(rustc --version | awk '{print $2}')"; }

rust_context() {
  local ctx=$1 sysroot
  sysroot="$(rustc --print sysroot)"
  mkdir -p "$ctx/rust" "$ctx/ca-certificates"
  # Hard links where the cache shares the toolchain's filesystem: no copy of 600 MB.
  cp -al "$sysroot/bin" "$sysroot/lib" "$ctx/rust/" 2>/dev/null \
    || cp -a "$sysroot/bin" "$sysroot/lib" "$ctx/rust/"
  cp /usr/local/share/ca-certificates/*.crt "$ctx/ca-certificates/" 2>/dev/null || true
}

build_rust_image() {
  local tag; tag="$(rust_image)"
  have_image "$tag" && return
  build_base
  local ctx="$OAAS_CACHE/build/rust-context"
  rm -rf "$ctx"
  step rust-context rust_context "$ctx"
  step rust docker_build -f "$REPO_ROOT/kind/images/rust.Dockerfile" \
    --build-arg "BASE_IMAGE=$BASE_IMAGE" -t "$tag" "$ctx"
  rm -rf "$ctx"
}

# Each image is tagged with the workspace version (what the samples name) and with the start
# of its image ID, printed as name=image:id: a new build is a new tag, so a Deployment that
# names it rolls out.
build_operators() {
  build_base
  build_rust_image
  local version image binary id
  version="$(sed -n 's/^version = "\(.*\)"/\1/p' "$REPO_ROOT/Cargo.toml" | head -1)"
  for image in "${!OPERATOR_IMAGES[@]}"; do
    binary=${OPERATOR_IMAGES[$image]}
    step "$binary" docker_build -f "$REPO_ROOT/Dockerfile" --build-arg "BINARY=$binary" \
      --build-arg "RUST_IMAGE=$(rust_image)" --build-arg "RUNTIME_IMAGE=$BASE_IMAGE" \
      -t "$image:$version" "$REPO_ROOT"
    id="$(docker image inspect -f '{{.Id}}' "$image:$version")"
    id="${id#sha256:}"
    docker tag "$image:$version" "$image:${id:0:12}"
    echo "$image=$image:${id:0:12}"
  done
}

if ! { command -v docker >/dev/null && docker info >/dev/null 2>&1; }; then
  die "no Docker daemon answers; run hack/docker.sh (hack/bootstrap.sh does)"
fi
case "${1:-all}" in
  node) build_node_image ;;
  operators) build_operators ;;
  all) build_node_image; build_operators ;;
  *) die "usage: $0 [node|operators|all]" ;;
esac
