#!/usr/bin/env bash
# The local base image for every kubeinfer image, built from Debian packages only (no
# registry): debootstrap minbase bookworm + Python 3.11, imported into buildah's storage as
#   localhost/kubeinfer/base:bookworm-py3.11-v<N>       (lib.sh: BASE_IMAGE)
# Once per machine: when buildah already has that name this prints it and exits (< 1 s).
# It plays the role of python:3.11-slim-bookworm, which the Dockerfiles name by default.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
# libgomp1: xllamacpp's wheel links libgomp.so.1. passwd: useradd in operator.Dockerfile.
PACKAGES=python3.11,python3,python3-venv,ca-certificates,libgomp1,passwd

if buildah inspect --type image "$BASE_IMAGE" >/dev/null 2>&1; then
  log "base image $BASE_IMAGE present"
  exit 0
fi
need buildah debootstrap pkg:buildah pkg:debootstrap

work=$CACHE/images/base-work
rm -rf "$work" && mkdir -p "$work"
trap 'rm -rf "$work"' EXIT

log "debootstrap minbase bookworm from $MIRROR (a few minutes the first time)"
debootstrap --variant=minbase --include="$PACKAGES" bookworm "$work/rootfs" "$MIRROR" \
  >"$work/debootstrap.log" 2>&1 || { tail -20 "$work/debootstrap.log"; die "debootstrap failed"; }

r=$work/rootfs
# The host's CA bundle (PIP_CERT below: the venv's pip uses its own certifi otherwise), so pip
# inside builds trusts the same (possibly re-signing) proxy.
cp /etc/ssl/certs/ca-certificates.crt "$r/etc/ssl/certs/ca-certificates.crt"
# Smaller: no package caches, indexes, docs or locales (the image never runs apt).
rm -rf "$r"/var/cache/apt/* "$r"/var/lib/apt/lists/* "$r"/usr/share/doc/* \
       "$r"/usr/share/man/* "$r"/usr/share/info/* "$r"/usr/share/locale/* "$r"/var/log/*
# /dev, /proc, /sys are the runtime's to fill.
rm -rf "${r:?}"/dev/* "${r:?}"/proc/* "${r:?}"/sys/*

log "importing into buildah as $BASE_IMAGE"
ctr=$(buildah from scratch)
mnt=$(buildah mount "$ctr")
tar -C "$r" -cf - . | tar -C "$mnt" -xpf - --numeric-owner
buildah umount "$ctr" >/dev/null
buildah config \
  --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  --env LANG=C.UTF-8 \
  --env SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
  --env PIP_CERT=/etc/ssl/certs/ca-certificates.crt \
  --cmd /bin/bash \
  --label org.opencontainers.image.description="kubeinfer base: debootstrap minbase bookworm + python3.11" \
  "$ctr"
buildah commit --quiet --rm "$ctr" "$BASE_IMAGE" >/dev/null
log "base image $BASE_IMAGE built ($(buildah images --format '{{.Size}}' "$BASE_IMAGE"))"
