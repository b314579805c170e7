"""The model cache's state, from its download Job and that Job's pods (pure).

The condition `ModelCache` says where the weights stand: `Downloading` while the Job runs (with the
bytes done and in all, from the progress lines at the tail of its log),
`Ready` once it has succeeded (the engine's Deployment is created only then), and
`DownloadFailed` with the runtime's own message (from the pod's termination message: no
token for a gated repo, no such repo, revision or file, a full volume) when it has failed.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from kubeinfer import conditions as cond
from kubeinfer.api.v1alpha1 import Condition, ConditionStatus
from kubeinfer.workload import PodSummary

# The runtime's progress lines (kubeinfer_runtime.model_source): the first names the total,
# later ones the bytes done.
_STARTED = re.compile(r"fetching \S+ \(\d+ files, ([\d.]+) MiB\)")
_DONE = re.compile(r"fetching \S+: ([\d.]+/[\d.]+ MiB(?: \(\d+%\))?)")
PROGRESS_LINES = 20


def progress(log: str) -> str | None:
    """ "done/total MiB (share)" from the tail of the download's log, or None."""
    for line in reversed(log.splitlines()):
        if found := _DONE.search(line):
            return found.group(1)
        if found := _STARTED.search(line):
            return f"0.0/{found.group(1)} MiB (0%)"
    return None


@dataclass(frozen=True)
class JobSummary:
    name: str
    succeeded: bool
    failed: bool
    message: str  # the Job controller's word when it failed


def summarize_job(body: Mapping[str, Any]) -> JobSummary:
    status = body.get("status") or {}
    finished = {
        c.get("type"): c for c in status.get("conditions") or () if c.get("status") == "True"
    }
    failed = finished.get("Failed") or {}
    return JobSummary(
        name=str((body.get("metadata") or {}).get("name", "")),
        succeeded="Complete" in finished or int(status.get("succeeded") or 0) > 0,
        failed=bool(failed),
        message=str(failed.get("message") or failed.get("reason") or ""),
    )


def cache_condition(
    name: str,
    uri: str,
    job: JobSummary | None,
    pods: Iterable[PodSummary],
    *,
    done: str | None = None,
    generation: int | None,
    now: datetime,
) -> Condition:
    def made(status: ConditionStatus, reason: str, message: str) -> Condition:
        return cond.condition(
            cond.MODEL_CACHE, status, reason, message, generation=generation, now=now
        )

    if job is not None and job.succeeded:
        return made("True", cond.CACHE_READY, f"{uri} is in PersistentVolumeClaim {name}")
    failure = next((p.failure for p in sorted(pods, key=lambda p: p.name) if p.failure), None)
    if job is not None and job.failed:
        why = failure or job.message or "the download Job failed"
        return made(
            "False",
            cond.DOWNLOAD_FAILED,
            f"Job {name}: {why} (then delete the Job, or change the spec, to try again)",
        )
    if failure:
        return made("False", cond.DOWNLOADING, f"Job {name} is retrying: {failure}")
    so_far = f": {done}" if done else ""
    return made("False", cond.DOWNLOADING, f"Job {name} is fetching {uri} into the claim{so_far}")
