"""Where the model comes from: a path in the container, a PVC, or the Hugging Face hub.

``hf://org/repo[/file]`` is fetched into ``cacheDir/org/repo`` before the engine starts.
Downloads resume (huggingface_hub keeps partial files under ``local_dir/.cache``), show
progress in the log, and a completed fetch leaves a marker so that a restarted pod can
start from the volume while the hub is down. Without the marker an unreachable hub is a
clear error, never a silent start from a half-filled folder (``snapshot_download`` falls
back to whatever ``local_dir`` holds when the hub cannot be reached).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from kubeinfer.runtime_config import PVC_MOUNT_ROOT, ModelSource

from .logs import get_logger
from .metrics import RuntimeMetrics

log = get_logger("model")

MARKER_DIR = ".kubeinfer"  # completion markers, beside huggingface_hub's own .cache


class ModelSourceError(RuntimeError):
    """The model cannot be found or fetched; the message says what to change."""


@dataclass(frozen=True)
class HubRef:
    repo_id: str
    filename: str | None


def parse_hf_uri(uri: str, file: str | None = None) -> HubRef:
    """``hf://org/repo[/path/in/repo]``; ``file`` names the file when the URI does not."""
    parts = [p for p in uri.removeprefix("hf://").split("/") if p]
    if len(parts) < 2:
        raise ModelSourceError(f"model uri {uri!r} must be hf://org/repo[/file]")
    in_uri = "/".join(parts[2:]) or None
    if in_uri and file and in_uri != file:
        raise ModelSourceError(f"model uri {uri!r} names a file and model.file says {file!r}")
    return HubRef(f"{parts[0]}/{parts[1]}", in_uri or file)


def pvc_path(uri: str, file: str | None = None, root: str = PVC_MOUNT_ROOT) -> Path:
    """``pvc://claim/path`` -> ``/mnt/pvc/<claim>/<path>`` (where the operator mounts it)."""
    rest = PurePosixPath(uri.removeprefix("pvc://"))
    if not rest.parts or ".." in rest.parts:
        raise ModelSourceError(f"model uri {uri!r} must be pvc://claim[/path]")
    path = Path(root).joinpath(*rest.parts)
    return path / file if file else path


def local_path(source: ModelSource, pvc_root: str = PVC_MOUNT_ROOT) -> Path:
    """Where the model is, or will be once fetched (no I/O)."""
    uri = source.uri
    if uri.startswith("hf://"):
        ref = parse_hf_uri(uri, source.file)
        local_dir = Path(source.cache_dir) / ref.repo_id
        return local_dir / ref.filename if ref.filename else local_dir
    if uri.startswith("pvc://"):
        return pvc_path(uri, source.file, pvc_root)
    if uri.startswith("/"):
        return Path(uri) / source.file if source.file else Path(uri)
    raise ModelSourceError(
        f"model uri {uri!r} is not hf://org/repo[/file], pvc://claim/path or an absolute path"
    )


def resolve(source: ModelSource, metrics: RuntimeMetrics, pvc_root: str = PVC_MOUNT_ROOT) -> Path:
    """The local path of the model, fetching it first for hub URIs."""
    if source.uri.startswith("hf://"):
        ref = parse_hf_uri(source.uri, source.file)
        return fetch_from_hub(ref, Path(source.cache_dir), metrics)
    path = local_path(source, pvc_root)
    if not path.exists():
        raise ModelSourceError(f"model path {path} does not exist (from {source.uri!r})")
    return path


def _hub_error(ref: HubRef) -> str | None:
    """Why the hub cannot serve ``ref`` right now, or None when it can."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError

    try:
        HfApi().repo_info(ref.repo_id, timeout=10)
    except HfHubHTTPError as err:
        return f"the hub refused {ref.repo_id}: {err}"
    except Exception as err:
        return f"the hub cannot be reached: {err}"
    return None


def fetch_from_hub(ref: HubRef, cache_dir: Path, metrics: RuntimeMetrics) -> Path:
    from huggingface_hub import constants, hf_hub_download, snapshot_download

    local_dir = cache_dir / ref.repo_id
    marker = local_dir / MARKER_DIR / f"{ref.filename or 'snapshot'}.complete"
    target = local_dir / ref.filename if ref.filename else local_dir
    problem = _hub_error(ref)
    if problem is not None:
        if marker.exists():
            log.warning("%s; using the copy fetched earlier in %s", problem, target)
            return target
        raise ModelSourceError(
            f"cannot fetch hf://{ref.repo_id}{'/' + ref.filename if ref.filename else ''} "
            f"from {constants.ENDPOINT}: {problem}. Check the pod's egress, proxy or HF_TOKEN, "
            f"or put the model on a volume and use pvc://claim/path"
        )
    before = _size(target)
    start = time.monotonic()
    log.info("fetching hf://%s/%s into %s", ref.repo_id, ref.filename or "", local_dir)
    if ref.filename:
        path = Path(hf_hub_download(ref.repo_id, ref.filename, local_dir=local_dir))
    else:
        path = Path(snapshot_download(ref.repo_id, local_dir=local_dir))
    fetched = max(_size(path) - before, 0)
    metrics.fetch_bytes.inc(fetched)
    metrics.fetch_seconds.set(time.monotonic() - start)
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.touch()
    log.info("fetched %.1f MiB in %.1f s", fetched / 2**20, time.monotonic() - start)
    return path


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    if path.is_dir():
        return sum(
            p.stat().st_size
            for p in path.rglob("*")
            if p.is_file() and not {".cache", MARKER_DIR} & set(p.parts)
        )
    return 0
