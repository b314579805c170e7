"""What the informers hold of the cluster, as reconciles read it (kubeinfer.informer).

Each kind is reduced to its summary when it is parsed (`summarize`); `Watched.update` files
the summary (None: the object is gone) and says which ModelDeployments or model caches it
concerns. No kopf, no I/O: the handlers feed it, tests drive it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from kubeinfer.cache import JobSummary, summarize_job
from kubeinfer.drift import ChildState, child_state
from kubeinfer.informer import Ref
from kubeinfer.kube import CHILD_KINDS
from kubeinfer.workload import (
    DeploymentSummary,
    PodSummary,
    summarize_deployment,
    summarize_pod,
)

Key = tuple[str, str]  # (namespace, name) of a ModelDeployment or a model cache
INSTANCE = "app.kubernetes.io/instance"
MANAGED = "app.kubernetes.io/managed-by=kubeinfer"
# The collections of kubeinfer's children, pods and model caches (all labelled MANAGED).
_COLLECTIONS = {
    "Deployment": ("/apis/apps/v1", "deployments"),
    "Service": ("/api/v1", "services"),
    "Pod": ("/api/v1", "pods"),
    "Job": ("/apis/batch/v1", "jobs"),
    "PersistentVolumeClaim": ("/api/v1", "persistentvolumeclaims"),
}
KINDS = tuple(_COLLECTIONS)


def collection(kind: str, namespace: str | None = None) -> str:
    """The path to list and watch `kind` in one namespace, or in all."""
    group, plural = _COLLECTIONS[kind]
    return f"{group}/namespaces/{namespace}/{plural}" if namespace else f"{group}/{plural}"


@dataclass(frozen=True)
class Summary:
    """One object as kubeinfer keeps it: whose it is (the instance label: a ModelDeployment,
    or a model cache for its PVC, Job and download pods) and what reconciles read."""

    owner: str
    child: ChildState | None = None  # Deployment, Service
    deployment: DeploymentSummary | None = None
    pod: PodSummary | None = None
    job: JobSummary | None = None


def summarize(kind: str, obj: Mapping[str, Any]) -> Summary:
    labels = (obj.get("metadata") or {}).get("labels") or {}
    owner = str(labels.get(INSTANCE) or "")
    if kind == "Deployment":
        return Summary(owner, child_state(obj), summarize_deployment(obj))
    if kind == "Service":
        return Summary(owner, child_state(obj))
    if kind == "Pod":
        return Summary(owner, pod=summarize_pod(obj))
    if kind == "Job":
        return Summary(owner, job=summarize_job(obj))
    return Summary(owner)  # a model cache's PVC: its events only refresh the cache's users


@dataclass
class Watched:
    children: dict[tuple[str, str, str], ChildState] = field(default_factory=dict)
    deployments: dict[Key, DeploymentSummary] = field(default_factory=dict)
    pods: dict[Key, dict[str, PodSummary]] = field(default_factory=dict)  # by owner, name
    jobs: dict[Key, JobSummary] = field(default_factory=dict)
    # Whose each object is, for a deletion (reported by reference only).
    owners: dict[tuple[str, str, str], Key] = field(default_factory=dict)

    def update(self, kind: str, ref: Ref, summary: Summary | None) -> Key | None:
        """Files one object's summary (None: gone); returns the owner it concerns."""
        at = (kind, *ref)
        before = self.owners.get(at)
        owner = (ref[0], summary.owner) if summary else before
        if owner is None:
            return None  # gone, and never seen
        if before is not None and before != owner:
            self.update(kind, ref, None)  # relabelled: no longer its former owner's
        if summary is None:
            self.owners.pop(at, None)
        else:
            self.owners[at] = owner
        if kind in CHILD_KINDS:
            self._put(self.children, (kind, *owner), summary and summary.child)
        if kind == "Deployment":
            self._put(self.deployments, owner, summary and summary.deployment)
        elif kind == "Pod":
            pods = self.pods.setdefault(owner, {})
            self._put(pods, ref[1], summary and summary.pod)
            if not pods:
                del self.pods[owner]
        elif kind == "Job":
            self._put(self.jobs, ref, summary and summary.job)
        return owner

    def live(self, key: Key) -> dict[str, ChildState]:
        """The children the informers hold, by kind."""
        found = ((kind, self.children.get((kind, *key))) for kind in CHILD_KINDS)
        return {kind: state for kind, state in found if state is not None}

    def pods_of(self, key: Key) -> tuple[PodSummary, ...]:
        return tuple(self.pods.get(key, {}).values())

    @staticmethod
    def _put(store: dict[Any, Any], key: Any, value: Any) -> None:
        if value is None:
            store.pop(key, None)
        else:
            store[key] = value
