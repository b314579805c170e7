#!/usr/bin/env bash
# Run a built image with runc the way a kubelet would, without Kubernetes: the image's
# entrypoint, env and workdir, a non-root user, the host's network, optionally a read-only
# root filesystem and bind mounts. For checking images (hack/images/smoke.sh).
#
#   bash hack/images/run.sh [--user UID:GID] [--ro] [--mount SRC:DST[:ro]]... [--env K=V]... [--detach ID] \
#        IMAGE [ARGS...]          ARGS replace the image's CMD; the ENTRYPOINT stays
# --detach ID: run in the background (stop with: bash hack/images/run.sh --stop ID).
set -euo pipefail
source "$(dirname "$0")/lib.sh"

user=1000:1000 ro=false detach="" mounts=() envs=()
while [[ ${1:-} == --* ]]; do
  case $1 in
    --user) user=$2; shift 2 ;;
    --ro) ro=true; shift ;;
    --mount) mounts+=("$2"); shift 2 ;;
    --env) envs+=("$2"); shift 2 ;;
    --detach) detach=$2; shift 2 ;;
    --stop) # stop ID: SIGTERM, wait up to 20 s, then clean up the container and bundle
      id=$2 b=$CACHE/images/run/$2
      runc kill "$id" TERM 2>/dev/null || true
      for _ in $(seq 40); do [[ $(runc state "$id" 2>/dev/null) == *'"stopped"'* ]] && break; sleep 0.5; done
      runc delete --force "$id" 2>/dev/null || true
      buildah rm "$(cat "$b/ctr")" >/dev/null 2>&1 || true
      rm -rf "$b"; exit 0 ;;
    *) die "unknown option $1" ;;
  esac
done
image=$1; shift
need runc buildah pkg:runc pkg:buildah
id=${detach:-kubeinfer-run-$$}
bundle=$CACHE/images/run/$id
mkdir -p "$bundle"
ctr=$(buildah from --quiet --pull-never "$image")
echo "$ctr" >"$bundle/ctr"
rootfs=$(buildah mount "$ctr")
cleanup() { buildah rm "$ctr" >/dev/null 2>&1 || true; rm -rf "$bundle"; }
[[ -n $detach ]] || trap cleanup EXIT

# The OCI spec: runc's default, with the image's config and our options.
(cd "$bundle" && rm -f config.json && runc spec)
buildah inspect --type image "$image" >"$bundle/image.json"
python3 - "$bundle" "$rootfs" "$user" "$ro" "$@" "${mounts[@]/#/--mount=}" "${envs[@]/#/--env=}" <<'PY'
import json, sys
bundle, rootfs, user, ro, *rest = sys.argv[1:]
mounts = [a[len("--mount="):] for a in rest if a.startswith("--mount=")]
envs = [a[len("--env="):] for a in rest if a.startswith("--env=")]
args = [a for a in rest if not a.startswith(("--mount=", "--env="))]
img = json.load(open(f"{bundle}/image.json"))["OCIv1"]["config"]
spec = json.load(open(f"{bundle}/config.json"))
uid, gid = (int(x) for x in user.split(":"))
spec["root"] = {"path": rootfs, "readonly": ro == "true"}
p = spec["process"]
p["terminal"] = False
p["user"] = {"uid": uid, "gid": gid}
p["args"] = (img.get("Entrypoint") or []) + (args or img.get("Cmd") or [])
p["env"] = (img.get("Env") or ["PATH=/usr/local/bin:/usr/bin:/bin"]) + envs
p["cwd"] = img.get("WorkingDir") or "/"
# Host network, as the checks curl localhost; the rest stays isolated.
spec["linux"]["namespaces"] = [n for n in spec["linux"]["namespaces"] if n["type"] != "network"]
spec["mounts"].append({"destination": "/etc/resolv.conf", "type": "bind", "source": "/etc/resolv.conf", "options": ["rbind", "ro"]})
spec["mounts"].append({"destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "nodev", "mode=1777"]})
for m in mounts:
    src, dst, *opt = m.split(":")
    spec["mounts"].append({"destination": dst, "type": "bind", "source": src, "options": ["rbind", "ro" if opt == ["ro"] else "rw"]})
json.dump(spec, open(f"{bundle}/config.json", "w"), indent=1)
PY
if [[ -n $detach ]]; then
  runc run --detach --bundle "$bundle" "$id" >"$bundle/out.log" 2>&1 </dev/null
  log "$image running as $id (log: $bundle/out.log)"
else
  runc run --bundle "$bundle" "$id" </dev/null
fi
