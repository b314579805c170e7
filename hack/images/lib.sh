# Shared by hack/images/*.sh (sourced): paths, versions, logging, tool checks.
# Build outputs live outside the clone, so a fresh clone on the same machine finds them.
CACHE=${KUBEINFER_CACHE:-$HOME/.cache/kubeinfer}
IMAGES_DIR=$CACHE/images            # OCI archives + stamps, read by import.sh
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)

# The local base image. Bump BASE_VERSION when base.sh's recipe changes: a new name means a
# rebuild, and the runtime images rebuild on top of it.
BASE_VERSION=1
BASE_IMAGE=localhost/kubeinfer/base:bookworm-py3.11-v$BASE_VERSION

log() { printf '%s [images] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# need CMD... PKG...: install the Debian packages when a command is missing (as root),
# otherwise say what to run.
need() {
  local cmds=() pkgs=() missing=0 a
  for a in "$@"; do [[ $a == pkg:* ]] && pkgs+=("${a#pkg:}") || cmds+=("$a"); done
  for a in "${cmds[@]}"; do command -v "$a" >/dev/null || missing=1; done
  ((missing)) || return 0
  if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
    log "installing ${pkgs[*]}"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null
  else
    die "missing ${cmds[*]}; run: sudo apt-get install -y --no-install-recommends ${pkgs[*]}"
  fi
}

# buildah as root, storage in /var/lib/containers (per machine, survives clones).
[[ $(id -u) == 0 ]] || die "building images needs root (buildah with the overlay driver, debootstrap)"
