#!/usr/bin/env bash
# The operator's own identity for running it as a local process (the demo's fallback, the
# integration tests, the benchmark): a ServiceAccount bound to the chart's ClusterRole rules
# (charts/kubeinfer/files/clusterrole-rules.yaml) and a kubeconfig with a token of it, so the
# operator runs with what its pod would have, never as cluster-admin.
#
#   KUBECONFIG=admin.kubeconfig hack/operator-identity.sh OUT [NAME] [NAMESPACE] [DURATION]
#
# Idempotent (server-side apply); prints the identity's user name.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
export PATH="$root/bin:$root/.venv/bin:$PATH"
out=${1:?usage: operator-identity.sh OUT [NAME] [NAMESPACE] [DURATION]}
name=${2:-kubeinfer-operator}
namespace=${3:-kubeinfer-system}
duration=${4:-24h}

python3 - "$root/charts/kubeinfer/files/clusterrole-rules.yaml" "$name" "$namespace" <<'PY' |
import json, sys, yaml
rules, name, ns = yaml.safe_load(open(sys.argv[1])), sys.argv[2], sys.argv[3]
rbac = "rbac.authorization.k8s.io"
items = [
    {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}},
    {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name, "namespace": ns}},
    {"apiVersion": f"{rbac}/v1", "kind": "ClusterRole", "metadata": {"name": name}, "rules": rules},
    {"apiVersion": f"{rbac}/v1", "kind": "ClusterRoleBinding", "metadata": {"name": name},
     "roleRef": {"apiGroup": rbac, "kind": "ClusterRole", "name": name},
     "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": ns}]},
]
json.dump({"apiVersion": "v1", "kind": "List", "items": items}, sys.stdout)
PY
  kubectl apply --server-side --force-conflicts -f - >/dev/null

token=$(kubectl create token "$name" -n "$namespace" --duration "$duration")
# The admin's cluster entry (server and CA), the ServiceAccount's token as the only user.
kubectl config view --raw --minify --flatten >"$out.tmp"
chmod 600 "$out.tmp"
kubectl --kubeconfig "$out.tmp" config unset users >/dev/null
kubectl --kubeconfig "$out.tmp" config set-credentials operator --token "$token" >/dev/null
kubectl --kubeconfig "$out.tmp" config set-context --current --user operator >/dev/null
mv "$out.tmp" "$out"
echo "system:serviceaccount:$namespace:$name"
