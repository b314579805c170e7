"""Command line and config document -> RuntimeConfig."""

from __future__ import annotations

from pathlib import Path

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
