#!/usr/bin/env bash
# One real node beside the simulated ones: containerd + runc, a CNI bridge, kubelet and
# kube-proxy, so pods really run on this machine. The node uses machine-wide state (a
# bridge, iptables rules, sysctls, cgroups, mounts), hence one per machine, and `down`
# restores the machine whether the last run ended cleanly or was killed.
#
#   realnode.sh deps          install what the node needs (apt-get as root), or say what
#   realnode.sh check         exit 0 if this machine can run the node, else print why
#   realnode.sh network       the bridge and sysctls (before the API server binds to it)
#   realnode.sh up STATE      containerd, kubelet, kube-proxy for the cluster in STATE
#   realnode.sh down [STATE]  stop it all and restore the machine (safe to run any time)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
bin="$root/bin"
cache=${KUBEINFER_CACHE:-$HOME/.cache/kubeinfer}

NODE_NAME=real-0
BRIDGE=kubeinfer0
# The benchmarking range (RFC 2544) cannot collide with a real network: pods in the first
# /16, Services in the second; the bridge's address is the node's and the API server's.
NODE_IP=198.18.0.1
POD_SUBNET=198.18.0.0/24
POD_CIDR=198.18.0.0/16
# Machine-wide paths, owned by this script alone.
RUN_DIR=/run/kubeinfer-node
KUBELET_DIR=/var/lib/kubeinfer-node/kubelet
CONTAINERD_ROOT="$cache/node/containerd"   # kept between runs: imported images survive
SOCKET="$RUN_DIR/containerd.sock"
RUNC_ROOT="$RUN_DIR/runc"
PACKAGES=(containerd runc containernetworking-plugins iptables conntrack iproute2 kmod)

log() { printf '[real-node %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

missing_tools() {
  local tool
  for tool in containerd containerd-shim-runc-v2 runc ctr iptables iptables-save ip conntrack; do
    command -v "$tool" >/dev/null || echo "$tool"
  done
  for tool in bridge host-local portmap loopback; do
    [ -x "/usr/lib/cni/$tool" ] || echo "cni/$tool"
  done
}

deps() {
  [ -z "$(missing_tools)" ] && return 0
  if [ "$(id -u)" != 0 ]; then
    log "the real node needs: ${PACKAGES[*]}"
    log "install them with: sudo apt-get install -y --no-install-recommends ${PACKAGES[*]}"
    return 0
  fi
  log "installing ${PACKAGES[*]} (Debian packages)"
  apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -yq --no-install-recommends "${PACKAGES[@]}" >/dev/null
}

# Prints why the node cannot run here (nothing when it can).
why_not() {
  if [ "${KUBEINFER_REAL_NODE:-auto}" = 0 ]; then echo "KUBEINFER_REAL_NODE=0"; return; fi
  if [ "$(id -u)" != 0 ]; then echo "not root (containerd, CNI and iptables need root)"; return; fi
  if [ ! -d /sys/fs/cgroup/memory ] && [ ! -f /sys/fs/cgroup/cgroup.controllers ]; then
    echo "no cgroups mounted at /sys/fs/cgroup"; return
  fi
  local missing; missing=$(missing_tools | tr '\n' ' ')
  if [ -n "$missing" ]; then echo "missing: $missing(run: make node-deps)"; return; fi
  for b in kubelet kube-proxy; do
    [ -x "$bin/$b" ] || { echo "$bin/$b not built (run: make controlplane)"; return; }
  done
  if held_by_other "${1:-}"; then
    echo "a real node already runs on this machine, for the cluster in $(cat "$RUN_DIR/owner")"
  fi
}

alive() { [ -f "$RUN_DIR/$1.pid" ] && kill -0 "$(cat "$RUN_DIR/$1.pid")" 2>/dev/null; }

# The node belongs to another cluster that still runs: its containerd answers, or (while that
# cluster is still starting the node) its API server is up.
held_by_other() { # STATE of the asking cluster
  [ -f "$RUN_DIR/owner" ] || return 1
  local owner; owner=$(cat "$RUN_DIR/owner")
  [ "$owner" != "$1" ] || return 1
  alive containerd && return 0
  [ -f "$owner/kube-apiserver.pid" ] && kill -0 "$(cat "$owner/kube-apiserver.pid")" 2>/dev/null
}

# Saves a sysctl's value the first time, so `down` can put it back.
set_sysctl() { # path under /proc/sys, value
  local saved="$RUN_DIR/sysctl.$(echo "$1" | tr / .)"
  [ -f "$saved" ] || cat "/proc/sys/$1" >"$saved"
  echo "$2" >"/proc/sys/$1"
}

network() {
  # What a killed run left (its processes gone, its bridge, rules and mounts still here).
  if [ -d "$RUN_DIR" ] && ! alive containerd && ! alive kubelet; then
    log "cleaning up after an earlier run that did not stop"
    down
  fi
  mkdir -p "$RUN_DIR"
  if ! ip link show "$BRIDGE" >/dev/null 2>&1; then
    ip link add "$BRIDGE" type bridge
  fi
  ip addr replace "$NODE_IP/24" dev "$BRIDGE"
  ip link set "$BRIDGE" up
  # Nothing addressed to the range leaves the machine, even before kube-proxy has programmed
  # a Service's rules; and pods reach nothing beyond this machine (no masquerading either).
  ip route replace 198.18.0.0/15 dev "$BRIDGE"
  iptables -N KUBEINFER-ISOLATE 2>/dev/null || iptables -F KUBEINFER-ISOLATE
  iptables -A KUBEINFER-ISOLATE -i "$BRIDGE" ! -o "$BRIDGE" -j DROP
  iptables -A KUBEINFER-ISOLATE -o "$BRIDGE" ! -i "$BRIDGE" -j DROP
  iptables -C FORWARD -j KUBEINFER-ISOLATE 2>/dev/null || iptables -I FORWARD 1 -j KUBEINFER-ISOLATE
  set_sysctl net/ipv4/ip_forward 1
  # Replies between pods on the bridge must pass iptables, or Service DNAT breaks.
  [ -f /proc/sys/net/bridge/bridge-nf-call-iptables ] || modprobe br_netfilter 2>/dev/null || true
  set_sysctl net/bridge/bridge-nf-call-iptables 1
}

start() { # name, log, command...
  local name=$1 logfile=$2; shift 2
  alive "$name" && return
  setsid "$@" >"$logfile" 2>&1 </dev/null &
  echo $! >"$RUN_DIR/$name.pid"
}

wait_for() { # what, seconds, command...
  local what=$1 limit=$2; shift 2
  local deadline=$((SECONDS + limit))
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -lt "$deadline" ] || { log "timed out waiting for $what"; return 1; }
    sleep 0.3
  done
}

# Replaces FILE with stdin only when the content differs: kube-proxy exits when its
# configuration file changes, and a second cluster-up must not stop a running node.
write_file() { # file
  local tmp; tmp=$(mktemp "$1.XXXX")
  cat >"$tmp"
  if cmp -s "$tmp" "$1"; then rm -f "$tmp"; else mv "$tmp" "$1"; fi
}

write_configs() { # state
  local state=$1 pki=$1/pki dir=$1/node
  mkdir -p "$dir/cni" "$dir/ipam"
  write_file "$dir/containerd.toml" <<EOF
version = 2
root = "$CONTAINERD_ROOT"
state = "$RUN_DIR/containerd"
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.devmapper"]
[grpc]
  address = "$SOCKET"
[ttrpc]
  address = "$RUN_DIR/containerd.sock.ttrpc"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "registry.k8s.io/pause:3.10"
  # The VM's root may not lower oom_score_adj; without this runc fails to start containers.
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$dir/cni"
  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
    runtime_type = "io.containerd.runc.v2"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
      SystemdCgroup = false
      Root = "$RUNC_ROOT"
EOF
  # No masquerading: nothing in a pod needs to leave this machine.
  write_file "$dir/cni/10-kubeinfer.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "kubeinfer",
  "plugins": [
    {"type": "bridge", "bridge": "$BRIDGE", "isGateway": true, "ipMasq": false, "hairpinMode": true,
     "ipam": {"type": "host-local", "dataDir": "$dir/ipam",
              "ranges": [[{"subnet": "$POD_SUBNET", "gateway": "$NODE_IP"}]],
              "routes": [{"dst": "0.0.0.0/0"}]}},
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
EOF
  write_file "$dir/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $NODE_IP
healthzBindAddress: 127.0.0.1
readOnlyPort: 0
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $pki/ca.crt}
authorization: {mode: Webhook}
containerRuntimeEndpoint: unix://$SOCKET
cgroupDriver: cgroupfs
failCgroupV1: false
failSwapOn: false
# Images are imported here, not pulled: never garbage-collect them, and evict only when
# the disk is really full (the machine's disk can sit near the default thresholds).
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: 200Mi, nodefs.available: 1%, imagefs.available: 1%, nodefs.inodesFree: 1%}
serializeImagePulls: false
maxPods: 40
registerWithTaints:
  - {key: kubeinfer.io/real-node, value: "true", effect: NoSchedule}
EOF
  write_file "$dir/kube-proxy.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: $state/kube-proxy.kubeconfig}
hostnameOverride: $NODE_NAME
mode: iptables
clusterCIDR: $POD_CIDR
bindAddress: $NODE_IP
metricsBindAddress: 127.0.0.1:10249
healthzBindAddress: 127.0.0.1:10256
nodePortAddresses: ["$NODE_IP/32"]
# Leave the machine's conntrack settings and route_localnet as they are.
conntrack: {maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
iptables: {localhostNodePorts: false}
EOF
}

up() { # state: the cluster's state folder (pki, kubeconfigs written by up.sh)
  local state=$1
  local reason; reason=$(why_not "$state")
  if [ -n "$reason" ]; then log "not started: $reason"; return 1; fi
  mkdir -p "$RUN_DIR" "$KUBELET_DIR" "$CONTAINERD_ROOT" "$state/logs"
  echo "$state" >"$RUN_DIR/owner"
  network
  write_configs "$state"
  start containerd "$state/logs/containerd.log" containerd --config "$state/node/containerd.toml"
  wait_for containerd 30 ctr --address "$SOCKET" version
  # Containers of an earlier run are gone (down removed them): forget their records too.
  local ids; ids=$(ctr --address "$SOCKET" -n k8s.io containers ls -q 2>/dev/null || true)
  [ -z "$ids" ] || ctr --address "$SOCKET" -n k8s.io containers delete $ids >/dev/null 2>&1 || true
  if [ -x "$root/hack/images/import.sh" ]; then bash "$root/hack/images/import.sh" "$SOCKET" || true; fi
  start kubelet "$state/logs/kubelet.log" "$bin/kubelet" --config "$state/node/kubelet.yaml" \
    --kubeconfig "$state/kubelet.kubeconfig" --hostname-override "$NODE_NAME" \
    --node-ip "$NODE_IP" --node-labels kubeinfer.io/node-kind=real \
    --root-dir "$KUBELET_DIR" --cert-dir "$state/node/kubelet-pki"
  start kube-proxy "$state/logs/kube-proxy.log" "$bin/kube-proxy" --config "$state/node/kube-proxy.yaml"
}

stop_pid() { # name
  local pidfile="$RUN_DIR/$1.pid" pid
  [ -f "$pidfile" ] || return 0
  pid=$(cat "$pidfile")
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL -- "-$pid" 2>/dev/null || true
  fi
  rm -f "$pidfile"
}

# Deletes every rule and chain that kube-proxy, the kubelet, the CNI plugins or we made.
clean_iptables() {
  local cmd table chains
  for cmd in iptables ip6tables; do
    command -v "$cmd" >/dev/null || continue
    for table in filter nat mangle; do
      # Rules that jump to our chains first, then the chains themselves.
      { "$cmd" -t "$table" -S 2>/dev/null || true; } | { grep -E '^-A [A-Z]+ .*-j (KUBE|CNI|KUBEINFER)-' || true; } \
        | { grep -vE '^-A (KUBE|CNI|KUBEINFER)-' || true; } | sed 's/^-A/-D/' \
        | while read -r rule; do eval "$cmd -t $table $rule" 2>/dev/null || true; done
      chains=$({ "$cmd" -t "$table" -S 2>/dev/null || true; } | awk '$1 == "-N" && $2 ~ /^(KUBE|CNI|KUBEINFER)-/ {print $2}')
      for c in $chains; do "$cmd" -t "$table" -F "$c" 2>/dev/null || true; done
      for c in $chains; do "$cmd" -t "$table" -X "$c" 2>/dev/null || true; done
    done
  done
}

down() {
  stop_pid kube-proxy
  stop_pid kubelet
  # Containers outlive containerd (their shims are detached): remove them through runc.
  if command -v runc >/dev/null && [ -d "$RUNC_ROOT" ]; then
    for ns_root in "$RUNC_ROOT"/*; do
      [ -d "$ns_root" ] || continue
      for id in $(runc --root "$ns_root" list -q 2>/dev/null); do
        runc --root "$ns_root" delete --force "$id" >/dev/null 2>&1 || true
      done
    done
  fi
  pkill -KILL -f "containerd-shim-runc-v2 .*-address $SOCKET" 2>/dev/null || true
  stop_pid containerd
  # Volumes, sandboxes' /dev/shm, container root filesystems: innermost first.
  { grep -oE " ($KUBELET_DIR|$RUN_DIR|$CONTAINERD_ROOT)[^ ]*" /proc/mounts || true; } | sort -r | while read -r m; do
    umount -l "$m" 2>/dev/null || true
  done
  for ns in $(ip netns list 2>/dev/null | awk '/^cni-/ {print $1}'); do
    ip netns delete "$ns" 2>/dev/null || true
  done
  if ip link show "$BRIDGE" >/dev/null 2>&1; then ip link delete "$BRIDGE"; fi
  clean_iptables
  for saved in "$RUN_DIR"/sysctl.*; do
    [ -f "$saved" ] || continue
    path=$(basename "$saved" | sed 's/^sysctl\.//; s/\./\//g')
    cat "$saved" >"/proc/sys/$path" 2>/dev/null || true
  done
  rm -rf "$RUN_DIR" "$KUBELET_DIR"
}

case "${1:-}" in
  deps) deps ;;
  check) reason=$(why_not "${2:-}"); [ -z "$reason" ] || { echo "$reason"; exit 1; } ;;
  network) network ;;
  up) up "${2:?state folder}" ;;
  down) # STATE given: only the node of that cluster (or the leftovers of a dead one)
    [ "$(id -u)" = 0 ] || exit 0
    if [ -n "${2:-}" ] && held_by_other "$2"; then
      exit 0
    fi
    down ;;
  *) echo "usage: $0 deps|check [STATE]|network|up STATE|down [STATE]" >&2; exit 2 ;;
esac
