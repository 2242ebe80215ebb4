#!/usr/bin/env bash
# Local real Kubernetes control planes for development and tests: a hub and two spokes on
# loopback, each with its own etcd, kube-apiserver, kube-controller-manager, kube-scheduler
# and kwok (a fake kubelet that makes Pods on fake Nodes become Ready).
#
#   cluster.sh up       build binaries if needed, start all clusters, write the kubeconfig
#   cluster.sh down     stop exactly the processes `up` started (pid files), remove state
#   cluster.sh status   show each component and whether it answers
#   cluster.sh running  exit 0 when every component is running
#   cluster.sh assert-down   fail if any process of ours is still running
#   cluster.sh stop CLUSTER COMPONENT    stop one component (e.g. spoke-b kube-apiserver)
#   cluster.sh start CLUSTER COMPONENT   start it again with the same flags and state
#
# OAAS_CLUSTERS (default "hub spoke-a spoke-b") and OAAS_PORT_BASE (default 30000) let a
# test run an isolated set next to a developer's clusters, with its own OAAS_STATE.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# A space-separated list, split into words.
read -ra CLUSTERS <<<"${OAAS_CLUSTERS:-hub spoke-a spoke-b}"
PORT_BASE="${OAAS_PORT_BASE:-30000}"
FAKE_NODES="${OAAS_FAKE_NODES:-3}"
COMPONENTS=(etcd kube-apiserver kube-controller-manager kube-scheduler kwok)
PKI="$OAAS_STATE/pki"

# Ports of cluster number $1 (0, 1, 2...): one block of 100 per cluster.
port() {
  local idx=$1 what=$2 base=$((PORT_BASE + $1 * 100))
  case $what in
    apiserver) echo $((base + 43)) ;;
    etcd) echo $((base + 79)) ;;
    etcd-peer) echo $((base + 80)) ;;
    controller-manager) echo $((base + 57)) ;;
    scheduler) echo $((base + 59)) ;;
    kwok) echo $((base + 47)) ;;
  esac
}

context_name() { echo "oaas-$1"; }

# --- certificates -------------------------------------------------------------------------
# One CA signs the API servers' serving certificate (all listen on 127.0.0.1) and the admin
# client certificate (group system:masters) that every component and user authenticates with.
make_pki() {
  [[ -f "$PKI/admin.crt" ]] && return
  mkdir -p "$PKI"
  (
    cd "$PKI"
    new_ca oaas-local-ca
    new_leaf apiserver "/CN=kube-apiserver" "basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default.svc"
    new_leaf admin "/O=system:masters/CN=oaas-admin" "basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=clientAuth"
    openssl genrsa -out sa.key 2048 2>/dev/null
    openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
  )
}

write_kubeconfig() {
  local file=$1; shift
  {
    echo "apiVersion: v1"
    echo "kind: Config"
    echo "current-context: $(context_name "$1")"
    echo "clusters:"
    for name in "$@"; do
      echo "- name: $(context_name "$name")"
      echo "  cluster:"
      echo "    server: https://127.0.0.1:$(port "$(cluster_index "$name")" apiserver)"
      echo "    certificate-authority-data: $(base64 -w0 < "$PKI/ca.crt")"
    done
    echo "users:"
    echo "- name: oaas-admin"
    echo "  user:"
    echo "    client-certificate-data: $(base64 -w0 < "$PKI/admin.crt")"
    echo "    client-key-data: $(base64 -w0 < "$PKI/admin.key")"
    echo "contexts:"
    for name in "$@"; do
      echo "- name: $(context_name "$name")"
      echo "  context: {cluster: $(context_name "$name"), user: oaas-admin, namespace: default}"
    done
  } > "$file"
  chmod 600 "$file"
}

cluster_index() {
  local i
  for i in "${!CLUSTERS[@]}"; do [[ "${CLUSTERS[$i]}" == "$1" ]] && { echo "$i"; return; }; done
  die "unknown cluster $1"
}

# --- processes ----------------------------------------------------------------------------
# start NAME COMPONENT BINARY ARGS...: runs in its own session so `down` can signal the group.
start() {
  local name=$1 comp=$2 bin=$3; shift 3
  local dir="$OAAS_STATE/$name"
  mkdir -p "$dir/logs" "$dir/pids"
  setsid "$bin" "$@" > "$dir/logs/$comp.log" 2>&1 < /dev/null &
  echo $! > "$dir/pids/$comp.pid"
}

# wait_ready NAME COMPONENT URL [curl args...]: polls URL until it answers 2xx.
wait_ready() {
  local name=$1 comp=$2 url=$3; shift 3
  local pidfile="$OAAS_STATE/$name/pids/$comp.pid" log="$OAAS_STATE/$name/logs/$comp.log"
  local deadline=$((SECONDS + ${OAAS_START_TIMEOUT:-120}))
  until curl -fsS -o /dev/null --max-time 2 "$@" "$url" 2>/dev/null; do
    if ! kill -0 "$(cat "$pidfile")" 2>/dev/null; then
      tail -n 20 "$log" >&2 || true
      die "$comp of cluster $name exited during start-up; its log is $log"
    fi
    if ((SECONDS > deadline)); then
      tail -n 20 "$log" >&2 || true
      die "$comp of cluster $name did not become ready at $url; its log is $log"
    fi
    sleep 0.3
  done
}

component_kubeconfig() { # a kubeconfig with only this cluster, for its components
  local name=$1 file="$OAAS_STATE/$1/kubeconfig"
  write_kubeconfig "$file" "$name"
  echo "$file"
}

# start_component NAME COMPONENT: starts one component of a cluster with its flags.
start_component() {
  local name=$1 comp=$2 idx; idx="$(cluster_index "$name")"
  local dir="$OAAS_STATE/$name" kc="$OAAS_STATE/$name/kubeconfig"
  local api; api="https://127.0.0.1:$(port "$idx" apiserver)"
  local auth=(--kubeconfig "$kc" --authentication-kubeconfig "$kc" --authorization-kubeconfig "$kc"
    --bind-address 127.0.0.1 --leader-elect=false)
  case $comp in
    # Fsync is off: this etcd holds throwaway test state and fsync dominates on slow disks.
    etcd) start "$name" etcd "$ETCD_BIN/etcd" --name "$name" --data-dir "$dir/etcd" \
      --listen-client-urls "http://127.0.0.1:$(port "$idx" etcd)" \
      --advertise-client-urls "http://127.0.0.1:$(port "$idx" etcd)" \
      --listen-peer-urls "http://127.0.0.1:$(port "$idx" etcd-peer)" \
      --initial-advertise-peer-urls "http://127.0.0.1:$(port "$idx" etcd-peer)" \
      --initial-cluster "$name=http://127.0.0.1:$(port "$idx" etcd-peer)" \
      --unsafe-no-fsync --log-level warn ;;
    # --endpoint-reconciler-type=none: the `kubernetes` Service cannot point at a loopback IP.
    kube-apiserver) start "$name" kube-apiserver "$K8S_BIN/kube-apiserver" \
      --etcd-servers "http://127.0.0.1:$(port "$idx" etcd)" \
      --bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$(port "$idx" apiserver)" \
      --tls-cert-file "$PKI/apiserver.crt" --tls-private-key-file "$PKI/apiserver.key" \
      --client-ca-file "$PKI/ca.crt" \
      --service-account-issuer "$api" --service-account-key-file "$PKI/sa.pub" \
      --service-account-signing-key-file "$PKI/sa.key" \
      --service-cluster-ip-range 10.96.0.0/16 --authorization-mode Node,RBAC \
      --endpoint-reconciler-type none --allow-privileged ;;
    # A long node grace period: under a heavy load kwok's lease renewals can come late, and
    # the node lifecycle controller would then mark every Pod NotReady for good (kwok does
    # not mark them back).
    kube-controller-manager) start "$name" kube-controller-manager \
      "$K8S_BIN/kube-controller-manager" "${auth[@]}" \
      --secure-port "$(port "$idx" controller-manager)" \
      --service-account-private-key-file "$PKI/sa.key" --root-ca-file "$PKI/ca.crt" \
      --cluster-signing-cert-file "$PKI/ca.crt" --cluster-signing-key-file "$PKI/ca.key" \
      --use-service-account-credentials=false \
      --controllers '*,-node-ipam-controller,-cloud-node-lifecycle-controller' \
      --node-monitor-grace-period 10m ;;
    kube-scheduler) start "$name" kube-scheduler "$K8S_BIN/kube-scheduler" "${auth[@]}" \
      --secure-port "$(port "$idx" scheduler)" ;;
    # Node leases are kwok's heartbeat: without them nothing renews a fake node, and after
    # the grace period the node lifecycle controller marks it NotReady with all its Pods
    # (which kwok never marks Ready again).
    kwok) start "$name" kwok "$KWOK_BIN/kwok" --kubeconfig "$kc" \
      --node-lease-duration-seconds 40 \
      --manage-all-nodes=false \
      --manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake \
      --disregard-status-with-annotation-selector=kwok.x-k8s.io/status=custom \
      --cidr=10.244.0.0/16 --node-ip=10.244.0.1 \
      --server-address "127.0.0.1:$(port "$idx" kwok)" ;;
    *) die "unknown component $comp (one of: ${COMPONENTS[*]})" ;;
  esac
}

# wait_component NAME COMPONENT: waits until the component answers its health endpoint.
wait_component() {
  local name=$1 comp=$2 idx; idx="$(cluster_index "$name")"
  local tls=(--cacert "$PKI/ca.crt" --cert "$PKI/admin.crt" --key "$PKI/admin.key")
  case $comp in
    etcd) wait_ready "$name" etcd "http://127.0.0.1:$(port "$idx" etcd)/health" ;;
    kube-apiserver) wait_ready "$name" kube-apiserver \
      "https://127.0.0.1:$(port "$idx" apiserver)/readyz" "${tls[@]}" ;;
    kube-controller-manager) wait_ready "$name" "$comp" \
      "https://127.0.0.1:$(port "$idx" controller-manager)/healthz" -k ;;
    kube-scheduler) wait_ready "$name" "$comp" "https://127.0.0.1:$(port "$idx" scheduler)/healthz" -k ;;
    kwok) wait_ready "$name" kwok "http://127.0.0.1:$(port "$idx" kwok)/healthz" ;;
  esac
}

up_cluster() {
  local name=$1 comp dir="$OAAS_STATE/$1"
  if [[ -f "$dir/pids/kwok.pid" ]] && kill -0 "$(cat "$dir/pids/kwok.pid")" 2>/dev/null; then
    log "cluster $name is already running"; return
  fi
  mkdir -p "$dir"
  component_kubeconfig "$name" >/dev/null
  for comp in etcd kube-apiserver; do
    start_component "$name" "$comp"
    wait_component "$name" "$comp"
  done
  for comp in kube-controller-manager kube-scheduler kwok; do start_component "$name" "$comp"; done
  for comp in kube-controller-manager kube-scheduler kwok; do wait_component "$name" "$comp"; done
  add_fake_nodes "$name" "$dir/kubeconfig"
}

# A component of a running cluster, stopped or started on its own (fault tests stop a
# spoke's API server, or restart the hub's): same flags, same state, same ports.
cmd_stop() {
  [[ $# -eq 2 ]] || die "usage: $0 stop CLUSTER COMPONENT"
  cluster_index "$1" >/dev/null
  stop_pidfile "$OAAS_STATE/$1/pids/$2.pid"
  log "stopped $2 of cluster $1"
}

cmd_start() {
  [[ $# -eq 2 ]] || die "usage: $0 start CLUSTER COMPONENT"
  local pidfile="$OAAS_STATE/$1/pids/$2.pid"
  [[ -d "$OAAS_STATE/$1" ]] || die "cluster $1 is not up (run: $0 up)"
  if [[ -f "$pidfile" ]] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
    log "$2 of cluster $1 is already running"; return
  fi
  start_component "$1" "$2"
  wait_component "$1" "$2"
  log "started $2 of cluster $1"
}

add_fake_nodes() {
  local name=$1 kc=$2 i
  for ((i = 0; i < FAKE_NODES; i++)); do
    cat <<EOF
---
apiVersion: v1
kind: Node
metadata:
  name: $name-node-$i
  annotations:
    kwok.x-k8s.io/node: fake
    node.alpha.kubernetes.io/ttl: "0"
  labels:
    type: kwok
    kubernetes.io/hostname: $name-node-$i
    kubernetes.io/os: linux
    topology.kubernetes.io/zone: $name-zone-$((i % 3))
status:
  allocatable: {cpu: "32", memory: 256Gi, pods: "1000"}
  capacity: {cpu: "32", memory: 256Gi, pods: "1000"}
EOF
  done | "$K8S_BIN/kubectl" --kubeconfig "$kc" apply --server-side -f - >/dev/null
}

cmd_up() {
  local start=$SECONDS name
  bash "$HACK_DIR/build-k8s.sh"
  mkdir -p "$OAAS_STATE"
  make_pki
  for name in "${CLUSTERS[@]}"; do
    log "starting cluster $name (API server https://127.0.0.1:$(port "$(cluster_index "$name")" apiserver))"
    up_cluster "$name"
  done
  write_kubeconfig "$OAAS_KUBECONFIG" "${CLUSTERS[@]}"
  log "clusters ${CLUSTERS[*]} ready in $((SECONDS - start))s; contexts: $(printf 'oaas-%s ' "${CLUSTERS[@]}")"
  echo "export KUBECONFIG=$OAAS_KUBECONFIG"
}

# --- teardown -----------------------------------------------------------------------------
stop_pidfile() {
  local pidfile=$1 pid i
  pid="$(cat "$pidfile" 2>/dev/null)" || return 0
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$pidfile"
}

cmd_down() {
  local name comp idx pidfile
  for name in "${CLUSTERS[@]}"; do
    # Operators started on this cluster by `just up` (hack/up.sh) go first.
    for pidfile in "$OAAS_STATE/$name/pids/"oaas-*.pid; do
      [[ -e "$pidfile" ]] && stop_pidfile "$pidfile"
    done
    # Reverse start order, so nothing logs errors about a dependency that just went away.
    for ((idx = ${#COMPONENTS[@]} - 1; idx >= 0; idx--)); do
      comp=${COMPONENTS[$idx]}
      stop_pidfile "$OAAS_STATE/$name/pids/$comp.pid"
    done
    rm -rf "${OAAS_STATE:?}/$name"
  done
  rm -rf "$PKI" "$OAAS_KUBECONFIG"
  rmdir "$OAAS_STATE" 2>/dev/null || true
  log "clusters ${CLUSTERS[*]} stopped and their state removed"
}

# Processes of ours are the ones whose command line points into our state directory.
our_processes() { pgrep -af -- "$OAAS_STATE/" | grep -v -e pgrep -e "$0" || true; }

cmd_assert_down() {
  local left; left="$(our_processes)"
  if [[ -n "$left" ]]; then
    echo "$left" >&2
    die "processes of ours are still running after cluster-down"
  fi
  [[ ! -d "$OAAS_STATE" ]] || die "state directory $OAAS_STATE still exists after cluster-down"
  log "no process of ours is left and $OAAS_STATE is gone"
}

cmd_status() {
  local name comp pidfile state idx
  for name in "${CLUSTERS[@]}"; do
    idx="$(cluster_index "$name")"
    printf '%-8s %-24s %-8s %s\n' "$name" "https://127.0.0.1:$(port "$idx" apiserver)" "" ""
    for comp in "${COMPONENTS[@]}"; do
      pidfile="$OAAS_STATE/$name/pids/$comp.pid"
      if [[ -f "$pidfile" ]] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
        state="running (pid $(cat "$pidfile"))"
      else
        state="stopped"
      fi
      printf '  %-26s %s\n' "$comp" "$state"
    done
  done
  if [[ -f "$OAAS_KUBECONFIG" ]]; then
    for name in "${CLUSTERS[@]}"; do
      printf '%-16s ' "oaas-$name"
      "$K8S_BIN/kubectl" --kubeconfig "$OAAS_KUBECONFIG" --context "oaas-$name" get nodes \
        --no-headers 2>/dev/null | awk '{n++; if ($2=="Ready") r++} END {printf "%d/%d nodes Ready\n", r, n}' \
        || echo "not answering"
    done
  fi
}

# Exit status 0 when every component of every cluster is running.
cmd_running() {
  local name comp pidfile
  for name in "${CLUSTERS[@]}"; do
    for comp in "${COMPONENTS[@]}"; do
      pidfile="$OAAS_STATE/$name/pids/$comp.pid"
      [[ -f "$pidfile" ]] && kill -0 "$(cat "$pidfile")" 2>/dev/null || return 1
    done
  done
}

case "${1:-}" in
  up) cmd_up ;;
  stop) shift; cmd_stop "$@" ;;
  start) shift; cmd_start "$@" ;;
  running) cmd_running ;;
  down) cmd_down ;;
  status) cmd_status ;;
  assert-down) cmd_assert_down ;;
  kubeconfig) echo "$OAAS_KUBECONFIG" ;;
  *) die "usage: $0 up|down|status|running|assert-down|kubeconfig|stop C COMP|start C COMP" ;;
esac
