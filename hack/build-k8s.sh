#!/usr/bin/env bash
# Builds the pinned Kubernetes binaries from Go modules (and C, for pause), once, into a
# cache outside the repo. Re-running it is a no-op when the binaries exist.
#
#   build-k8s.sh [local]   etcd, kwok, kube-apiserver, -controller-manager, -scheduler, kubectl
#   build-k8s.sh kind      kind, the node image's kubelet, kubeadm, kube-proxy, crictl,
#                          pause, and the etcd and CoreDNS versions kubeadm asks for, and
#                          docker-buildx where the docker CLI lacks BuildKit
#
# k8s.io/kubernetes and etcd's server module cannot be `go install`ed directly: their go.mod
# files replace sibling modules with local paths. We build them from a throwaway wrapper
# module that requires the pinned version and points every replaced module at its
# published version instead.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

K8S_COMMANDS=(kube-apiserver kube-controller-manager kube-scheduler kubectl)

# The Go toolchain a release was built with; newer toolchains also work for these pins, but
# GOTOOLCHAIN lets a user force one (see DESIGN.md) without editing this script.
export GOTOOLCHAIN="${GOTOOLCHAIN:-local}"
export GOFLAGS="-mod=mod"
export CGO_ENABLED=0

have_all() {
  local dir=$1; shift
  for b in "$@"; do [[ -x "$dir/$b" ]] || return 1; done
}

# Writes `replace` lines that map each locally replaced module of $gomod to $version.
# Replaces that point at a FORBIDDEN_DEPENDENCY directory are import guards, not modules.
published_replaces() {
  local gomod=$1 version=$2
  awk -v v="$version" '
    /^replace \(/ { inblock = 1; next }
    inblock && /^\)/ { inblock = 0; next }
    inblock && $2 == "=>" && $3 ~ /^\.\.?\// && $3 !~ /FORBIDDEN/ { print "replace " $1 " => " $1 " " v }
    /^replace / && $3 == "=>" && $4 ~ /^\.\.?\// && $4 !~ /FORBIDDEN/ { print "replace " $2 " => " $2 " " v }
  ' "$gomod"
}

module_gomod() { go mod download -json "$1" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p'; }

# wrapper_build DIR MODULE@VERSION REPLACE_VERSION OUT LDFLAGS PKG...
wrapper_build() {
  local work=$1 modver=$2 replace_version=$3 out=$4 ldflags=$5; shift 5
  rm -rf "$work" && mkdir -p "$work" "$out"
  local gomod; gomod="$(cd "$work" && module_gomod "$modver")"
  [[ -f "$gomod" ]] || die "could not download $modver from the Go module proxy"
  {
    echo "module oaas.local/toolbuild"
    grep -E '^go [0-9]' "$gomod"
    grep -E '^godebug ' "$gomod" || true
    echo "require ${modver%@*} ${modver#*@}"
    published_replaces "$gomod" "$replace_version"
  } > "$work/go.mod"
  (cd "$work" && go build -trimpath -ldflags "$ldflags" -o "$out/" "$@") \
    || die "building $modver failed (wrapper module in $work)"
}

# build_k8s_commands OUT COMMAND...: commands of k8s.io/kubernetes at K8S_VERSION into OUT.
build_k8s_commands() {
  local out=$1; shift
  if have_all "$out" "$@"; then log "kubernetes $K8S_VERSION ($*): cached in $out"; return; fi
  log "building kubernetes $K8S_VERSION ($*) into $out; this takes a while once"
  local minor="${K8S_VERSION#v1.}"; minor="${minor%%.*}"
  local pkg=k8s.io/component-base/version
  local ldflags="-s -w -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
  ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
  ldflags+=" -X k8s.io/client-go/pkg/version.gitVersion=$K8S_VERSION"
  local pkgs=(); for c in "$@"; do pkgs+=("k8s.io/kubernetes/cmd/$c"); done
  wrapper_build "$OAAS_CACHE/build/kubernetes-$(basename "$(dirname "$out")")" \
    "k8s.io/kubernetes@$K8S_VERSION" "v0.${K8S_VERSION#v1.}" "$out" "$ldflags" "${pkgs[@]}"
}

# build_etcd VERSION OUT
build_etcd() {
  local version=$1 out=$2
  if have_all "$out" etcd; then log "etcd $version: cached in $out"; return; fi
  log "building etcd $version into $out"
  wrapper_build "$OAAS_CACHE/build/etcd-$version" "go.etcd.io/etcd/server/v3@$version" \
    "$version" "$out" "-s -w" go.etcd.io/etcd/server/v3
  mv "$out/v3" "$out/etcd" 2>/dev/null || mv "$out/server" "$out/etcd" 2>/dev/null || true
  have_all "$out" etcd || die "etcd build produced no binary in $out"
}

# go_install OUT BINARY MODULE/PATH@VERSION: for modules whose go.mod has no local replaces.
go_install() {
  local out=$1 binary=$2 pkg=$3
  if have_all "$out" "$binary"; then log "$binary: cached in $out"; return; fi
  log "building $pkg into $out"
  GOBIN="$out" GOFLAGS='' go install -trimpath -ldflags "-s -w" "$pkg" || die "building $pkg failed"
}

# The kind test bed: kind itself, and the node image's binaries. The etcd, CoreDNS and pause
# versions are the ones kubeadm of K8S_VERSION lists, so the images get exactly those names.
build_kind() {
  build_buildx
  go_install "$KIND_BIN" kind "sigs.k8s.io/kind@$KIND_VERSION"
  build_k8s_commands "$NODE_BIN" kubelet kubeadm kube-proxy
  go_install "$NODE_BIN" crictl "sigs.k8s.io/cri-tools/cmd/crictl@$CRICTL_VERSION"
  local images; images="$("$NODE_BIN/kubeadm" config images list --kubernetes-version "$K8S_VERSION")"
  local etcd coredns pause
  etcd="$(sed -n 's|.*/etcd:\([0-9.]*\)-.*|v\1|p' <<<"$images")"
  coredns="$(sed -n 's|.*/coredns:\(v[0-9.]*\)$|\1|p' <<<"$images")"
  pause="$(sed -n 's|.*/pause:\([0-9.]*\)$|\1|p' <<<"$images")"
  [[ -n $etcd && -n $coredns && -n $pause ]] || die "unexpected kubeadm image list: $images"
  build_etcd "$etcd" "$NODE_BIN/etcd-$etcd"
  go_install "$NODE_BIN/coredns-$coredns" coredns "github.com/coredns/coredns@$coredns"
  build_pause "$pause" "$NODE_BIN/pause-$pause"
}

# Docker's BuildKit builder: docker CLIs before 23 have it built in, newer ones need the buildx
# plugin. When it is missing, build it from source and install it as the user's CLI plugin.
build_buildx() {
  command -v docker >/dev/null || return 0
  docker buildx version >/dev/null 2>&1 && return
  local major; major="$(docker version --format '{{.Client.Version}}' 2>/dev/null | cut -d. -f1)"
  [[ $major =~ ^[0-9]+$ ]] && ((major < 23)) && return
  if ! have_all "$BUILDX_BIN" docker-buildx; then
    log "building docker-buildx $BUILDX_VERSION into $BUILDX_BIN"
    # Its go.mod has exclude directives, which `go install` refuses: build it as the main
    # module, in a writable copy of its source.
    local src="$OAAS_CACHE/build/buildx"
    rm -rf "$src" && mkdir -p "$src" "$BUILDX_BIN"
    cp -r "$(cd "$src" && GOFLAGS='' go mod download -json "github.com/docker/buildx@$BUILDX_VERSION" | jq -r .Dir)/." "$src/"
    chmod -R u+w "$src"
    (cd "$src" && GOFLAGS=-mod=mod go build -trimpath \
      -ldflags "-s -w -X github.com/docker/buildx/version.Version=$BUILDX_VERSION" \
      -o "$BUILDX_BIN/docker-buildx" ./cmd/buildx) || die "building docker-buildx failed (source in $src)"
    rm -rf "$src"
  fi
  mkdir -p "$HOME/.docker/cli-plugins"
  ln -sf "$BUILDX_BIN/docker-buildx" "$HOME/.docker/cli-plugins/docker-buildx"
}

# pause, the Pod sandbox's process: a small C program in the Kubernetes source.
build_pause() {
  local version=$1 out=$2
  if have_all "$out" pause; then log "pause $version: cached in $out"; return; fi
  command -v gcc >/dev/null || die "gcc is required to build pause (apt-get install gcc libc6-dev)"
  local src; src="$(go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | jq -r .Dir)/build/pause/linux/pause.c"
  [[ -f $src ]] || die "pause.c not found in k8s.io/kubernetes@$K8S_VERSION ($src)"
  mkdir -p "$out"
  gcc -Os -static -Wall -Werror -DVERSION="$version" -o "$out/pause" "$src" || die "building pause failed"
  strip "$out/pause"
}

build_kwok() {
  if have_all "$KWOK_BIN" kwok; then log "kwok $KWOK_VERSION: cached in $KWOK_BIN"; return; fi
  log "building kwok $KWOK_VERSION into $KWOK_BIN"
  GOBIN="$KWOK_BIN" GOFLAGS='' go install -trimpath -ldflags "-s -w" "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION" \
    || die "building kwok $KWOK_VERSION failed"
}

command -v go >/dev/null || die "Go is required to build the Kubernetes binaries (https://go.dev/dl)"
mkdir -p "$OAAS_CACHE"
start=$SECONDS
case "${1:-local}" in
  # The loopback control planes (hack/cluster.sh).
  local)
    build_etcd "$ETCD_VERSION" "$ETCD_BIN"
    build_kwok
    build_k8s_commands "$K8S_BIN" "${K8S_COMMANDS[@]}"
    ;;
  kind) build_kind ;;
  *) die "usage: $0 [local|kind]" ;;
esac
log "binaries ready in $((SECONDS - start))s"
