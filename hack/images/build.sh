#!/usr/bin/env bash
# `make images`: build kubeinfer's CPU images here with buildah, no registry needed, and
# write each as an OCI archive for containerd (hack/images/import.sh):
#   ghcr.io/kubeinfer/operator:0.1.0              images/operator.Dockerfile
#   ghcr.io/kubeinfer/runtime-llamacpp:0.1.0      images/runtime-llamacpp.Dockerfile
#   ghcr.io/kubeinfer/runtime-transformers:0.1.0  images/runtime-transformers.Dockerfile (PyPI torch)
#   registry.k8s.io/pause:3.10                    images/pause/ (static C, FROM scratch)
# All FROM the local Debian base (hack/images/base.sh). buildah's layer cache makes an
# unchanged rebuild quick; an archive is rewritten only when its image ID changed.
#
#   bash hack/images/build.sh [NAME...]     NAME: operator runtime-llamacpp runtime-transformers pause
#
# Archives and stamps: ${KUBEINFER_CACHE:-~/.cache/kubeinfer}/images/<NAME>.tar, <NAME>.id
# TORCH_INDEX=https://download.pytorch.org/whl/cpu uses PyTorch's CPU torch where reachable.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT"

TAG=0.1.0
TORCH_INDEX=${TORCH_INDEX-}
declare -A REF=(
  [operator]=ghcr.io/kubeinfer/operator:$TAG
  [runtime-llamacpp]=ghcr.io/kubeinfer/runtime-llamacpp:$TAG
  [runtime-transformers]=ghcr.io/kubeinfer/runtime-transformers:$TAG
  [pause]=registry.k8s.io/pause:3.10
  [operator-build]=localhost/kubeinfer/operator-build:cache # its build stage, kept (see below)
)
names=("$@")
((${#names[@]})) || names=(pause operator runtime-llamacpp runtime-transformers)

need gcc pkg:gcc pkg:libc6-dev
bash "$(dirname "$0")/base.sh"
mkdir -p "$IMAGES_DIR"

bud() { # bud NAME DOCKERFILE CONTEXT [ARGS...]
  local name=$1 file=$2 ctx=$3 start=$SECONDS
  shift 3
  log "building ${REF[$name]} ($file)"
  buildah bud --layers --network host --isolation chroot --quiet \
    --build-arg BASE="$BASE_IMAGE" "$@" -f "$file" -t "${REF[$name]}" "$ctx" \
    >"$IMAGES_DIR/$name.build.log" 2>&1 \
    || { tail -30 "$IMAGES_DIR/$name.build.log"; die "$name: build failed (log: $IMAGES_DIR/$name.build.log)"; }
  log "built ${REF[$name]} in $((SECONDS - start)) s"
}

# The archive only when the image changed: writing a few GB takes a while. oci-archive always
# compresses; zstd is the quickest format containerd (1.5 and later) reads.
archive() { # archive NAME
  local name=$1 id
  id=$(buildah inspect --type image --format '{{.FromImageID}}' "${REF[$name]}")
  if [[ -f $IMAGES_DIR/$name.tar && $(cat "$IMAGES_DIR/$name.id" 2>/dev/null) == "$id" ]]; then
    log "$name: unchanged, archive kept"
    return
  fi
  log "$name: writing $IMAGES_DIR/$name.tar"
  rm -f "$IMAGES_DIR/$name.tar" "$IMAGES_DIR/$name.id"
  buildah push --quiet --compression-format zstd "${REF[$name]}" \
    "oci-archive:$IMAGES_DIR/$name.tar.part:${REF[$name]}"
  mv "$IMAGES_DIR/$name.tar.part" "$IMAGES_DIR/$name.tar"
  echo "$id" >"$IMAGES_DIR/$name.id"
}

for name in "${names[@]}"; do
  case $name in
    pause)
      # Compiled on the host: the context is a folder in the cache with the binary.
      ctx=$IMAGES_DIR/pause-context
      mkdir -p "$ctx"
      gcc -static -Os -s -o "$ctx/pause" images/pause/pause.c
      cp images/pause/Dockerfile "$ctx/Dockerfile"
      touch -d @0 "$ctx/pause" # same bytes, same time: the COPY layer stays cached
      bud pause "$ctx/Dockerfile" "$ctx" ;;
    operator)
      # The build stage gets a name too: untagged, the prune at the end would drop its
      # cached layers and every run would reinstall the operator's dependencies.
      bud operator-build images/operator.Dockerfile . --target build
      bud operator images/operator.Dockerfile . ;;
    runtime-llamacpp)
      bud "$name" "images/$name.Dockerfile" . ;;
    runtime-transformers)
      # PyPI's torch (CUDA build, runs on CPU) unless TORCH_INDEX names a CPU index.
      args=(--build-arg "TORCH_INDEX=$TORCH_INDEX")
      [[ -n $TORCH_INDEX ]] || args+=(--build-arg TORCH_WITHOUT_TRITON=1)
      bud "$name" "images/$name.Dockerfile" . "${args[@]}" ;;
    *) die "unknown image $name (operator runtime-llamacpp runtime-transformers pause)" ;;
  esac
  archive "$name"
done

# Superseded builds' layers go; the current images' layers (the cache) stay.
buildah rmi --prune >/dev/null
buildah images --format '{{.Name}}:{{.Tag}} {{.Size}}' | grep -E 'kubeinfer|pause' >&2 || true
log "archives in $IMAGES_DIR; import into a containerd with: bash hack/images/import.sh SOCKET"
