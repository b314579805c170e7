#!/usr/bin/env bash
# The operator as a local process under its own ServiceAccount and the chart's ClusterRole:
# the demo's fallback where no real node can run the operator's pod.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
state=${KUBEINFER_CLUSTER_DIR:-$root/.cache/cluster}
export PATH="$root/bin:$root/.venv/bin:$PATH"

kubectl apply --server-side --force-conflicts -f "$root/crds/" >/dev/null
kubectl wait --for=condition=Established --timeout=30s crd/modeldeployments.kubeinfer.io >/dev/null
operator_kubeconfig="$state/operator.kubeconfig"
echo "operator identity: $(bash "$root/hack/operator-identity.sh" "$operator_kubeconfig")"

if [ -f "$state/operator.pid" ] && kill -0 "$(cat "$state/operator.pid")" 2>/dev/null; then
  echo "already running (pid $(cat "$state/operator.pid"))"
  exit 0
fi
KUBECONFIG="$operator_kubeconfig" setsid kubeinfer operator --metrics-port 19090 --liveness-port 18080 \
  >"$state/logs/operator.log" 2>&1 </dev/null &
echo $! >"$state/operator.pid"
for _ in $(seq 150); do
  curl -sf localhost:18080/healthz >/dev/null && break
  kill -0 "$(cat "$state/operator.pid")" 2>/dev/null || { echo "the operator exited; log: $state/logs/operator.log" >&2; exit 1; }
  sleep 0.2
done
curl -sf localhost:18080/healthz >/dev/null || { echo "timed out after 30s waiting for the operator's /healthz" >&2; exit 1; }
echo "running (pid $(cat "$state/operator.pid")); log: $state/logs/operator.log; metrics: http://localhost:19090/metrics"
