#!/usr/bin/env bash
# Builds the pinned control-plane programs from the Go module proxy into a cache outside the
# clone (keyed by version), then links them into ./bin. A second run with the cache present
# only checks that each binary exists.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
# shellcheck source=versions.env
source "$here/versions.env"

cache=${KUBEINFER_CACHE:-$HOME/.cache/kubeinfer}
out="$cache/controlplane/k8s-$KUBERNETES_VERSION-etcd-$ETCD_VERSION-kwok-$KWOK_VERSION-helm-$HELM_VERSION"
work="$cache/controlplane/work"
mkdir -p "$out" "$work" "$root/bin"
export GOFLAGS=-mod=mod
export GOTOOLCHAIN=local

step() { printf '[controlplane %s] %s\n' "$(date +%H:%M:%S)" "$*"; }

k8s_minor=${KUBERNETES_VERSION#v1.}; k8s_minor=${k8s_minor%%.*}
staging_version="v0.${KUBERNETES_VERSION#v1.}"

# The k8s.io/kubernetes module requires its staging modules at v0.0.0 through local replace
# lines; a wrapper module pins each of them at the release's matching v0.x.y instead.
k8s_wrapper() {
  local dir="$work/kubernetes-$KUBERNETES_VERSION"
  [ -f "$dir/go.sum" ] && { echo "$dir"; return; }
  mkdir -p "$dir"
  local gomod
  gomod=$(go mod download -json "k8s.io/kubernetes@$KUBERNETES_VERSION" | python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])')
  {
    echo "module kubeinfer.local/controlplane/kubernetes"
    echo "go 1.24"
    echo "require k8s.io/kubernetes $KUBERNETES_VERSION"
    grep -oE '^\s*k8s\.io/[a-z0-9-]+ => \./staging/src/k8s\.io/[a-z0-9-]+' "$gomod" \
      | awk -v v="$staging_version" '{print "replace " $1 " => " $1 " " v}'
  } > "$dir/go.mod"
  cat > "$dir/tools.go" <<GO
//go:build tools

package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubectl"
	_ "k8s.io/kubernetes/cmd/kubelet"
	_ "k8s.io/kubernetes/cmd/kube-proxy"
)
GO
  step "resolving k8s.io/kubernetes $KUBERNETES_VERSION ($(grep -c '^replace' "$dir/go.mod") staging modules pinned at $staging_version)" >&2
  (cd "$dir" && go mod tidy >&2)
  echo "$dir"
}

etcd_wrapper() {
  local dir="$work/etcd-$ETCD_VERSION"
  [ -f "$dir/go.sum" ] && { echo "$dir"; return; }
  mkdir -p "$dir"
  cat > "$dir/go.mod" <<MOD
module kubeinfer.local/controlplane/etcd
go 1.24
require go.etcd.io/etcd/server/v3 $ETCD_VERSION
MOD
  cat > "$dir/main.go" <<'GO'
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
GO
  step "resolving go.etcd.io/etcd/server/v3 $ETCD_VERSION" >&2
  (cd "$dir" && go mod tidy >&2)
  echo "$dir"
}

build() { # name, then the command that builds it into $out/name
  local name=$1; shift
  if [ -x "$out/$name" ]; then return; fi
  step "building $name (first time only; minutes)"
  local started=$SECONDS
  "$@"
  step "built $name in $((SECONDS - started))s"
}

version_flags="-X k8s.io/component-base/version.gitVersion=$KUBERNETES_VERSION -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$k8s_minor -X k8s.io/component-base/version.gitTreeState=clean -X k8s.io/client-go/pkg/version.gitVersion=$KUBERNETES_VERSION -X k8s.io/client-go/pkg/version.gitMajor=1 -X k8s.io/client-go/pkg/version.gitMinor=$k8s_minor -X k8s.io/client-go/pkg/version.gitTreeState=clean"

build_k8s() { local dir; dir=$(k8s_wrapper); (cd "$dir" && go build -ldflags "-s -w $version_flags" -o "$out/$1" "k8s.io/kubernetes/cmd/$1"); }
build_etcd() { local dir; dir=$(etcd_wrapper); (cd "$dir" && go build -ldflags "-s -w" -o "$out/etcd" .); }
build_goinstall() { GOBIN="$out" GOFLAGS= go install -ldflags "-s -w $2" "$1"; }

build etcd build_etcd
for component in kube-apiserver kube-controller-manager kube-scheduler kubectl kubelet kube-proxy; do
  build "$component" build_k8s "$component"
done
build kwok build_goinstall "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION" ""
build helm build_goinstall "helm.sh/helm/v3/cmd/helm@$HELM_VERSION" \
  "-X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"

# KWOK v0.8 ships no built-in stages: take the fast node/pod stages (and the lease heartbeat)
# from its module, so nodes turn Ready, pods Running, and deletions finish.
stages="$out/kwok-stages"
if [ ! -d "$stages" ]; then
  src=$(GOFLAGS= go mod download -json "sigs.k8s.io/kwok@$KWOK_VERSION" | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')
  mkdir -p "$stages.tmp"
  for group in node/fast node/heartbeat-with-lease pod/fast; do
    for f in "$src/kustomize/stage/$group"/*.yaml; do
      [ "$(basename "$f")" = kustomization.yaml ] || cp "$f" "$stages.tmp/"
    done
  done
  mv "$stages.tmp" "$stages"
fi

for f in "$out"/*; do ln -sfn "$f" "$root/bin/$(basename "$f")"; done
step "control plane ready in $out"
