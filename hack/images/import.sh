#!/usr/bin/env bash
# Import the archives hack/images/build.sh wrote into a containerd, in the namespace the
# kubelet (CRI) uses, so pods find the images without a registry (imagePullPolicy
# IfNotPresent or Never). An image containerd already has, unpacked, with the same manifest
# digest is skipped, so a second run is quick.
#
#   bash hack/images/import.sh SOCKET [NAME...]    e.g. /run/containerd/containerd.sock
#
# NAME: operator runtime-llamacpp runtime-transformers pause (default: every archive).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
sock=${1:?usage: import.sh SOCKET [NAME...]}
need ctr pkg:containerd
shift
ctr_() { ctr --address "$sock" --namespace k8s.io "$@"; }
# "DIGEST UNPACKED" of an image, empty when containerd lacks it.
state() { ctr_ images check "name==$1" | awk 'NR > 1 {print $3, $NF}'; }

archives=()
if (($#)); then for n in "$@"; do archives+=("$IMAGES_DIR/$n.tar"); done
else archives=("$IMAGES_DIR"/*.tar); fi
[[ -f ${archives[0]} ]] || die "no archives in $IMAGES_DIR: run make images first"

for tar in "${archives[@]}"; do
  # The reference and manifest digest, from the archive's index.json (one image each).
  read -r ref digest < <(tar -xOf "$tar" index.json | python3 -c '
import json, sys
m = json.load(sys.stdin)["manifests"][0]
print(m["annotations"]["org.opencontainers.image.ref.name"], m["digest"])')
  have=$(state "$ref")
  if [[ $have == "$digest true" ]]; then
    log "$ref: already in containerd ($digest)"
    continue
  fi
  # An older image of that name goes first, garbage collected (--sync): replacing it in the
  # import lets containerd's GC remove shared snapshots while the new ones are unpacked
  # ("parent snapshot ... does not exist"). Running containers keep their own snapshots.
  [[ -z $have ]] || ctr_ images rm --sync "$ref" >/dev/null
  log "$ref: importing $tar"
  ctr_ images import "$tar" >/dev/null
  [[ $(state "$ref") == "$digest true" ]] || die "$ref: not in containerd, unpacked, after the import"
done
