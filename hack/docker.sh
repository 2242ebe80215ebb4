#!/usr/bin/env bash
# Makes a Docker daemon answer, for the kind test bed. Idempotent:
# - a daemon that already answers (a user's machine) is used as it is, nothing changes;
# - otherwise Debian's docker.io is installed if missing and a daemon is started: by
#   systemd where systemd runs, else in the background with its log in $OAAS_CACHE.
# Where this host's capability bounding set lacks capabilities (some sandboxes drop
# CAP_SYS_RESOURCE), a privileged container — every kind node — cannot start; then, and
# only for a daemon we configure ourselves, hack/docker/runc-capdrop becomes the default
# OCI runtime.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

DOCKER_LOG="$OAAS_CACHE/dockerd.log"
WRAPPER=/usr/local/libexec/oaas/runc-capdrop

docker_answers() { timeout 10 docker info >/dev/null 2>&1; }

host_lacks_capabilities() {
  # Every capability the kernel knows (cap_last_cap) must be in our bounding set.
  local last bnd
  last="$(cat /proc/sys/kernel/cap_last_cap)"
  bnd=$((16#$(awk '/^CapBnd:/ {print $2}' /proc/self/status)))
  (( (bnd & ((1 << (last + 1)) - 1)) != (1 << (last + 1)) - 1 ))
}

install_docker() {
  command -v dockerd >/dev/null && command -v jq >/dev/null && return
  command -v apt-get >/dev/null || die "Docker is required: install a Docker engine and start it"
  log "installing Debian's docker.io"
  local sudo=(); [[ $EUID -ne 0 ]] && sudo=(sudo)
  "${sudo[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends \
    docker.io jq iptables >/dev/null
}

configure_runtime() {
  host_lacks_capabilities || return 0
  log "this host's capability bounding set is partial: docker runs containers through $WRAPPER"
  install -D -m 0755 "$HACK_DIR/docker/runc-capdrop" "$WRAPPER"
  mkdir -p /etc/docker
  local current='{}'
  [[ -s /etc/docker/daemon.json ]] && current="$(cat /etc/docker/daemon.json)"
  jq --arg w "$WRAPPER" '.runtimes["oaas-runc"] = {path: $w} | .["default-runtime"] = "oaas-runc"' \
    <<<"$current" > /etc/docker/daemon.json.new
  mv /etc/docker/daemon.json.new /etc/docker/daemon.json
}

start_daemon() {
  if [[ -d /run/systemd/system ]]; then
    systemctl restart docker
  else
    mkdir -p "$OAAS_CACHE"
    log "starting dockerd (log: $DOCKER_LOG)"
    nohup dockerd >>"$DOCKER_LOG" 2>&1 </dev/null &
    disown
  fi
  local i
  for ((i = 0; i < 60; i++)); do docker_answers && return; sleep 1; done
  die "dockerd did not answer within 60 s; see $DOCKER_LOG"
}

if docker_answers; then
  log "docker: using the running daemon"
  exit 0
fi
[[ $EUID -eq 0 ]] || die "no Docker daemon answers; start one (or run this script as root to install and start Debian's docker.io)"
install_docker
configure_runtime
start_daemon
log "docker: daemon started"
