"""Where the model comes from: a path in the container, a PVC, or the Hugging Face hub.

``hf://org/repo[@revision][/file]`` is fetched into ``cacheDir/org/repo[@revision]`` before
the engine starts, with the credentials of the pod's environment (``HF_TOKEN``, which
huggingface_hub reads; ``HF_ENDPOINT`` for a mirror). Each file is written to a partial file on
the volume and continued with an HTTP Range request after a dropped connection or a restarted
pod (huggingface_hub 2.x names its partial file per process and deletes it when a download
fails, so a new process would start the file again). Transient errors are retried with
backoff, files already complete on the volume are not fetched again, and progress goes to the
log every few seconds. A completed fetch leaves
a marker so that a restarted pod can start from the volume while the hub is down; without
it an unreachable hub is a clear error, never a silent start from a half-filled folder. The
hub's refusals (no token for a gated repo, no such repo, revision or file) and a full disk
each get a message that says what to change.
"""

from __future__ import annotations

import errno
import fcntl
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path, PurePosixPath
from typing import Any, TypeVar, cast

from kubeinfer.runtime_config import PVC_MOUNT_ROOT, ModelSource

from .logs import get_logger
from .metrics import RuntimeMetrics

log = get_logger("model")

MARKER_DIR = ".kubeinfer"  # completion markers and partial files (not the model's files)
PARTIAL_DIR = "partial"  # under MARKER_DIR: <commit>/<path in the repo>, the bytes so far
# Waits before each retry of a transient hub error (connection, timeout, 429, 5xx).
RETRY_DELAYS: tuple[float, ...] = (1, 2, 4, 8, 16, 30)
PROGRESS_SECONDS = 5.0  # at most one progress line this often
_TRANSIENT_STATUS = frozenset({408, 429, 500, 502, 503, 504})
T = TypeVar("T")


class ModelSourceError(RuntimeError):
    """The model cannot be found or fetched; the message says what to change."""


@dataclass(frozen=True)
class HubRef:
    repo_id: str
    filename: str | None
    revision: str | None = None  # a branch, tag or commit; None: the repo's default branch

    @property
    def folder(self) -> str:
        """Where it goes under the cache directory: one folder per repo and revision."""
        return f"{self.repo_id}@{self.revision}" if self.revision else self.repo_id

    def uri(self) -> str:
        return f"hf://{self.folder}{'/' + self.filename if self.filename else ''}"


def parse_hf_uri(uri: str, file: str | None = None) -> HubRef:
    """``hf://org/repo[@revision][/path/in/repo]``; ``file`` names the file when the URI does
    not."""
    parts = [p for p in uri.removeprefix("hf://").split("/") if p]
    if len(parts) < 2:
        raise ModelSourceError(f"model uri {uri!r} must be hf://org/repo[@revision][/file]")
    repo, _, revision = parts[1].partition("@")
    if not repo or (_ and not revision):
        raise ModelSourceError(f"model uri {uri!r} must be hf://org/repo[@revision][/file]")
    in_uri = "/".join(parts[2:]) or None
    if in_uri and file and in_uri != file:
        raise ModelSourceError(f"model uri {uri!r} names a file and model.file says {file!r}")
    return HubRef(f"{parts[0]}/{repo}", in_uri or file, revision or None)


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
        local_dir = Path(source.cache_dir) / ref.folder
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
        if source.prefetched:
            return _prefetched(ref, Path(source.cache_dir))
        return fetch_from_hub(ref, Path(source.cache_dir), metrics)
    path = local_path(source, pvc_root)
    if not path.exists():
        raise ModelSourceError(f"model path {path} does not exist (from {source.uri!r})")
    unreadable = _first_unreadable(path)
    if unreadable is not None:
        # Engines report this as a missing file (transformers: FileNotFoundError), which
        # sends users looking in the wrong place.
        raise ModelSourceError(
            f"model file {unreadable} is not readable by uid {os.getuid()} (from "
            f"{source.uri!r}): make the volume's files readable to the pod (chmod a+r, or "
            "group-readable with the pod's fsGroup)"
        )
    return path


def _first_unreadable(path: Path) -> Path | None:
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    return next((f for f in files if not os.access(f, os.R_OK)), None)


def _marker(ref: HubRef, cache_dir: Path) -> Path:
    return cache_dir / ref.folder / MARKER_DIR / f"{ref.filename or 'snapshot'}.complete"


def _prefetched(ref: HubRef, cache_dir: Path) -> Path:
    """The copy a download Job left on the (read-only) cache volume; no hub, no writes."""
    local_dir = cache_dir / ref.folder
    if not _marker(ref, cache_dir).exists():
        raise ModelSourceError(
            f"the model cache holds no complete copy of {ref.uri()} in {local_dir} — the "
            "download Job has not finished; kubeinfer starts the engine only after it has"
        )
    log.info("starting from the model cache: %s", local_dir)
    return local_dir / ref.filename if ref.filename else local_dir


def hub_endpoint() -> str:
    """HF_ENDPOINT as the pod has it now (huggingface_hub reads it once, at import)."""
    from huggingface_hub import constants

    return os.environ.get("HF_ENDPOINT", constants.ENDPOINT).rstrip("/")


def fetch_from_hub(ref: HubRef, cache_dir: Path, metrics: RuntimeMetrics) -> Path:
    local_dir = cache_dir / ref.folder
    marker = _marker(ref, cache_dir)
    target = local_dir / ref.filename if ref.filename else local_dir
    where = f"cannot fetch {ref.uri()} from {hub_endpoint()}"
    try:
        commit, files = _with_retries(lambda: _files(ref))
    except _Unreachable as err:
        if marker.exists():
            log.warning("%s; using the copy fetched earlier in %s", err, target)
            return target
        raise ModelSourceError(
            f"{where}: the hub cannot be reached ({err}) — check the pod's egress, proxy or "
            "HF_ENDPOINT, or put the model on a volume and use pvc://claim/path"
        ) from err
    except Exception as err:
        raise ModelSourceError(f"{where}: {_refusal(ref, err)}") from err
    total = sum(size for _, size in files)
    start = time.monotonic()
    progress = _Progress(ref.uri(), total)
    log.info(
        "fetching %s (%d files, %.1f MiB) into %s", ref.uri(), len(files), total / 2**20, local_dir
    )
    _drop_partials_except(local_dir, commit)
    try:
        for name, size in files:
            _with_retries(partial(_download, ref, commit, name, size, local_dir, progress))
    except Exception as err:
        raise ModelSourceError(f"{where}: {_refusal(ref, err)}") from err
    metrics.fetch_bytes.inc(progress.received)
    metrics.fetch_seconds.set(time.monotonic() - start)
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.touch()
    log.info("fetched %.1f MiB in %.1f s", progress.received / 2**20, time.monotonic() - start)
    return target


def _files(ref: HubRef) -> tuple[str, list[tuple[str, int]]]:
    """The commit the revision points to, and (path in the repo, size) of what to fetch;
    raises the hub's error when it refuses."""
    from huggingface_hub import HfApi

    info = HfApi(endpoint=hub_endpoint()).model_info(
        ref.repo_id, revision=ref.revision, files_metadata=True, timeout=10
    )
    commit = info.sha or ref.revision or "main"
    siblings = {s.rfilename: s.size or 0 for s in info.siblings or ()}
    if ref.filename:
        if ref.filename not in siblings:
            raise FileNotFoundError(ref.filename)
        return commit, [(ref.filename, siblings[ref.filename])]
    return commit, sorted(siblings.items())


def _partials(local_dir: Path) -> Path:
    return local_dir / MARKER_DIR / PARTIAL_DIR


def _drop_partials_except(local_dir: Path, commit: str) -> None:
    """Bytes of another commit (a branch that moved since) cannot be continued."""
    for old in _partials(local_dir).glob("*"):
        if old.name != commit:
            shutil.rmtree(old, ignore_errors=True)


def _download(
    ref: HubRef, commit: str, name: str, size: int, local_dir: Path, progress: _Progress
) -> None:
    """One file into ``local_dir``, continued from the bytes an earlier attempt left."""
    from huggingface_hub import constants, hf_hub_download, hf_hub_url
    from huggingface_hub.file_download import http_get
    from huggingface_hub.utils._headers import build_hf_headers  # utils re-exports it lazily

    final = local_dir / name
    if _complete(final, size, progress):
        return
    if size > constants.MAX_HTTP_DOWNLOAD_SIZE:
        # The hub serves files this large only through Xet (hf_xet), whose partial files do
        # not outlive the process: such a file starts again after a restart.
        hf_hub_download(
            ref.repo_id,
            name,
            revision=commit,
            local_dir=local_dir,
            endpoint=hub_endpoint(),
            tqdm_class=cast(Any, progress.bar),
        )
        return
    part = _partials(local_dir) / commit / name
    part.parent.mkdir(parents=True, exist_ok=True)
    # One writer at a time (a replaced pod can outlive its successor's start by its grace
    # period): the lock is a file of its own, since the partial file is renamed when done.
    with part.with_name(f"{part.name}.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _complete(final, size, progress):  # the other writer finished it
            return
        with part.open("ab") as out:
            kept = out.seek(0, os.SEEK_END)
            if kept > size:  # not a prefix of this file
                out.truncate(0)
                kept = 0
            if kept:
                log.info("continuing %s from %.1f/%.1f MiB", name, kept / 2**20, size / 2**20)
            if kept == size:
                progress.add(size)
            else:
                # The commit, not the branch, in the URL: the bytes continued are the same
                # file's.
                http_get(
                    hf_hub_url(ref.repo_id, name, revision=commit, endpoint=hub_endpoint()),
                    out,
                    resume_size=kept,
                    headers=build_hf_headers(),
                    expected_size=size or None,
                    tqdm_class=cast(Any, progress.bar),
                )
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(part, final)


def _complete(final: Path, size: int, progress: _Progress) -> bool:
    """Fetched by an earlier attempt (or by another writer)."""
    if final.is_file() and final.stat().st_size == size:
        progress.add(size)
        return True
    return False


class _Unreachable(Exception):
    """The hub could not be reached after every retry."""


def _transient(err: BaseException) -> bool:
    import httpx2
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    if isinstance(err, HfHubHTTPError) and err.response is not None:
        return err.response.status_code in _TRANSIENT_STATUS
    # huggingface_hub reports a failed connection as "not in the local cache".
    return isinstance(err, httpx2.TransportError | LocalEntryNotFoundError | TimeoutError)


def _with_retries(call: Callable[[], T]) -> T:
    for attempt, delay in enumerate((*RETRY_DELAYS, None), start=1):
        try:
            return call()
        except Exception as err:
            if not _transient(err):
                raise
            if delay is None:
                raise _Unreachable(str(err) or type(err).__name__) from err
            log.warning("hub error (attempt %d): %s; retrying in %.0f s", attempt, err, delay)
            time.sleep(delay)
    raise AssertionError("unreachable")  # the loop returns or raises


def _refusal(ref: HubRef, err: BaseException) -> str:
    """Why the hub (or the disk) refused, and what to change."""
    from huggingface_hub.errors import (
        EntryNotFoundError,
        GatedRepoError,
        HfHubHTTPError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    token = "HF_TOKEN is set" if os.environ.get("HF_TOKEN") else "no HF_TOKEN is set"
    if isinstance(err, OSError) and err.errno == errno.ENOSPC:
        return (
            "the model volume is full (no space left on device) — raise spec.model.cache.size "
            "or free the volume"
        )
    if isinstance(err, GatedRepoError):
        return (
            f"{ref.repo_id} is gated and {token} — put a token allowed to read it in a Secret "
            "and pass it as HF_TOKEN (spec.env[].valueFrom.secretKeyRef)"
        )
    if isinstance(err, RevisionNotFoundError):
        return f"{ref.repo_id} has no revision {ref.revision!r} — fix @revision in spec.model.uri"
    if isinstance(err, RepositoryNotFoundError):
        return (
            f"no repo {ref.repo_id} (or it is private and {token}) — fix spec.model.uri, or "
            "pass a token allowed to read it as HF_TOKEN from a Secret"
        )
    if isinstance(err, EntryNotFoundError | FileNotFoundError):
        return f"{ref.folder} has no file {ref.filename!r} — fix spec.model.file"
    if isinstance(err, HfHubHTTPError) and err.response is not None:
        status = err.response.status_code
        if status in (401, 403):
            return f"the hub refused access ({status}) and {token} — check HF_TOKEN"
        return f"the hub answered {status}: {err}"
    if isinstance(err, _Unreachable):
        return f"the hub cannot be reached ({err}) — check the pod's egress, proxy or HF_ENDPOINT"
    return f"{type(err).__name__}: {err}"


class _Progress:
    """Bytes on the volume across the files of one fetch, logged every PROGRESS_SECONDS;
    ``received``: those this process received."""

    def __init__(self, what: str, total: int) -> None:
        self.what, self.total, self.done, self.received = what, total, 0, 0
        self.last = time.monotonic()

    def add(self, count: int) -> None:
        self.done += count
        now = time.monotonic()
        if now - self.last >= PROGRESS_SECONDS:
            self.last = now
            share = f" ({100 * self.done / self.total:.0f}%)" if self.total else ""
            log.info(
                "fetching %s: %.1f/%.1f MiB%s",
                self.what,
                self.done / 2**20,
                self.total / 2**20,
                share,
            )

    def bar(self, *, initial: int = 0, **_: Any) -> _Bar:
        """What huggingface_hub calls in place of a tqdm class (a resumed file starts at
        ``initial``)."""
        self.add(initial)
        return _Bar(self)


class _Bar:
    def __init__(self, progress: _Progress) -> None:
        self.progress = progress

    def __enter__(self) -> _Bar:
        return self

    def __exit__(self, *_: object) -> None:
        return None

    def update(self, count: int) -> None:
        self.progress.add(count)
        self.progress.received += count
