"""Command lines of the engines that run as a child process."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import vllm_env

from kubeinfer.runtime_config import RuntimeConfig
from kubeinfer_runtime.engines import mlx, sglang, transformers, vllm
from kubeinfer_runtime.engines.flags import ParamError, to_flags

ROOT = Path(__file__).resolve().parents[2]


def config(engine: str, **params: object) -> RuntimeConfig:
    return RuntimeConfig.model_validate(
        {
            "engine": engine,
            "model": {"name": "tiny", "uri": "/models/tiny"},
            "server": {"host": "0.0.0.0", "port": 8000},
            "params": params,
        }
    )


def test_flags_are_kebab_case_sorted_and_typed() -> None:
    assert to_flags(
        "vllm",
        {
            "tensor_parallel_size": 2,
            "enforce_eager": True,
            "enable_prefix_caching": False,
            "gpu_memory_utilization": 0.85,
            "hf_overrides": {"b": 1, "a": 2},
            "api_key": ["x", "y"],  # nargs="+"
            "seed": None,
        },
    ) == [
        "--api-key",
        "x",
        "y",
        "--no-enable-prefix-caching",
        "--enforce-eager",
        "--gpu-memory-utilization",
        "0.85",
        "--hf-overrides",
        '{"a": 2, "b": 1}',
        "--tensor-parallel-size",
        "2",
    ]


def test_vllm_serve_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(vllm, "vllm_serve_parser", lambda: None)
    argv = vllm.command(
        config("vllm", tensor_parallel_size=2, max_model_len=4096, gpu_memory_utilization=0.9),
        "/models/tiny",
    )
    assert argv == [
        "vllm",
        "serve",
        "/models/tiny",
        "--host",
        "0.0.0.0",
        "--port",
        "8000",
        "--served-model-name",
        "tiny",
        "--gpu-memory-utilization",
        "0.9",
        "--max-model-len",
        "4096",
        "--tensor-parallel-size",
        "2",
    ]


def test_sglang_command_turns_metrics_on() -> None:
    argv = sglang.command(config("sglang", tp_size=2), "/models/tiny")
    assert argv[:3] == [sys.executable, "-m", "sglang.launch_server"]
    assert argv[3:5] == ["--model-path", "/models/tiny"]
    assert argv[-3:] == ["--enable-metrics", "--tp-size", "2"]


def test_false_follows_each_flags_own_parser() -> None:
    # SGLang's switches are store_true: false leaves them out (its parser has no --no-X).
    argv = sglang.command(config("sglang", enable_metrics=False, trust_remote_code=False), "/m")
    assert not [a for a in argv if "metrics" in a or "trust" in a]
    # vLLM's are BooleanOptionalAction: --no-X; transformers' typer flags likewise.
    assert to_flags("vllm", {"trust_remote_code": False}) == ["--no-trust-remote-code"]
    assert to_flags("transformers", {"compile": False}) == ["--no-compile"]
    assert to_flags("mlx", {"trust_remote_code": True}) == ["--trust-remote-code"]


@pytest.mark.parametrize(
    ("engine", "params", "words"),
    [
        ("vllm", {"model": "/etc/passwd"}, "set by kubeinfer"),
        ("vllm", {"served_model_name": "x"}, "set by kubeinfer"),
        ("sglang", {"model": "/etc/passwd"}, "set by kubeinfer"),  # alias of --model-path
        ("sglang", {"tp_size": [1, 2]}, "not a list"),
        ("sglang", {"chat_template": "--model-path=/x"}, "starts with '-'"),
        ("sglang", {"--port": 1}, "not a parameter name"),
        ("sglang", {"tp_size=2 --port": 1}, "not a parameter name"),
        ("sglang", {"tool_call_parser": "nope"}, "takes one of"),
        ("sglang", {"tp_sze": 2}, "did you mean tp_size"),
    ],
)
def test_runtime_refuses_what_the_operator_refuses(
    engine: str, params: dict[str, object], words: str
) -> None:
    with pytest.raises(ParamError, match=words):
        to_flags(engine, params)


def test_transformers_and_mlx_commands() -> None:
    assert transformers.command(config("transformers", device="cpu"), "/m") == [
        "transformers",
        "serve",
        "tiny",  # the served name: a link to the model in the child's workdir
        "--host",
        "0.0.0.0",
        "--port",
        "8000",
        "--device",
        "cpu",
        "--log-level",
        "info",
    ]
    assert mlx.command(config("mlx", max_tokens=64), "/m") == [
        "mlx_lm.server",
        "--model",
        "/m",
        "--host",
        "0.0.0.0",
        "--port",
        "8000",
        "--max-tokens",
        "64",
    ]


@pytest.mark.parametrize(
    ("engine", "module", "key"),
    [
        ("vllm", vllm, "port"),
        ("sglang", sglang, "model_path"),
        ("mlx", mlx, "model"),
        ("transformers", transformers, "host"),
    ],
)
def test_params_cannot_override_the_document(engine: str, module: object, key: str) -> None:
    with pytest.raises(ParamError, match=key):
        module.command(config(engine, **{key: "x"}), "/m")  # type: ignore[attr-defined]


# Run with the vLLM venv's python: this clone's command builder against vLLM's own parser.
PARSER_CHECK = """
import json, sys
import kubeinfer_runtime
from kubeinfer.runtime_config import RuntimeConfig
from kubeinfer_runtime.engines import vllm
from kubeinfer_runtime.engines.flags import ParamError

def command(params):
    doc = {"engine": "vllm", "model": {"name": "tiny", "uri": "/m"}, "params": params}
    try:
        return {"argv": vllm.command(RuntimeConfig.model_validate(doc), "/m")}
    except ParamError as err:
        return {"error": str(err)}

print(json.dumps({
    "runtime": kubeinfer_runtime.__file__,
    "parser": vllm.vllm_serve_parser() is not None,
    "good": command(json.loads(sys.argv[1])),
    "bad": command(json.loads(sys.argv[2])),
}))
"""


def test_vllm_real_parser_accepts_the_command_line() -> None:
    venv = vllm_env.require()
    good = {
        "tensor_parallel_size": 2,
        "max_model_len": 4096,
        "gpu_memory_utilization": 0.85,
        "enforce_eager": True,  # --flag
        "enable_prefix_caching": False,  # --no-flag (BooleanOptionalAction)
        "hf_overrides": {"rope_theta": 10000},  # one JSON argument
        "api_key": ["a", "b"],  # a list: the flag, then each item (nargs="+")
        "seed": None,  # left out
    }
    bad = {"max_model_len": 4096, "tensor_paralel_size": 2}
    done = subprocess.run(
        [str(venv.python), "-c", PARSER_CHECK, json.dumps(good), json.dumps(bad)],
        capture_output=True,
        text=True,
        env=venv.env(),
        timeout=180,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.splitlines()[-1])
    assert Path(result["runtime"]).is_relative_to(ROOT / "runtime")  # this clone's runtime
    assert result["parser"], "vLLM's serve parser did not load in the vLLM venv"
    assert result["good"] == {
        "argv": [
            *["vllm", "serve", "/m", "--host", "0.0.0.0", "--port", "8000"],
            *["--served-model-name", "tiny", "--api-key", "a", "b"],
            *["--no-enable-prefix-caching", "--enforce-eager"],
            *["--gpu-memory-utilization", "0.85", "--hf-overrides", '{"rope_theta": 10000}'],
            *["--max-model-len", "4096", "--tensor-parallel-size", "2"],
        ]
    }
    error = result["bad"].get("error", "")  # the catalog (from this parser) refuses it first
    assert "unknown vLLM parameter 'tensor_paralel_size'" in error
    assert "did you mean tensor_parallel_size" in error


def test_transformers_workdir_links_the_served_name(tmp_path: Path) -> None:
    model = tmp_path / "model"
    model.mkdir()
    cfg = RuntimeConfig.model_validate(
        {"engine": "transformers", "model": {"name": "org/tiny", "uri": str(model)}}
    )
    root = transformers.workdir(cfg, model)
    assert (root / "org" / "tiny").resolve() == model.resolve()
    bad = RuntimeConfig.model_validate(
        {"engine": "transformers", "model": {"name": "../x", "uri": str(model)}}
    )
    with pytest.raises(ParamError):
        transformers.workdir(bad, model)
