#!/usr/bin/env bash
# Light overlays that let the project venv import an engine's own argument parser on a CPU,
# without the engine's heavy dependencies, one per engine version, outside the clone:
#   ${KUBEINFER_CACHE:-~/.cache/kubeinfer}/parser-<engine>-<version>-py<X.Y>/
# Used on PYTHONPATH in front of .venv (which has torch and transformers) by the parser
# tests and `make catalogs`. Built once (SGLang about a minute and 260 MB, vLLM 2 minutes and 950 MB, mlx_lm 44 MB), then found at once.
#
#   bash hack/parser-env.sh ENGINE           build it if needed
#   bash hack/parser-env.sh ENGINE --path    print the overlay folder (built or not)
#   bash hack/parser-env.sh --all            build every engine's overlay if needed
#
# What goes in is the engine's descriptor's `parser_overlay` (kubeinfer.engines; engines
# without one need no overlay): the engine's own package first (its version names the
# folder), then what importing its parser needs and no more. Every package goes in with
# --no-deps at a pinned version, so the overlay shadows nothing in the venv by accident.
# A marker written last (with the recipe) makes a half-built overlay rebuild.
set -euo pipefail

ENGINE=${1:?usage: parser-env.sh ENGINE [--path] | --all}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PY=${PY:-$ROOT/.venv/bin/python}

# From the descriptor: PACKAGES, LAUNCHER and ENVS (its parser_env); for --all, ENGINES.
recipe=$(PYTHONPATH=$ROOT/operator "$PY" - "$ENGINE" <<'PYTHON'
import shlex
import sys

from kubeinfer.engines import REGISTRY


def array(words):
    return "(" + " ".join(shlex.quote(w) for w in words) + ")"


name = sys.argv[1]
overlays = {e.name: e for e in REGISTRY if e.parser_overlay}
if name == "--all":
    print(f"ENGINES={array(overlays)}")
elif name in overlays:
    found = overlays[name]
    print(f"PACKAGES={array(found.parser_overlay)}")
    print(f"LAUNCHER={shlex.quote(found.launcher)}")
    print(f"ENVS={array(f'{k}={v}' for k, v in found.parser_env)}")
else:
    print(f"parser-env: no overlay for engine '{name}' ({', '.join(overlays)})", file=sys.stderr)
    sys.exit(2)
PYTHON
)
eval "$recipe"
if [[ "$ENGINE" == "--all" ]]; then
  for engine in "${ENGINES[@]}"; do
    bash "$0" "$engine"
  done
  exit 0
fi
VERSION=${PACKAGES[0]##*==}

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
# The proof it works: the launcher's own_parser() (what `make catalogs` reads) on the venv.
env "${ENVS[@]}" PYTHONPATH="$DIR:$ROOT/operator:$ROOT/runtime" "$PY" -c \
  "import kubeinfer_runtime.engines.$LAUNCHER as launcher; launcher.own_parser()"
echo "$RECIPE" >"$MARKER"
say "ready: $DIR ($(du -sh "$DIR" | cut -f1), $((SECONDS - start)) s)"
