#!/usr/bin/env bash
# Builds the pinned Kubernetes control-plane binaries, etcd and kwok from Go modules,
# once, into a cache outside the repo. Re-running it is a no-op when the binaries exist.
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

build_kubernetes() {
  if have_all "$K8S_BIN" "${K8S_COMMANDS[@]}"; then
    log "kubernetes $K8S_VERSION: cached in $K8S_BIN"; return
  fi
  log "building kubernetes $K8S_VERSION (${K8S_COMMANDS[*]}) into $K8S_BIN; this takes a while once"
  local minor="${K8S_VERSION#v1.}"; minor="${minor%%.*}"
  local pkg=k8s.io/component-base/version
  local ldflags="-s -w -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
  ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
  ldflags+=" -X k8s.io/client-go/pkg/version.gitVersion=$K8S_VERSION"
  local pkgs=(); for c in "${K8S_COMMANDS[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/$c"); done
  wrapper_build "$OAAS_CACHE/build/kubernetes" "k8s.io/kubernetes@$K8S_VERSION" \
    "v0.${K8S_VERSION#v1.}" "$K8S_BIN" "$ldflags" "${pkgs[@]}"
}

build_etcd() {
  if have_all "$ETCD_BIN" etcd; then log "etcd $ETCD_VERSION: cached in $ETCD_BIN"; return; fi
  log "building etcd $ETCD_VERSION into $ETCD_BIN"
  wrapper_build "$OAAS_CACHE/build/etcd" "go.etcd.io/etcd/server/v3@$ETCD_VERSION" \
    "$ETCD_VERSION" "$ETCD_BIN" "-s -w" go.etcd.io/etcd/server/v3
  mv "$ETCD_BIN/v3" "$ETCD_BIN/etcd" 2>/dev/null || mv "$ETCD_BIN/server" "$ETCD_BIN/etcd" 2>/dev/null || true
  have_all "$ETCD_BIN" etcd || die "etcd build produced no binary in $ETCD_BIN"
}

build_kwok() {
  if have_all "$KWOK_BIN" kwok; then log "kwok $KWOK_VERSION: cached in $KWOK_BIN"; return; fi
  log "building kwok $KWOK_VERSION into $KWOK_BIN"
  GOBIN="$KWOK_BIN" GOFLAGS= go install -trimpath -ldflags "-s -w" "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION" \
    || die "building kwok $KWOK_VERSION failed"
}

command -v go >/dev/null || die "Go is required to build the Kubernetes binaries (https://go.dev/dl)"
mkdir -p "$OAAS_CACHE"
start=$SECONDS
build_etcd
build_kwok
build_kubernetes
log "binaries ready in $((SECONDS - start))s"
