"""`kubeinfer explain | render | crd` on valid and invalid input (in-process)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
import yaml
from unit_helpers import EXAMPLES, SAMPLE_NODES

from kubeinfer.api.v1alpha1 import ModelDeployment
from kubeinfer.cli import EXIT_NO_ENGINE, EXIT_UNREACHABLE, main
from kubeinfer.crd import crd_yaml
from kubeinfer.decide import decide
from kubeinfer.engines import REGISTRY
from kubeinfer.nodes import node_facts
from kubeinfer.render import ImageSettings, children
from kubeinfer.render.children import RUNTIME_CONFIG_ANNOTATION

NODES = str(SAMPLE_NODES)


def test_explain_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        main(["explain", "-f", str(EXAMPLES / "vllm-h100.yaml"), "--nodes", NODES, "-o", "json"])
        == 0
    )
    out = json.loads(capsys.readouterr().out)
    assert out["engine"] == "vllm"
    assert out["reason"]
    assert out["placement"]["gpusPerReplica"] == 8
    assert [c["engine"] for c in out["candidates"]] == [e.name for e in REGISTRY]
    assert set(out["candidates"][0]) == {"engine", "matched", "reason"}
    assert out["endpoint"] == "http://llama-70b.default.svc:8000/v1"


def test_explain_table_for_no_engine(capsys: pytest.CaptureFixture[str]) -> None:
    # A code of its own, so scripts can tell "cannot run here" from a bad manifest (2).
    assert main(["explain", "-f", str(EXAMPLES / "mlx.yaml"), "--nodes", NODES]) == EXIT_NO_ENGINE
    out = capsys.readouterr().out
    assert "Engine:" in out and "none" in out
    assert "MLX needs Apple silicon" in out


def test_explain_json_engine_null(capsys: pytest.CaptureFixture[str]) -> None:
    main(["explain", "-f", str(EXAMPLES / "mlx.yaml"), "--nodes", NODES, "-o", "json"])
    out = json.loads(capsys.readouterr().out)
    assert out["engine"] is None and out["placement"] is None


def write(tmp_path: Path, body: dict[str, object]) -> str:
    path = tmp_path / "model.yaml"
    path.write_text(yaml.safe_dump(body))
    return str(path)


@pytest.mark.parametrize(
    ("model", "field"),
    [
        ({"name": "q", "format": "safetensors", "uri": "hf://a/b"}, "spec.model.format"),
        ({"name": "q", "format": "gguf", "uri": "hf://a/b"}, "spec.model.file"),
        ({"format": "pytorch", "uri": "hf://a/b"}, "spec.model.name"),
    ],
)
def test_invalid_manifest_exits_2_naming_the_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], model: dict[str, str], field: str
) -> None:
    body = {
        "apiVersion": "kubeinfer.io/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": "q"},
        "spec": {"model": model},
    }
    assert main(["explain", "-f", write(tmp_path, body), "--nodes", NODES]) == 2
    assert field in capsys.readouterr().err


def test_missing_file_and_wrong_kind_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["explain", "-f", str(tmp_path / "nope.yaml"), "--nodes", NODES]) == 2
    assert main(["explain", "-f", write(tmp_path, {"kind": "Pod"}), "--nodes", NODES]) == 2
    assert "no document with kind: ModelDeployment" in capsys.readouterr().err


def test_nodes_as_a_plain_list_or_multi_document(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (node_list,) = yaml.safe_load_all(SAMPLE_NODES.read_text())
    as_list = tmp_path / "list.yaml"
    as_list.write_text(yaml.safe_dump(node_list["items"]))
    multi = tmp_path / "multi.yaml"
    multi.write_text(yaml.safe_dump_all(node_list["items"]))
    results = []
    for path in (as_list, multi):
        main(["explain", "-f", str(EXAMPLES / "gguf-gpu.yaml"), "--nodes", str(path), "-o", "json"])
        results.append(json.loads(capsys.readouterr().out))
    assert results[0] == results[1]
    assert results[0]["engine"] == "llama.cpp"


def test_render_prints_the_children(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["render", "-f", str(EXAMPLES / "gguf-cpu.yaml"), "--nodes", NODES]) == 0
    out = capsys.readouterr().out
    printed = list(yaml.safe_load_all(out))
    assert [d["kind"] for d in printed] == ["Service", "Deployment"]
    # What the operator writes, to the byte of the runtime config, printed as a block.
    (manifest,) = yaml.safe_load_all((EXAMPLES / "gguf-cpu.yaml").read_text())
    md = ModelDeployment.from_object(manifest)
    (nodes,) = yaml.safe_load_all(SAMPLE_NODES.read_text())
    decision = decide(md.spec, map(node_facts, nodes["items"]))
    assert printed == list(children(md, decision, ImageSettings()))
    assert f"{RUNTIME_CONFIG_ANNOTATION}: |\n" in out


def test_crd_to_stdout_and_to_a_directory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["crd"]) == 0
    assert capsys.readouterr().out == crd_yaml()
    assert main(["crd", "-o", str(tmp_path)]) == 0
    assert (tmp_path / "modeldeployments.kubeinfer.io.yaml").read_text() == crd_yaml()


def test_manifest_from_stdin(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO((EXAMPLES / "gguf-cpu.yaml").read_text()))
    assert main(["explain", "-f", "-", "--nodes", NODES, "-o", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["engine"] == "llama.cpp"


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out == "kubeinfer 0.1.0\n"


def test_help_says_where_nodes_come_from(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["explain", "--help"])
    assert "$KUBECONFIG, else ~/.kube/config" in " ".join(capsys.readouterr().out.split())


def test_an_unreachable_api_server_is_one_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": "http://127.0.0.1:1"}}],
                "users": [{"name": "u", "user": {}}],
                "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "x",
            }
        )
    )
    code = main(["explain", "-f", str(EXAMPLES / "gguf-cpu.yaml"), "--kubeconfig", str(kubeconfig)])
    assert code == EXIT_UNREACHABLE
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("error: cannot reach the API server at http://127.0.0.1:1: ")


AMD_ONLY = """
apiVersion: kubeinfer.io/v1alpha1
kind: ModelDeployment
metadata: {name: qwen-amd}
spec:
  model: {name: qwen2.5-instruct, format: pytorch, uri: "hf://Qwen/Qwen2.5-7B", sizeInBillions: 7}
  resources: {gpuProduct: MI300X}
"""


def test_explain_and_render_show_the_rocm_path(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = write(tmp_path, yaml.safe_load(AMD_ONLY))
    assert main(["explain", "-f", manifest, "--nodes", NODES]) == 0
    table = capsys.readouterr().out
    assert "Engine:          vllm" in table
    assert "GPUs:            1 x amd.com/gpu per replica (rocm image)" in table
    assert "amd.com/gpu.product-name=AMD-Instinct-MI300X" in table
    assert main(["render", "-f", manifest, "--nodes", NODES]) == 0
    (deployment,) = [
        d for d in yaml.safe_load_all(capsys.readouterr().out) if d["kind"] == "Deployment"
    ]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["image"] == "ghcr.io/kubeinfer/runtime-vllm-rocm:0.1.0"
    assert container["resources"]["limits"]["amd.com/gpu"] == "1"
