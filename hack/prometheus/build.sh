#!/usr/bin/env bash
# Builds prometheus and promtool from the Go module proxy into a cache outside the clone
# (keyed by version), then links them into ./bin. A second run with the cache present only
# checks that both binaries exist; concurrent runs wait for the first (flock).
# Only Kubernetes service discovery is built in (the remove_all_sd/enable_kubernetes_sd tags
# leave out the cloud SDKs, halving the build), and the web UI's assets are left out (embedded
# only with the builtinassets tag): the HTTP API, which the tests use, works without them.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
# shellcheck source=versions.env
source "$here/versions.env"

cache=${KUBEINFER_CACHE:-$HOME/.cache/kubeinfer}
out="$cache/prometheus/$PROMETHEUS_MODULE_VERSION"
mkdir -p "$cache/prometheus" "$root/bin"
export GOTOOLCHAIN=local GOFLAGS=

step() { printf '[prometheus %s] %s\n' "$(date +%H:%M:%S)" "$*"; }

exec 9>"$out.lock"
flock 9
if [ ! -x "$out/prometheus" ] || [ ! -x "$out/promtool" ]; then
  release=${PROMETHEUS_MODULE_VERSION#v0.}  # 316.0 -> 3.16.0
  release="${release:0:1}.${release:1}"
  step "building prometheus and promtool $release (module $PROMETHEUS_MODULE_VERSION; first time only, 10-25 minutes on 2 cores)"
  started=$SECONDS
  rm -rf "$out.tmp" && mkdir -p "$out.tmp"
  common=github.com/prometheus/common/version
  GOBIN="$out.tmp" go install -tags remove_all_sd,enable_kubernetes_sd -ldflags "-s -w -X $common.Version=$release -X $common.Branch=HEAD -X $common.BuildUser=kubeinfer" \
    "github.com/prometheus/prometheus/cmd/prometheus@$PROMETHEUS_MODULE_VERSION" \
    "github.com/prometheus/prometheus/cmd/promtool@$PROMETHEUS_MODULE_VERSION"
  rm -rf "$out" && mv "$out.tmp" "$out"
  step "built in $((SECONDS - started))s"
fi
for f in prometheus promtool; do ln -sfn "$out/$f" "$root/bin/$f"; done
step "ready in $out"
