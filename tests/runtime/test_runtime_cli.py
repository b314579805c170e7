"""Command line and config document -> RuntimeConfig."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from kubeinfer_runtime import cli


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("42", 42),
        ("0.5", 0.5),
        ("true", True),
        ("null", None),
        ('"8"', "8"),
        ("f16", "f16"),
        ("[1, 2]", "[1, 2]"),  # only scalars parse; anything else stays text
        ("", ""),
    ],
)
def test_param_values_parse_as_json_scalars(text: str, value: object) -> None:
    assert cli.parse_value(text) == value


def test_flags_build_a_config() -> None:
    config = cli.parse(
        [
            "--engine",
            "llama.cpp",
            "--model",
            "/models/tiny.gguf",
            "--port",
            "9000",
            "--param",
            "n_ctx=512",
            "--param",
            "sampling.top_k=1",
            "--param",
            "cache_type_k=q8_0",
        ]
    )
    assert config.engine == "llama.cpp"
    assert config.model.name == "tiny"
    assert config.server.port == 9000
    assert config.params == {"n_ctx": 512, "sampling.top_k": 1, "cache_type_k": "q8_0"}


def test_config_file_is_read_with_the_contract_model(tmp_path: Path) -> None:
    doc = {
        "apiVersion": "runtime.kubeinfer.io/v1",
        "kind": "RuntimeConfig",
        "engine": "vllm",
        "model": {"name": "qwen", "uri": "hf://Qwen/Qwen2.5-0.5B", "cacheDir": "/cache"},
        "server": {"host": "0.0.0.0", "port": 8000, "metricsPort": 9090},
        "gpus": 2,
        "params": {"tensor_parallel_size": 2},
        "terminationMessagePath": "/tmp/term",
    }
    path = tmp_path / "runtime.yaml"
    path.write_text(yaml.safe_dump(doc))
    config = cli.parse(["--config", str(path), "--param", "max_model_len=4096"])
    assert config.model.cache_dir == "/cache"
    assert config.params == {"tensor_parallel_size": 2, "max_model_len": 4096}
    assert config.termination_message_path == "/tmp/term"


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["--engine", "llama.cpp"],
        ["--engine", "nope", "--model", "/m"],
        ["--engine", "vllm", "--model", "/m", "--param", "novalue"],
    ],
)
def test_bad_command_lines_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.parse(argv)
    assert exc.value.code == 2
    assert "kubeinfer-runtime" in capsys.readouterr().err


def test_invalid_document_names_the_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "runtime.yaml"
    path.write_text(yaml.safe_dump({"engine": "llama.cpp", "model": {"uri": "/m"}}))
    with pytest.raises(SystemExit):
        cli.parse(["--config", str(path)])
    assert "model.name" in capsys.readouterr().err


def print_command(*argv: str) -> tuple[int, Any, str]:
    """``kubeinfer-runtime ARGV --print-command`` as a pod or a user would run it."""
    done = subprocess.run(
        [sys.executable, "-m", "kubeinfer_runtime", *argv, "--print-command"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    out = done.stdout
    return done.returncode, json.loads(out) if done.returncode == 0 else out, done.stderr


def test_print_command_prints_the_engine_argv_and_starts_nothing() -> None:
    code, argv, _ = print_command(
        *["--engine", "sglang", "--model", "hf://org/repo", "--name", "m"],
        *["--param", "tp_size=2", "--param", "trust_remote_code=false"],
    )
    assert code == 0
    assert argv[1:5] == ["-m", "sglang.launch_server", "--model-path", "/models/org/repo"]
    assert argv[-3:] == ["--enable-metrics", "--tp-size", "2"]  # false: left out


def test_print_command_for_llama_cpp_prints_its_fields() -> None:
    code, fields, _ = print_command(
        "--engine", "llama.cpp", "--model", "/nowhere/m.gguf", "--param", "n_ctx=512"
    )
    assert code == 0
    assert fields["n_ctx"] == 512 and fields["model.path"] == "/nowhere/m.gguf"
    assert fields["model_alias"] == ["m"] and fields["endpoint_metrics"] is True


def test_print_command_with_a_bad_param_exits_2_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "runtime.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "engine": "vllm",
                "model": {"name": "m", "uri": "/m"},
                "params": {"served_model_name": "x"},
            }
        )
    )
    code, out, err = print_command("--config", str(path))
    assert code == 2 and out == ""
    assert "served_model_name" in err
