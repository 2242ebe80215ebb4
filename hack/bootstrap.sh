#!/usr/bin/env bash
# Installs everything the project needs, idempotently: Debian packages, `just`, Rust
# components, the pinned Kubernetes binaries and kind (built once from Go modules, cached
# outside the repo), and a running Docker daemon. Safe to run again: it only does what is
# missing.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# prometheus: the NFR analyzer's tests query a real one. debootstrap, gcc, libc6-dev, jq:
# the kind test bed's images (hack/images.sh; pause is C). shellcheck: `just lint`.
APT_PACKAGES=(openssl curl procps ca-certificates python3 python3-venv prometheus
  debootstrap gcc libc6-dev jq shellcheck)

missing_apt() {
  local p
  for p in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || echo "$p"
  done
}

install_apt() {
  local missing; mapfile -t missing < <(missing_apt)
  ((${#missing[@]} == 0)) && return
  command -v apt-get >/dev/null || die "please install: ${missing[*]}"
  local sudo=(); [[ $EUID -ne 0 ]] && sudo=(sudo)
  log "installing Debian packages: ${missing[*]}"
  "${sudo[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# `just` comes from PyPI as a prebuilt wheel (rust-just); cargo builds it if pip is absent.
install_just() {
  if command -v just >/dev/null && [[ "$(just --version)" == "just $JUST_VERSION" ]]; then return; fi
  log "installing just $JUST_VERSION"
  if command -v pip3 >/dev/null || command -v pip >/dev/null; then
    "$(command -v pip3 || command -v pip)" install -q "rust-just==$JUST_VERSION"
  else
    cargo install -q --locked just --version "$JUST_VERSION"
  fi
  command -v just >/dev/null || die "just was installed but is not on PATH"
}

# schemathesis fuzzes the REST facade (`just fuzz-rest`); it lives in a virtualenv of its
# own so its Python dependencies touch nothing else.
install_schemathesis() {
  [[ -x "$SCHEMATHESIS_VENV/bin/schemathesis" ]] && return
  log "installing schemathesis $SCHEMATHESIS_VERSION into $SCHEMATHESIS_VENV"
  rm -rf "$SCHEMATHESIS_VENV"
  python3 -m venv "$SCHEMATHESIS_VENV"
  "$SCHEMATHESIS_VENV/bin/pip" install -q "schemathesis==$SCHEMATHESIS_VERSION"
}

check_toolchains() {
  command -v cargo >/dev/null || die "Rust is required (https://rustup.rs)"
  command -v go >/dev/null || die "Go is required to build the Kubernetes binaries (https://go.dev/dl)"
  if command -v rustup >/dev/null; then
    rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy rustfmt
  fi
}

install_apt
check_toolchains
install_just
install_schemathesis
# The kind test bed needs a Docker daemon: use the running one, else install and start one.
bash "$HACK_DIR/docker.sh"
bash "$HACK_DIR/build-k8s.sh" local
bash "$HACK_DIR/build-k8s.sh" kind
log "bootstrap complete"
