"""Model sources: local paths, PVCs, and the hub (unreachable here, for real)."""

from __future__ import annotations

from pathlib import Path

import pytest

from kubeinfer.runtime_config import ModelSource
from kubeinfer_runtime.metrics import RuntimeMetrics
from kubeinfer_runtime.model_source import (
    HubRef,
    ModelSourceError,
    parse_hf_uri,
    pvc_path,
    resolve,
)


def test_hf_uris() -> None:
    assert parse_hf_uri("hf://Qwen/Qwen2.5-7B-Instruct-GGUF") == HubRef(
        "Qwen/Qwen2.5-7B-Instruct-GGUF", None
    )
    assert parse_hf_uri("hf://org/repo/sub/m.gguf") == HubRef("org/repo", "sub/m.gguf")
    assert parse_hf_uri("hf://org/repo", "m.gguf") == HubRef("org/repo", "m.gguf")
    with pytest.raises(ModelSourceError):
        parse_hf_uri("hf://org")
    with pytest.raises(ModelSourceError):
        parse_hf_uri("hf://org/repo/a.gguf", "b.gguf")


def test_pvc_uris_map_under_the_mount_root() -> None:
    assert pvc_path("pvc://models/llama/7b") == Path("/mnt/pvc/models/llama/7b")
    assert pvc_path("pvc://models/llama", "m.gguf") == Path("/mnt/pvc/models/llama/m.gguf")
    with pytest.raises(ModelSourceError):
        pvc_path("pvc://models/../etc")


def test_local_and_pvc_paths_resolve_when_present(tmp_path: Path) -> None:
    (tmp_path / "claim" / "dir").mkdir(parents=True)
    (tmp_path / "claim" / "dir" / "m.gguf").write_bytes(b"GGUF")
    metrics = RuntimeMetrics()
    source = ModelSource(name="m", uri="pvc://claim/dir", file="m.gguf")
    assert resolve(source, metrics, pvc_root=str(tmp_path)) == tmp_path / "claim/dir/m.gguf"
    local = ModelSource(name="m", uri=str(tmp_path / "claim" / "dir"))
    assert resolve(local, metrics) == tmp_path / "claim" / "dir"
    with pytest.raises(ModelSourceError, match="does not exist"):
        resolve(ModelSource(name="m", uri=str(tmp_path / "missing")), metrics)
    with pytest.raises(ModelSourceError, match="not hf://"):
        resolve(ModelSource(name="m", uri="s3://bucket/m"), metrics)


def test_unreachable_hub_is_a_clear_error(tmp_path: Path) -> None:
    # No hub can be reached from this machine: this is the real failure a pod would see.
    source = ModelSource(
        name="m", uri="hf://Qwen/Qwen2.5-0.5B-Instruct-GGUF/q2_k.gguf", cacheDir=str(tmp_path)
    )
    with pytest.raises(ModelSourceError) as exc:
        resolve(source, RuntimeMetrics())
    message = str(exc.value)
    assert "cannot fetch hf://Qwen/Qwen2.5-0.5B-Instruct-GGUF/q2_k.gguf" in message
    assert "pvc://" in message


def test_a_completed_fetch_survives_a_hub_outage(tmp_path: Path) -> None:
    repo = tmp_path / "org" / "repo"
    (repo / ".kubeinfer").mkdir(parents=True)
    (repo / "m.gguf").write_bytes(b"GGUF")
    (repo / ".kubeinfer" / "m.gguf.complete").touch()
    source = ModelSource(name="m", uri="hf://org/repo/m.gguf", cacheDir=str(tmp_path))
    assert resolve(source, RuntimeMetrics()) == repo / "m.gguf"
