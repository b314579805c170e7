"""The model cache's state, from its PVC, its download Job and that Job's pods (pure).

The condition `ModelCache` says where the weights stand: `Downloading` while the Job runs
(with the bytes done and in all, from the progress lines at the tail of its log), `Ready`
once the claim is filled (its Job succeeded; the engine's Deployment is created only then),
and `DownloadFailed` with the runtime's own message (from the pod's termination message: no
token for a gated repo, no such repo, revision or file, a full volume) when it has failed.

The PVC records that it is filled (an annotation), so a Job deleted afterwards is not run
again, and each Job records the PVC it fills: a Job deleted while it runs is made again and
continues from the partial files on the claim; a PVC deleted by hand stays while pods use it
(Kubernetes' pvc-protection: the running engine pods keep serving from it, and ModelCache
says it is being deleted), then kubeinfer creates it again and fills it with a new Job.

A failed Job runs again on a timer (`next_try`): 1 min after its first failure, then 2, 4 …
up to 30 min. A refusal that cannot heal by itself (401/403: a gated repo without a token or
with one not allowed; 404: no such repo, revision or file; a full volume) waits the longest,
30 min, from the first failure: the operator reads no Secrets, so a fixed token is noticed
only by trying. Deleting the Job, or any spec change, tries at once.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from kubeinfer import conditions as cond
from kubeinfer.api.v1alpha1 import Condition, ConditionStatus
from kubeinfer.render.cache import ATTEMPT_ANNOTATION, CLAIM_UID_ANNOTATION
from kubeinfer.workload import PodSummary

# The runtime's progress lines (kubeinfer_runtime.model_source): the first names the total,
# later ones the bytes done.
_STARTED = re.compile(r"fetching \S+ \(\d+ files, ([\d.]+) MiB\)")
_DONE = re.compile(r"fetching \S+: ([\d.]+/[\d.]+ MiB(?: \(\d+%\))?)")
PROGRESS_LINES = 20
PROGRESS_SECONDS = 5.0  # how often a running download's progress is read
RETRY_FIRST_SECONDS = 60.0
RETRY_MAX_SECONDS = 1800.0
# The runtime's words (kubeinfer_runtime.model_source) for refusals that trying again, with
# the same spec and token, cannot change.
_PERMANENT = (
    " is gated and ",  # 401 GatedRepo
    "the hub refused access (",  # 401/403
    "no repo ",  # 404 RepoNotFound
    " has no revision ",  # 404 RevisionNotFound
    " has no file ",  # 404 EntryNotFound
    "the model volume is full",  # ENOSPC: only a bigger spec.model.cache.size helps
)


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
    uid: str = ""
    attempt: int = 1  # runs of the download so far, this Job included
    failed_at: datetime | None = None
    claim_uid: str = ""  # the claim it fills ("": made before kubeinfer recorded it)


def summarize_job(body: Mapping[str, Any]) -> JobSummary:
    meta, status = body.get("metadata") or {}, body.get("status") or {}
    finished = {
        c.get("type"): c for c in status.get("conditions") or () if c.get("status") == "True"
    }
    failed = finished.get("Failed") or {}
    annotations = meta.get("annotations") or {}
    attempt = str(annotations.get(ATTEMPT_ANNOTATION, "1"))
    when = failed.get("lastTransitionTime") or meta.get("creationTimestamp")
    return JobSummary(
        name=str(meta.get("name", "")),
        succeeded="Complete" in finished or int(status.get("succeeded") or 0) > 0,
        failed=bool(failed),
        message=str(failed.get("message") or failed.get("reason") or ""),
        uid=str(meta.get("uid", "")),
        attempt=int(attempt) if attempt.isdigit() and int(attempt) > 0 else 1,
        failed_at=datetime.fromisoformat(when) if failed and when else None,
        claim_uid=str(annotations.get(CLAIM_UID_ANNOTATION, "")),
    )


def failure(job: JobSummary, pods: Iterable[PodSummary]) -> str:
    """Why the download failed: the runtime's word, else the Job controller's."""
    found = next((p.failure for p in sorted(pods, key=lambda p: p.name) if p.failure), None)
    return found or job.message or "the download Job failed"


def permanent(why: str) -> bool:
    """A refusal that the same spec and token meet again, however often tried."""
    return any(words in why for words in _PERMANENT)


@dataclass(frozen=True)
class NextTry:
    delay: float  # seconds after the failure
    at: datetime


def next_try(job: JobSummary, why: str, now: datetime) -> NextTry:
    """When a failed download Job runs again: 1, 2, 4 … 30 min after it failed (doubling with
    each run), a permanent refusal only after 30 min."""
    if permanent(why):
        delay = RETRY_MAX_SECONDS
    else:
        delay = min(RETRY_FIRST_SECONDS * 2 ** (job.attempt - 1), RETRY_MAX_SECONDS)
    return NextTry(delay, (job.failed_at or now) + timedelta(seconds=delay))


def cache_condition(
    name: str,
    uri: str,
    job: JobSummary | None,
    pods: Iterable[PodSummary],
    *,
    filled: bool,
    deleting: bool = False,
    done: str | None = None,
    generation: int | None,
    now: datetime,
) -> Condition:
    def made(status: ConditionStatus, reason: str, message: str) -> Condition:
        return cond.condition(
            cond.MODEL_CACHE, status, reason, message, generation=generation, now=now
        )

    if filled:
        message = f"{uri} is in PersistentVolumeClaim {name}"
        if deleting:
            message += (
                " (being deleted: the running pods keep it until they stop, then kubeinfer "
                "creates it again and fills it)"
            )
        return made("True", cond.CACHE_READY, message)
    if deleting:
        return made(
            "False",
            cond.DOWNLOADING,
            f"PersistentVolumeClaim {name} is being deleted: kubeinfer creates it again and "
            f"fills it once no pod uses it",
        )
    pods = sorted(pods, key=lambda p: p.name)
    if job is not None and job.failed:
        why = failure(job, pods)
        retry = next_try(job, why, now)
        # Said from the failure, not from now: the message stays the same until the next run.
        return made(
            "False",
            cond.DOWNLOAD_FAILED,
            f"Job {name}: {why} (retrying in {retry.delay:.0f} s from the failure, at "
            f"{retry.at.astimezone(UTC):%Y-%m-%dT%H:%M:%SZ}; delete the Job, or change the "
            "spec, to try at once)",
        )
    retrying = next((p.failure for p in pods if p.failure), None)
    if retrying:
        return made("False", cond.DOWNLOADING, f"Job {name} is retrying: {retrying}")
    so_far = f": {done}" if done else ""
    return made("False", cond.DOWNLOADING, f"Job {name} is fetching {uri} into the claim{so_far}")
