#!/usr/bin/env bash
# Checks the built images for real, without Kubernetes (hack/images/run.sh: runc, uid 1000,
# host network): the operator read-only answers /healthz and /metrics against an unreachable
# API server; each runtime serves the tests' tiny Llama (tests/tiny_model.py, built with
# .venv's python) and answers /v1/chat/completions; pause stops on SIGTERM.
#
#   bash hack/images/smoke.sh [operator|runtime-llamacpp|runtime-transformers|pause]...
# Ports 28391/29391 (operator), 18431/19431 (llama.cpp), 18432/19432 (transformers).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT"
run() { bash hack/images/run.sh "$@"; }
work=$IMAGES_DIR/smoke
mkdir -p "$work"

wait_http() { # wait_http URL SECONDS
  for _ in $(seq "$2"); do curl -sf "$1" >/dev/null && return 0; sleep 1; done
  return 1
}
check() { # check ID URL...: every URL answers, then stop the container
  local id=$1 ok=1 url
  shift
  for url in "$@"; do wait_http "$url" 120 || { ok=0; log "$id: no answer from $url"; }; done
  ((ok)) || tail -20 "$IMAGES_DIR/run/$id/out.log"
  run --stop "$id"
  ((ok)) && log "$id: PASS" || die "$id: FAIL"
}
model() { # the tiny model, built once; readable by uid 1000
  local dir=$work/models/tiny-llama-v1
  [[ -f $dir/done ]] || .venv/bin/python tests/tiny_model.py "$work/models" >/dev/null
  chmod -R a+rX "$work"
  mkdir -p "$work/volume" && chown 1000:1000 "$work/volume" # the pod's /models emptyDir
  echo "$dir"
}
chat() { # chat PORT: one greedy chat completion, printed
  curl -sf "localhost:$1/v1/chat/completions" -H 'content-type: application/json' \
    -d '{"model":"tiny","messages":[{"role":"user","content":"Hello"}],"max_tokens":8,"temperature":0}'
}
serve() { # serve IMAGE ENGINE MODEL_PATH PORT METRICS_PORT
  local m
  m=$(model)
  run --mount "$m:/model:ro" --mount "$work/volume:/models" --detach "$1-smoke" "ghcr.io/kubeinfer/$1:0.1.0" \
    --engine "$2" --model "$3" --name tiny --host 127.0.0.1 --port "$4" --metrics-port "$5"
  wait_http "localhost:$4/health" 120 && chat "$4" >&2 && echo >&2 || true
  check "$1-smoke" "localhost:$4/health" "localhost:$5/metrics" "localhost:$4/v1/models"
}

names=("$@")
((${#names[@]})) || names=(pause operator runtime-llamacpp runtime-transformers)
for name in "${names[@]}"; do
  case $name in
    pause)
      run --user 65535:65535 --ro --detach pause-smoke registry.k8s.io/pause:3.10
      sleep 1
      [[ $(runc state pause-smoke) == *'"running"'* ]] || die "pause: not running"
      check pause-smoke ;;
    operator)
      printf '%s\n' 'apiVersion: v1' 'kind: Config' \
        'clusters: [{name: c, cluster: {server: "https://127.0.0.1:1"}}]' \
        'users: [{name: u, user: {token: x}}]' \
        'contexts: [{name: c, context: {cluster: c, user: u}}]' 'current-context: c' \
        >"$work/kubeconfig"
      chmod a+r "$work/kubeconfig"
      run --ro --mount "$work/kubeconfig:/kube/config:ro" --env KUBECONFIG=/kube/config \
        --detach operator-smoke ghcr.io/kubeinfer/operator:0.1.0 --metrics-port 29391 --liveness-port 28391
      check operator-smoke localhost:28391/healthz localhost:29391/metrics ;;
    runtime-llamacpp) serve runtime-llamacpp llama.cpp /model/tiny-llama.gguf 18431 19431 ;;
    runtime-transformers) serve runtime-transformers transformers /model/hf 18432 19432 ;;
    *) die "unknown image $name" ;;
  esac
done
