#!/usr/bin/env bash
# Stops every process cluster-up started (each in its own process group) and deletes the
# cluster's state (etcd data, keys), so the next cluster-up starts empty. Logs are kept.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
state=${KUBEINFER_CLUSTER_DIR:-$root/.cache/cluster}

for name in operator kwok kube-scheduler kube-controller-manager kube-apiserver etcd; do
  pidfile="$state/$name.pid"
  [ -f "$pidfile" ] || continue
  pid=$(cat "$pidfile")
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid"
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL -- "-$pid" 2>/dev/null || true
  fi
  rm -f "$pidfile"
done
bash "$here/realnode.sh" down "$state"
[ -d "$state" ] && find "$state" -mindepth 1 -maxdepth 1 ! -name logs -exec rm -rf {} +
echo "[cluster-down] stopped"
