"""The engine registry against every place that must agree with it.

Adding an engine is five hand-edited files:
- its module kubeinfer/engines/<x>.py: the `ENGINE` descriptor, with its image variants and
  parser overlay;
- its line in kubeinfer/engines/__init__.py (REGISTRY and EngineName);
- its launcher kubeinfer_runtime/engines/<x>.py (`command` and `own_parser`);
- its image images/runtime-<x>.Dockerfile (none for a Metal-only engine);
- its tests;
and its documentation: a row in runtime/README.md's engine table and one per image variant
in images/README.md's table.
Then `make crd catalogs` regenerates the CRD, the chart's runtime images and the parameter
catalog; each test here names the piece that is still missing or stale (the catalog's
freshness: tests/runtime/test_runtime_engine_parsers.py).
"""

from __future__ import annotations

import importlib
import json
import re
from types import ModuleType
from typing import Any, get_args, get_type_hints

import pytest
import yaml
from unit_helpers import ROOT, h100, mi300x, spec

from kubeinfer import chart
from kubeinfer.api.v1alpha1 import ModelDeploymentSpec, ModelFormat
from kubeinfer.crd import spec_schema, status_schema
from kubeinfer.decide import decide
from kubeinfer.engines import GPU_ACCELERATORS, REGISTRY, Accelerator, Engine, EngineName
from kubeinfer.nodes import GPU_RESOURCES, node_facts
from kubeinfer.params.catalog import load
from kubeinfer.render import ImageSettings

NAMES = [engine.name for engine in REGISTRY]
CHART = ROOT / "charts" / "kubeinfer"
LAUNCHER_DIR = ROOT / "runtime" / "kubeinfer_runtime" / "engines"
BY_ENGINE = pytest.mark.parametrize("engine", REGISTRY, ids=NAMES)


def test_engine_name_literal_is_the_registry_in_preference_order() -> None:
    assert get_args(EngineName) == tuple(NAMES)
    assert len({e.values_key for e in REGISTRY}) == len({e.image for e in REGISTRY}) == len(NAMES)


def test_crd_engine_enum_and_format_rules_come_from_the_registry() -> None:
    schema = spec_schema()
    assert schema["properties"]["engine"]["enum"] == ["auto", *NAMES]
    rules = " ".join(r["rule"] for r in schema.get("x-kubernetes-validations", []))
    for engine in REGISTRY:
        assert f"self.engine != '{engine.name}'" in rules, engine.name
    placement = status_schema()["properties"]["placement"]["properties"]
    assert placement["accelerator"]["enum"] == list(get_args(Accelerator))


def test_every_model_format_has_an_engine() -> None:
    served = {f for engine in REGISTRY for f in engine.formats}
    assert served == set(get_args(ModelFormat))


def test_every_gpu_vendor_has_an_accelerator() -> None:
    assert set(GPU_ACCELERATORS) == set(GPU_RESOURCES)


@BY_ENGINE
def test_parameter_names_are_in_the_engines_catalog(engine: Engine) -> None:
    catalog = load(engine.name)
    assert catalog is not None, f"no catalog for {engine.name}: run `make catalogs`"
    keys = {key for flag in catalog.flags for key in flag.keys}
    for param in (engine.context_param, engine.tensor_parallel_param):
        assert param is None or param in keys, f"{engine.name} has no parameter {param}"
    # The runtime sets where it listens itself: the engine's own option is refused.
    assert "port" in engine.reserved_params


def launcher_module(engine: Engine) -> ModuleType:
    """The engine's launcher module. kubeinfer_runtime.engines builds LAUNCHERS from the
    registry when imported, so every launcher file is checked first: a missing one fails
    here by name, not with the package's ModuleNotFoundError."""
    missing = [
        f"no launcher runtime/kubeinfer_runtime/engines/{e.launcher or '<x>'}.py for {e.name}"
        for e in REGISTRY
        if not (e.launcher and (LAUNCHER_DIR / f"{e.launcher}.py").is_file())
    ]
    assert not missing, "; ".join(missing)
    return importlib.import_module(f"kubeinfer_runtime.engines.{engine.launcher}")


@BY_ENGINE
def test_the_runtime_has_a_launcher(engine: Engine) -> None:
    module = launcher_module(engine)
    from kubeinfer_runtime.engines import LAUNCHERS

    assert list(LAUNCHERS) == NAMES
    launcher = LAUNCHERS[engine.name]
    if engine.param_style == "flags":
        assert launcher.command is getattr(module, "command", None), (
            f"{module.__name__} has no command()"
        )
    else:
        assert launcher.command is None  # in-process, CommonParams fields


@BY_ENGINE
def test_the_launcher_names_its_own_parser(engine: Engine) -> None:
    """`make catalogs` and the parser tests read the parser from the launcher; the parser
    overlay (hack/parser-env.sh) is pinned packages, the engine's own first."""
    module = launcher_module(engine)
    from kubeinfer_runtime.engines.flags import OwnParser

    own_parser = getattr(module, "own_parser", None)
    assert own_parser is not None, f"{module.__name__} has no own_parser()"
    assert get_type_hints(own_parser)["return"] is OwnParser
    for package in engine.parser_overlay:
        assert re.fullmatch(r"[A-Za-z0-9._-]+==[A-Za-z0-9.+!-]+", package), package


@BY_ENGINE
def test_images_exist_for_exactly_the_engines_accelerators(engine: Engine) -> None:
    images = ImageSettings()
    for accelerator in get_args(Accelerator):
        if accelerator in engine.accelerators:
            assert images.image_for(engine.name, accelerator).endswith(":0.1.0")
        else:
            with pytest.raises(ValueError, match=r"no \w+ image configured"):
                images.image_for(engine.name, accelerator)


def _values() -> dict[str, Any]:
    values: dict[str, Any] = yaml.safe_load((CHART / "values.yaml").read_text())
    return values


def _schema() -> dict[str, Any]:
    schema: dict[str, Any] = json.loads((CHART / "values.schema.json").read_text())
    return schema


@BY_ENGINE
def test_chart_values_and_schema_name_every_variant(engine: Engine) -> None:
    region = chart.generated_region((CHART / "values.yaml").read_text())
    lines = chart.engine_values(engine)
    found = any(region[i : i + len(lines)] == lines for i in range(len(region)))
    stale = f"charts/kubeinfer/values.yaml: runtimeImages.{engine.values_key} is stale"
    assert found, f"{stale}: run `make crd`"
    engine_keys = {e.values_key for e in REGISTRY}
    for path, runtime_images in (
        ("values.yaml", _values()["runtimeImages"]),
        ("values.schema.json", _schema()["properties"]["runtimeImages"]["properties"]),
    ):
        named = set(runtime_images) - {"pullPolicy", "pullSecrets"}
        assert named == engine_keys, (
            f"charts/kubeinfer/{path}: runtimeImages has {sorted(named)}, the registry "
            f"{sorted(engine_keys)}: it is stale, run `make crd`"
        )
    assert set(_values()["runtimeImages"][engine.values_key]) == set(engine.accelerators), (
        f"{stale}: run `make crd`"
    )
    declared = _schema()["properties"]["runtimeImages"]["properties"][engine.values_key]
    assert set(declared["properties"]) == set(get_args(Accelerator))


@BY_ENGINE
def test_every_built_variant_has_a_dockerfile(engine: Engine) -> None:
    if engine.accelerators == {"metal"}:
        pytest.skip("MLX needs macOS: no Linux container image (images/README.md)")
    dockerfile = ROOT / "images" / f"{engine.image}.Dockerfile"
    assert dockerfile.exists(), (
        f"images/{dockerfile.name} is missing: the runtime image of {engine.display}"
    )
    text = dockerfile.read_text()
    for accelerator in engine.accelerators - {"cpu"}:
        # The header says how to build each GPU variant, with the tag the chart names.
        assert re.search(rf"{engine.image}-{accelerator}:", text), (engine.name, accelerator)


@BY_ENGINE
def test_gpu_engines_split_over_the_gpus_with_their_own_parameter(engine: Engine) -> None:
    if engine.tensor_parallel_param is None or not engine.gpu_vendors():
        pytest.skip(f"{engine.name} does not split a model over GPUs")
    model_format = engine.formats[0]
    node = h100() if "nvidia" in engine.gpu_vendors() else mi300x()
    model = spec(
        format=model_format,
        quantization="none",
        spec_engine=engine.name,
        architecture="LlamaForCausalLM",
        spec_resources={"gpus": 2},
    )
    decision = decide(ModelDeploymentSpec.model_validate(model), [node_facts(node)])
    assert decision.engine == engine.name, decision.reason
    assert decision.added_params == {engine.tensor_parallel_param: 2}


def _table_rows(path: str, heading: str) -> list[list[str]]:
    """The cells of each row of the first Markdown table after `heading` in `path`."""
    text = (ROOT / path).read_text()
    assert heading in text, f"{path} has no {heading!r}"
    rows: list[list[str]] = []
    for line in text[text.index(heading) :].splitlines()[1:]:
        if line.startswith("|"):
            rows.append([cell.strip() for cell in line.strip().strip("|").split("|")])
        elif rows:
            break
    return rows[2:]  # past the header and its --- line


@BY_ENGINE
def test_runtime_readme_has_a_row_for_the_launcher(engine: Engine) -> None:
    engines = [row[0] for row in _table_rows("runtime/README.md", "## Engines")]
    assert engine.name in engines, (
        f"runtime/README.md's engine table has no row for {engine.name}: how its launcher starts it"
    )


@BY_ENGINE
def test_images_readme_has_a_row_per_image_variant(engine: Engine) -> None:
    images = [row[0] for row in _table_rows("images/README.md", "# Images")]
    for accelerator in sorted(engine.accelerators):
        reference = ImageSettings().image_for(engine.name, accelerator)
        assert f"`{reference}`" in images, (
            f"images/README.md's table has no row for {reference}: the {engine.display} "
            f"{accelerator} runtime image"
        )
