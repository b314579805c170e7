"""Model sources: local paths, PVCs, and the hub (unreachable here, for real)."""

from __future__ import annotations

import errno
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hub_server import Hub, Repo, serve

from kubeinfer.cache import permanent
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


def python_c(code: str) -> list[str]:
    return [sys.executable, "-c", code]


@pytest.mark.skipif(os.getuid() != 0 or not shutil.which("setpriv"), reason="needs root")
def test_a_model_file_the_pod_user_cannot_read_is_named() -> None:
    # As a pod's unprivileged user would: safetensors writes 0600 files, and an engine would
    # report them as missing.
    folder = Path(tempfile.mkdtemp())
    try:
        folder.chmod(0o755)
        (folder / "config.json").write_text("{}")
        (folder / "model.safetensors").write_bytes(b"weights")
        (folder / "model.safetensors").chmod(0o600)
        check = (
            "from kubeinfer.runtime_config import ModelSource\n"
            "from kubeinfer_runtime.metrics import RuntimeMetrics\n"
            "from kubeinfer_runtime.model_source import resolve\n"
            f"resolve(ModelSource(name='m', uri={str(folder)!r}), RuntimeMetrics())\n"
        )
        ran = subprocess.run(
            ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *python_c(check)],
            capture_output=True,
            text=True,
        )
        assert ran.returncode != 0
        assert f"model file {folder}/model.safetensors is not readable by uid 65534" in ran.stderr
    finally:
        shutil.rmtree(folder)


def test_unreachable_hub_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    from kubeinfer_runtime import model_source

    # No hub can be reached from this machine: this is the real failure a pod would see
    # (after the retries, here without their waits).
    monkeypatch.setattr(time, "sleep", lambda _: None)
    monkeypatch.setattr(model_source, "RETRY_DELAYS", (0.01,))
    source = ModelSource(
        name="m", uri="hf://Qwen/Qwen2.5-0.5B-Instruct-GGUF/q2_k.gguf", cacheDir=str(tmp_path)
    )
    with pytest.raises(ModelSourceError) as exc:
        resolve(source, RuntimeMetrics())
    message = str(exc.value)
    assert "cannot fetch hf://Qwen/Qwen2.5-0.5B-Instruct-GGUF/q2_k.gguf" in message
    assert "the hub cannot be reached" in message
    assert "pvc://" in message


def test_a_completed_fetch_survives_a_hub_outage(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import time

    monkeypatch.setattr(time, "sleep", lambda _: None)
    repo = tmp_path / "org" / "repo"
    (repo / ".kubeinfer").mkdir(parents=True)
    (repo / "m.gguf").write_bytes(b"GGUF")
    (repo / ".kubeinfer" / "m.gguf.complete").touch()
    source = ModelSource(name="m", uri="hf://org/repo/m.gguf", cacheDir=str(tmp_path))
    assert resolve(source, RuntimeMetrics()) == repo / "m.gguf"


# --- the hub, played by tests/hub_server.py -----------------------------------------------

TOKEN = "hf_" + "Tq7" * 12  # the shape of a real token, so redaction sees it as one


@pytest.fixture
def hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Hub]:
    from kubeinfer_runtime import model_source

    repo = tmp_path / "repo"
    (repo / "sub").mkdir(parents=True)
    (repo / "m.gguf").write_bytes(b"G" * 300_000)
    (repo / "config.json").write_text("{}")
    (repo / "sub" / "tokenizer.json").write_text('{"v": 1}')
    repos = {
        "org/open": Repo(repo, revisions=("main", "v1")),
        "org/gated": Repo(repo, gated=True),
    }
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))  # no token stored anywhere
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setattr(model_source, "RETRY_DELAYS", (0.01, 0.01))
    with serve(repos, TOKEN) as running:
        monkeypatch.setenv("HF_ENDPOINT", running.url)
        yield running


def fetch(uri: str, cache: Path, file: str | None = None) -> Path:
    return resolve(ModelSource(name="m", uri=uri, file=file, cacheDir=str(cache)), RuntimeMetrics())


def test_revisions_in_hub_uris() -> None:
    assert parse_hf_uri("hf://org/repo@v1.0/m.gguf") == HubRef("org/repo", "m.gguf", "v1.0")
    assert parse_hf_uri("hf://org/repo@abc123", "m.gguf").folder == "org/repo@abc123"
    assert parse_hf_uri("hf://org/repo").folder == "org/repo"
    with pytest.raises(ModelSourceError):
        parse_hf_uri("hf://org/repo@")


def test_a_file_is_fetched_once_and_a_restart_reads_the_volume(hub: Hub, tmp_path: Path) -> None:
    path = fetch("hf://org/open@v1", tmp_path / "cache", "m.gguf")
    assert path == tmp_path / "cache" / "org" / "open@v1" / "m.gguf"
    assert path.read_bytes() == b"G" * 300_000
    assert hub.bytes_served() == 300_000
    # A restarted pod on the same volume: metadata only, no bytes.
    assert fetch("hf://org/open@v1", tmp_path / "cache", "m.gguf") == path
    assert hub.bytes_served() == 300_000


def test_a_snapshot_fetches_every_file(hub: Hub, tmp_path: Path) -> None:
    path = fetch("hf://org/open", tmp_path / "cache")
    assert (path / "sub" / "tokenizer.json").read_text() == '{"v": 1}'
    assert hub.bytes_served() == 300_000 + 2 + 8


def test_a_gated_repo_needs_the_token(
    hub: Hub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(ModelSourceError) as refused:
        fetch("hf://org/gated", tmp_path / "cache", "m.gguf")
    message = str(refused.value)
    assert "org/gated is gated and no HF_TOKEN is set" in message
    assert "secretKeyRef" in message
    assert permanent(message)
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    assert fetch("hf://org/gated", tmp_path / "cache", "m.gguf").stat().st_size == 300_000


@pytest.mark.parametrize(
    ("uri", "file", "says"),
    [
        ("hf://org/nothing", "m.gguf", "no repo org/nothing (or it is private and no HF_TOKEN"),
        ("hf://org/open@v9", "m.gguf", "org/open has no revision 'v9'"),
        ("hf://org/open", "missing.gguf", "org/open has no file 'missing.gguf'"),
    ],
)
def test_the_hubs_refusals_are_named(
    hub: Hub, tmp_path: Path, uri: str, file: str, says: str
) -> None:
    with pytest.raises(ModelSourceError, match=re.escape(says)) as refused:
        fetch(uri, tmp_path / "cache", file)
    assert permanent(str(refused.value))  # the operator's download Job waits the longest


def test_transient_errors_are_retried_then_named(
    hub: Hub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import time

    monkeypatch.setattr(time, "sleep", lambda _: None)  # huggingface_hub's backoff too
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:1")
    with pytest.raises(ModelSourceError, match="the hub cannot be reached") as failed:
        fetch("hf://org/open", tmp_path / "cache", "m.gguf")
    assert not permanent(str(failed.value))  # the download Job runs again soon


def test_a_full_disk_is_named(hub: Hub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from kubeinfer_runtime import model_source

    def full(*_: object, **__: object) -> Path:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(model_source, "_download", full)
    with pytest.raises(ModelSourceError, match="the model volume is full") as full_disk:
        fetch("hf://org/open", tmp_path / "cache", "m.gguf")
    assert permanent(str(full_disk.value))


def test_progress_and_tokens_in_the_log(
    hub: Hub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    from kubeinfer_runtime import model_source
    from kubeinfer_runtime.logs import get_logger, setup_logging

    monkeypatch.setenv("HF_TOKEN", TOKEN)
    monkeypatch.setattr(model_source, "PROGRESS_SECONDS", 0.0)
    setup_logging()
    fetch("hf://org/gated", tmp_path / "cache", "m.gguf")
    get_logger("test").warning("a library quoting it: Authorization: Bearer %s", TOKEN)
    err = capfd.readouterr().err
    assert "fetching hf://org/gated/m.gguf: 0.3/0.3 MiB (100%)" in err
    assert "Bearer ***" in err
    assert TOKEN not in err


def test_a_prefetched_cache_is_read_without_the_hub(hub: Hub, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    source = ModelSource(
        name="m", uri="hf://org/open@v1", file="m.gguf", cacheDir=str(cache), prefetched=True
    )
    with pytest.raises(ModelSourceError, match="the download Job has not finished"):
        resolve(source, RuntimeMetrics())
    fetch("hf://org/open@v1", cache, "m.gguf")  # what the download Job does
    requests = len(hub.requests)
    assert resolve(source, RuntimeMetrics()) == cache / "org" / "open@v1" / "m.gguf"
    assert len(hub.requests) == requests  # no call to the hub at all


FETCH_IN_A_PROCESS = (
    "import sys\n"
    "from kubeinfer.runtime_config import ModelSource\n"
    "from kubeinfer_runtime.metrics import RuntimeMetrics\n"
    "from kubeinfer_runtime.model_source import resolve\n"
    "resolve(ModelSource(name='m', uri=sys.argv[1], cacheDir=sys.argv[2]), RuntimeMetrics())\n"
)


# Bigger than huggingface_hub's 10 MiB read chunk, so that a stopped fetch has written some
# of it; sent slowly, so that it is stopped halfway.
BIG = 24 * 2**20
HALFWAY = 14 * 2**20

FETCH_ONLY = (
    "import sys\n"
    "from kubeinfer.runtime_config import ModelSource, RuntimeConfig\n"
    "from kubeinfer_runtime import app\n"
    "source = ModelSource(name='m', uri=sys.argv[1], cacheDir=sys.argv[2])\n"
    "sys.exit(app.fetch(RuntimeConfig(engine='llama.cpp', model=source)))\n"
)


def fetch_halfway(hub: Hub, tmp_path: Path, code: str) -> tuple[subprocess.Popen[bytes], Path]:
    """A fetch of a big file in a process of its own, once the hub has sent HALFWAY bytes."""
    import time

    folder = tmp_path / "big"
    folder.mkdir()
    (folder / "m.gguf").write_bytes(os.urandom(BIG))
    hub.repos["org/big"] = Repo(folder)
    hub.rate = 8 * 2**20
    process = subprocess.Popen([*python_c(code), "hf://org/big/m.gguf", str(tmp_path / "cache")])
    deadline = time.monotonic() + 60
    while hub.bytes_served() < HALFWAY and process.poll() is None:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    return process, folder / "m.gguf"


def bytes_kept(cache: Path) -> int:
    return sum(p.stat().st_size for p in cache.rglob("*") if p.is_file())


def test_a_download_killed_halfway_continues_after_a_restart(hub: Hub, tmp_path: Path) -> None:
    import signal

    first, original = fetch_halfway(hub, tmp_path, FETCH_IN_A_PROCESS)
    first.send_signal(signal.SIGKILL)  # as a node losing the pod: nothing runs after it
    first.wait()
    cache = tmp_path / "cache"
    kept = bytes_kept(cache)
    assert 0 < kept < BIG
    hub.rate = None
    hub.served.clear()
    path = fetch("hf://org/big/m.gguf", cache)
    assert path.read_bytes() == original.read_bytes()
    assert hub.bytes_served() == BIG - kept  # only what the volume did not have
    assert not any(p.name.endswith(".part") or ".incomplete" in p.name for p in cache.rglob("*"))


def test_a_fetch_stops_at_once_on_sigterm_and_keeps_what_it_has(hub: Hub, tmp_path: Path) -> None:
    """The download Job's container is the pod's PID 1, which has no default SIGTERM action:
    a deleted Job's pod would otherwise linger for its whole grace period."""
    import signal
    import time

    job, _ = fetch_halfway(hub, tmp_path, FETCH_ONLY)
    job.send_signal(signal.SIGTERM)
    started = time.monotonic()
    assert job.wait(timeout=10) == 128 + signal.SIGTERM
    assert time.monotonic() - started < 3
    assert 0 < bytes_kept(tmp_path / "cache") < BIG  # the next run continues from it


def test_partial_files_continue_only_for_the_same_commit(hub: Hub, tmp_path: Path) -> None:
    commit = hub.repos["org/open"].commit
    partials = tmp_path / "cache" / "org" / "open" / ".kubeinfer" / "partial"
    (partials / commit).mkdir(parents=True)
    (partials / commit / "m.gguf").write_bytes(b"G" * 100_000)
    (partials / "0ld").mkdir()  # the branch pointed elsewhere then
    (partials / "0ld" / "m.gguf").write_bytes(b"X" * 100_000)
    path = fetch("hf://org/open", tmp_path / "cache", "m.gguf")
    assert path.read_bytes() == b"G" * 300_000
    assert hub.bytes_served() == 200_000
    assert f"GET /org/open/resolve/{commit}/m.gguf" in hub.requests
    assert list(partials.iterdir()) == [partials / commit]
    # A partial file longer than the file is not a prefix of it: fetched whole.
    (partials / commit / "m.gguf").write_bytes(b"G" * 400_000)
    path.unlink()
    fetch("hf://org/open", tmp_path / "cache", "m.gguf")
    assert path.read_bytes() == b"G" * 300_000
    assert hub.bytes_served() == 500_000


def test_files_too_big_for_plain_http_go_through_huggingface_hub(
    hub: Hub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import huggingface_hub
    from huggingface_hub import constants

    # The hub serves files over 50 GB only through Xet (hf_xet), which the stand-in does not
    # speak: this checks the routing.
    monkeypatch.setattr(constants, "MAX_HTTP_DOWNLOAD_SIZE", 1000)
    calls: list[tuple[str, str | None]] = []

    def download(repo_id: str, name: str, *, revision: str | None, **_: object) -> str:
        calls.append((name, revision))
        return ""

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", download)
    fetch("hf://org/open", tmp_path / "cache")
    commit = hub.repos["org/open"].commit
    assert calls == [("m.gguf", commit)]
    assert hub.bytes_served() == 2 + 8  # config.json and sub/tokenizer.json, over plain HTTP


def test_a_second_writer_waits_and_takes_the_finished_file(hub: Hub, tmp_path: Path) -> None:
    import fcntl
    import threading
    import time

    # A pod whose predecessor is still finishing the file (its grace period) on the volume.
    commit = hub.repos["org/open"].commit
    folder = tmp_path / "cache" / "org" / "open"
    (folder / ".kubeinfer" / "partial" / commit).mkdir(parents=True)
    with (folder / ".kubeinfer" / "partial" / commit / "m.gguf.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        got: list[Path] = []
        second = threading.Thread(
            target=lambda: got.append(fetch("hf://org/open", tmp_path / "cache", "m.gguf"))
        )
        second.start()
        time.sleep(0.5)
        assert second.is_alive()  # waiting for the lock
        (folder / "m.gguf").write_bytes(b"G" * 300_000)  # what the first writer does last
    second.join(timeout=30)
    assert got == [folder / "m.gguf"]
    assert hub.bytes_served() == 0
