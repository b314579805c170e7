#!/usr/bin/env bash
# The main job on the local default: control plane up, CRD installed, the operator running
# under its own ServiceAccount and minimal ClusterRole, the examples applied, and their
# decisions shown. Everything stays up to explore; `make cluster-down` stops it all.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
state=${KUBEINFER_CLUSTER_DIR:-$root/.cache/cluster}
export PATH="$root/bin:$root/.venv/bin:$PATH"
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

say "control plane"
eval "$(bash "$here/controlplane/up.sh")"
echo "KUBECONFIG=$KUBECONFIG"

say "CRD and the operator's RBAC"
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

say "operator"
if [ -f "$state/operator.pid" ] && kill -0 "$(cat "$state/operator.pid")" 2>/dev/null; then
  echo "already running (pid $(cat "$state/operator.pid"))"
else
  KUBECONFIG="$operator_kubeconfig" setsid kubeinfer operator --metrics-port 19090 --liveness-port 18080 \
    >"$state/logs/operator.log" 2>&1 </dev/null &
  echo $! >"$state/operator.pid"
  until curl -sf localhost:18080/healthz >/dev/null; do sleep 0.3; done
  echo "running (pid $(cat "$state/operator.pid")); log: $state/logs/operator.log; metrics: http://localhost:19090/metrics"
fi

say "ModelDeployments (one per engine path)"
for example in gguf-cpu gguf-gpu vllm-h100 transformers-fallback mlx; do
  kubectl apply -f "$root/examples/$example.yaml"
done
# Settled: every ModelDeployment has either no engine (it says why) or Available=True.
names=$(kubectl get md -o jsonpath='{.items[*].metadata.name}')
for name in $names; do
  for _ in $(seq 150); do
    selected=$(kubectl get md "$name" -o jsonpath='{.status.conditions[?(@.type=="EngineSelected")].status}')
    available=$(kubectl get md "$name" -o jsonpath='{.status.conditions[?(@.type=="Available")].status}')
    { [ "$selected" = False ] || [ "$available" = True ]; } && break
    sleep 0.2
  done
done

say "kubectl get md -o wide"
kubectl get md -o wide
say "why no engine for qwen-mlx"
kubectl get md qwen-mlx -o jsonpath='{range .status.conditions[*]}{.type}={.status} {.reason}: {.message}{"\n"}{end}'
say "where the pods run"
kubectl get pods -o wide --sort-by=.metadata.name | awk '{print $1, $3, $7}' | column -t
cat <<EOF2

Next:
  export KUBECONFIG=$KUBECONFIG
  kubectl describe md llama-70b             # the decision trace and conditions
  kubeinfer explain -f examples/vllm-h100.yaml --kubeconfig \$KUBECONFIG
  make cluster-down                         # stop the operator and the control plane
EOF2
