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
python3 - "$root/charts/kubeinfer/files/clusterrole-rules.yaml" <<'PY' | kubectl apply --server-side -f - >/dev/null
import json, sys, yaml
rules = yaml.safe_load(open(sys.argv[1]))
name, ns = "kubeinfer-operator", "kubeinfer-system"
items = [
    {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}},
    {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name, "namespace": ns}},
    {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": name}, "rules": rules},
    {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding", "metadata": {"name": name},
     "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
     "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": ns}]},
]
json.dump({"apiVersion": "v1", "kind": "List", "items": items}, sys.stdout)
PY
operator_kubeconfig="$state/operator.kubeconfig"
cp "$KUBECONFIG" "$operator_kubeconfig"
kubectl --kubeconfig "$operator_kubeconfig" config set-credentials operator \
  --token "$(kubectl create token kubeinfer-operator -n kubeinfer-system --duration 24h)" >/dev/null
kubectl --kubeconfig "$operator_kubeconfig" config set-context --current --user operator >/dev/null
echo "operator identity: system:serviceaccount:kubeinfer-system:kubeinfer-operator"

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
