#!/usr/bin/env bash
# The main job on the local default: the control plane with its simulated GPU nodes and one
# real node, the operator installed by the Helm chart as a pod, one ModelDeployment per
# engine path (decisions on the simulated GPU classes) and one on the real node that ends
# with a chat completion through its Service. Everything stays up to explore;
# `make cluster-down` stops it all.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
state=${KUBEINFER_CLUSTER_DIR:-$root/.cache/cluster}
models=${KUBEINFER_CACHE:-$HOME/.cache/kubeinfer}/node/models
export PATH="$root/bin:$root/.venv/bin:$PATH"
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
step() { printf '[demo %s] %s\n' "$(date +%H:%M:%S)" "$*"; }
# Polls `command` until it succeeds; after `limit` seconds fails naming what it waited for.
wait_until() { # what, seconds, command...
  local what=$1 limit=$2; shift 2
  local deadline=$((SECONDS + limit))
  until "$@" >/dev/null 2>&1; do
    if [ $SECONDS -ge $deadline ]; then echo "timed out after ${limit}s waiting for $what" >&2; exit 1; fi
    sleep 0.2
  done
}

say "control plane"
eval "$(bash "$here/controlplane/up.sh")"
echo "KUBECONFIG=$KUBECONFIG"
real_node=$(cat "$state/real-node" 2>/dev/null || true)

if [ -n "$real_node" ]; then
  say "operator (Helm chart, a pod on the real node)"
  step "helm upgrade --install kubeinfer charts/kubeinfer (CRD, RBAC, operator Deployment)"
  helm upgrade --install kubeinfer "$root/charts/kubeinfer" -n kubeinfer-system --create-namespace \
    -f "$here/demo/operator-values.yaml" --wait --timeout 120s >/dev/null
  kubectl -n kubeinfer-system get pods -o wide -l app.kubernetes.io/name=kubeinfer | awk '{print $1, $2, $3, $7}' | column -t
  metrics_ip=$(kubectl -n kubeinfer-system get service kubeinfer-metrics -o jsonpath='{.spec.clusterIP}')
  echo "metrics: http://$metrics_ip:9090/metrics; log: kubectl -n kubeinfer-system logs deploy/kubeinfer"
else
  say "operator (a process: no real node on this machine, see above)"
  bash "$here/demo/operator-process.sh"
fi

say "ModelDeployments on the simulated GPU nodes (one per engine path)"
for example in gguf-cpu gguf-gpu vllm-h100 transformers-fallback mlx; do
  kubectl apply -f "$root/examples/$example.yaml"
done
# Settled: every ModelDeployment has either no engine (it says why) or Available=True.
settled() {
  local name=$1 selected available
  selected=$(kubectl get md "$name" -o jsonpath='{.status.conditions[?(@.type=="EngineSelected")].status}')
  available=$(kubectl get md "$name" -o jsonpath='{.status.conditions[?(@.type=="Available")].status}')
  [ "$selected" = False ] || [ "$available" = True ]
}
for name in $(kubectl get md -o jsonpath='{.items[*].metadata.name}'); do
  wait_until "ModelDeployment $name to settle" 60 settled "$name"
done

if [ -n "$real_node" ]; then
  say "a real model on the real node: tiny Llama, GGUF, llama.cpp"
  step "making the tiny model (first time only) in $models"
  python "$root/tests/tiny_model.py" "$models" >/dev/null
  sed -e "s|@MODELS@|$models/tiny-llama-v1|" -e "s|@NODE@|$real_node|" "$here/demo/model-volume.yaml" \
    | kubectl apply -f - >/dev/null
  kubectl delete -f "$root/examples/tiny-gguf-real-node.yaml" --ignore-not-found --wait >/dev/null
  applied=$(date +%s.%N)
  kubectl apply -f "$root/examples/tiny-gguf-real-node.yaml"
  step "waiting for Available (the engine's /health answers)"
  wait_until "tiny-gguf to be Available" 180 \
    kubectl wait --for=condition=Available --timeout=1s md/tiny-gguf
  ip=$(kubectl get service tiny-gguf -o jsonpath='{.spec.clusterIP}')
  step "POST http://$ip:8000/v1/chat/completions"
  body='{"model": "tiny-llama", "messages": [{"role": "user", "content": "Hello!"}], "max_tokens": 16, "temperature": 0}'
  wait_until "an answer through the Service" 30 \
    curl -sf -m 10 "http://$ip:8000/v1/chat/completions" -H 'Content-Type: application/json' -d "$body" -o "$state/demo-answer.json"
  answered=$(date +%s.%N)
  python - "$state/demo-answer.json" "$applied" "$answered" <<'PY'
import json, sys
reply = json.load(open(sys.argv[1]))
print(f"reply from {reply['model']}: {reply['choices'][0]['message']['content']!r}")
print("(random weights: the text is noise; the path apply -> pod -> engine -> Service is real)")
print(f"kubectl apply -> first answer: {float(sys.argv[3]) - float(sys.argv[2]):.1f} s")
PY
fi

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
  make cluster-down                         # stop the operator, the nodes and the control plane
EOF2
