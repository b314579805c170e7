#!/usr/bin/env bash
# Starts a local control plane on loopback: etcd, kube-apiserver, kube-controller-manager,
# kube-scheduler and KWOK (simulated nodes and pods), then creates the simulated GPU nodes.
# Ends by printing `export KUBECONFIG=...`. Running it again while it is up does nothing.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
bin="$root/bin"
state=${KUBEINFER_CLUSTER_DIR:-$root/.cache/cluster}
kubeconfig="$state/kubeconfig"
started=$(date +%s.%N)

ETCD_PORT=${ETCD_PORT:-23790}
APISERVER_PORT=${APISERVER_PORT:-26443}
KCM_PORT=${KCM_PORT:-20257}
SCHEDULER_PORT=${SCHEDULER_PORT:-20259}
KWOK_PORT=${KWOK_PORT:-20247}

log() { printf '[cluster-up] %s\n' "$*" >&2; }

# One real node (kubelet + containerd) where this machine allows it; its bridge address is
# where pods reach the API server, so the API server binds there (the host reaches it too).
[ -x "$bin/kube-apiserver" ] || bash "$here/build.sh"
mkdir -p "$state/logs" "$state/etcd" "$state/pki"
rm -f "$state/real-node" "$state/real-node.skipped"
if reason=$(bash "$here/realnode.sh" check "$state"); then
  bash "$here/realnode.sh" network
  api_host=198.18.0.1
else
  log "real node not started: $reason (pods on the simulated nodes only)"
  echo "$reason" >"$state/real-node.skipped"
  api_host=127.0.0.1
fi
server="https://$api_host:$APISERVER_PORT"

kubectl() { "$bin/kubectl" --kubeconfig "$kubeconfig" "$@"; }

running() { [ -f "$state/$1.pid" ] && kill -0 "$(cat "$state/$1.pid")" 2>/dev/null; }
start() { # name, command...: run in its own session so cluster-down can stop the whole group
  local name=$1; shift
  if running "$name"; then return; fi
  setsid "$@" >"$state/logs/$name.log" 2>&1 < /dev/null &
  echo $! >"$state/$name.pid"
}
wait_for() { # what, seconds, command...
  local what=$1 limit=$2; shift 2
  local deadline=$((SECONDS + limit))
  until "$@" >/dev/null 2>&1; do
    if [ $SECONDS -ge $deadline ]; then
      log "timed out waiting for $what; logs in $state/logs"; exit 1
    fi
    sleep 0.2
  done
}

# Keys and certificates, made once per state folder.
pki="$state/pki"
if [ ! -f "$pki/ca.crt" ]; then
  log "creating certificates and keys"
  openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=kubeinfer-local-ca" \
    -keyout "$pki/ca.key" -out "$pki/ca.crt" 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -subj "/CN=kube-apiserver" \
    -keyout "$pki/apiserver.key" -out "$pki/apiserver.csr" 2>/dev/null
  printf 'subjectAltName=IP:127.0.0.1,IP:198.18.0.1,IP:198.19.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc\n' >"$pki/san.ext"
  openssl x509 -req -in "$pki/apiserver.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" -CAcreateserial \
    -days 3650 -extfile "$pki/san.ext" -out "$pki/apiserver.crt" 2>/dev/null
  # The API server's identity towards the kubelet (logs, exec, port-forward).
  openssl req -newkey rsa:2048 -nodes -subj "/O=system:masters/CN=kube-apiserver-kubelet-client" \
    -keyout "$pki/kubelet-client.key" -out "$pki/kubelet-client.csr" 2>/dev/null
  openssl x509 -req -in "$pki/kubelet-client.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" \
    -CAcreateserial -days 3650 -out "$pki/kubelet-client.crt" 2>/dev/null
  openssl genrsa -out "$pki/sa.key" 2048 2>/dev/null
  openssl rsa -in "$pki/sa.key" -pubout -out "$pki/sa.pub" 2>/dev/null
  # Static tokens: the admin (system:masters) and one identity per component, so RBAC applies.
  {
    echo "$(openssl rand -hex 16),kubeinfer-admin,admin,system:masters"
    echo "$(openssl rand -hex 16),system:kube-controller-manager,kcm"
    echo "$(openssl rand -hex 16),system:kube-scheduler,scheduler"
    echo "$(openssl rand -hex 16),kwok-controller,kwok,system:masters"
    echo "$(openssl rand -hex 16),system:node:real-0,kubelet-real-0,system:nodes"
    echo "$(openssl rand -hex 16),system:kube-proxy,kube-proxy"
  } >"$pki/tokens.csv"
fi
token_of() { awk -F, -v u="$1" '$2==u {print $1}' "$pki/tokens.csv"; }
write_kubeconfig() { # file, user
  "$bin/kubectl" config --kubeconfig "$1" set-cluster local --server "$server" \
    --certificate-authority "$pki/ca.crt" --embed-certs >/dev/null
  "$bin/kubectl" config --kubeconfig "$1" set-credentials "$2" --token "$(token_of "$2")" >/dev/null
  "$bin/kubectl" config --kubeconfig "$1" set-context local --cluster local --user "$2" >/dev/null
  "$bin/kubectl" config --kubeconfig "$1" use-context local >/dev/null
}
[ -f "$kubeconfig" ] || write_kubeconfig "$kubeconfig" kubeinfer-admin
[ -f "$state/kcm.kubeconfig" ] || write_kubeconfig "$state/kcm.kubeconfig" system:kube-controller-manager
[ -f "$state/scheduler.kubeconfig" ] || write_kubeconfig "$state/scheduler.kubeconfig" system:kube-scheduler
[ -f "$state/kwok.kubeconfig" ] || write_kubeconfig "$state/kwok.kubeconfig" kwok-controller
[ -f "$state/kubelet.kubeconfig" ] || write_kubeconfig "$state/kubelet.kubeconfig" system:node:real-0
[ -f "$state/kube-proxy.kubeconfig" ] || write_kubeconfig "$state/kube-proxy.kubeconfig" system:kube-proxy

start etcd "$bin/etcd" --name local --data-dir "$state/etcd" \
  --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
  --listen-peer-urls "http://127.0.0.1:$((ETCD_PORT + 1))" \
  --initial-advertise-peer-urls "http://127.0.0.1:$((ETCD_PORT + 1))" \
  --initial-cluster "local=http://127.0.0.1:$((ETCD_PORT + 1))" \
  --unsafe-no-fsync --quota-backend-bytes 4294967296
wait_for etcd 20 curl -sf "http://127.0.0.1:$ETCD_PORT/health"

start kube-apiserver "$bin/kube-apiserver" \
  --etcd-servers "http://127.0.0.1:$ETCD_PORT" \
  --bind-address "$api_host" --advertise-address "$api_host" --secure-port "$APISERVER_PORT" \
  --tls-cert-file "$pki/apiserver.crt" --tls-private-key-file "$pki/apiserver.key" \
  --client-ca-file "$pki/ca.crt" --token-auth-file "$pki/tokens.csv" \
  --authorization-mode Node,RBAC \
  --kubelet-client-certificate "$pki/kubelet-client.crt" --kubelet-client-key "$pki/kubelet-client.key" \
  --kubelet-preferred-address-types InternalIP,Hostname \
  --enable-admission-plugins NodeRestriction,NamespaceLifecycle,LimitRanger,ServiceAccount,DefaultStorageClass,DefaultTolerationSeconds,MutatingAdmissionWebhook,ValidatingAdmissionWebhook,ValidatingAdmissionPolicy,ResourceQuota,PodSecurity,Priority \
  --service-account-issuer https://kubernetes.default.svc --service-account-key-file "$pki/sa.pub" \
  --service-account-signing-key-file "$pki/sa.key" \
  --service-cluster-ip-range 198.19.0.0/16 --allow-privileged \
  --cert-dir "$state/apiserver-certs"
wait_for kube-apiserver 60 curl -sfk "$server/readyz" -H "Authorization: Bearer $(token_of kubeinfer-admin)"

start kube-controller-manager "$bin/kube-controller-manager" \
  --kubeconfig "$state/kcm.kubeconfig" --authentication-kubeconfig "$state/kcm.kubeconfig" \
  --authorization-kubeconfig "$state/kcm.kubeconfig" \
  --bind-address 127.0.0.1 --secure-port "$KCM_PORT" --leader-elect=false \
  --use-service-account-credentials --service-account-private-key-file "$pki/sa.key" \
  --root-ca-file "$pki/ca.crt" --controllers '*,-nodeipam,-cloud-node-lifecycle' \
  --concurrent-deployment-syncs 10 --concurrent-replicaset-syncs 10 --concurrent-gc-syncs 20 \
  --kube-api-qps 200 --kube-api-burst 400
start kube-scheduler "$bin/kube-scheduler" \
  --kubeconfig "$state/scheduler.kubeconfig" --authentication-kubeconfig "$state/scheduler.kubeconfig" \
  --authorization-kubeconfig "$state/scheduler.kubeconfig" \
  --bind-address 127.0.0.1 --secure-port "$SCHEDULER_PORT" --leader-elect=false \
  --kube-api-qps 200 --kube-api-burst 400

# KWOK plays the kubelets of nodes annotated kwok.x-k8s.io/node=fake; its stages come from its module.
stages="$state/kwok.yaml"
{
  # A configuration document given by file gets no defaults for the parallelism options.
  printf 'apiVersion: config.kwok.x-k8s.io/v1alpha1\nkind: KwokConfiguration\noptions:\n'
  printf '  cidr: 198.18.128.1/17\n  podPlayStageParallelism: 8\n  nodePlayStageParallelism: 4\n'
  printf '  nodeLeaseParallelism: 4\n  podsOnNodeSyncParallelism: 4\n'
  for f in "$bin"/kwok-stages/*.yaml; do printf -- '---\n'; cat "$f"; done
} >"$stages"
start kwok "$bin/kwok" --kubeconfig "$state/kwok.kubeconfig" --config "$stages" \
  --manage-nodes-with-annotation-selector kwok.x-k8s.io/node=fake \
  --node-lease-duration-seconds 40 --server-address "127.0.0.1:$KWOK_PORT"

wait_for "the default service account" 60 kubectl get serviceaccount default -n default
"$root/.venv/bin/python" "$here/simnodes.py" "$here/nodes.yaml" | kubectl apply --server-side -f - >/dev/null
kubectl wait --for=condition=Ready node --all --timeout=120s >/dev/null || { log "simulated nodes not Ready; logs in $state/logs"; exit 1; }

if [ ! -f "$state/real-node.skipped" ]; then
  bash "$here/realnode.sh" up "$state"
  wait_for "the real node real-0 (kubelet log: $state/logs/kubelet.log)" 90 kubectl get node real-0
  kubectl wait --for=condition=Ready node/real-0 --timeout=90s >/dev/null \
    || { log "real node not Ready; logs in $state/logs (kubelet, containerd, kube-proxy)"; exit 1; }
  echo real-0 >"$state/real-node"
  log "real node real-0 Ready (containerd + kubelet + kube-proxy; pods 198.18.0.0/24, Services 198.19.0.0/16)"
fi

log "control plane up in $(python3 -c "print(f'{$(date +%s.%N) - $started:.1f}')")s; logs in $state/logs"
echo "export KUBECONFIG=$kubeconfig"
