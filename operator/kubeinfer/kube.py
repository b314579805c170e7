"""The operator's calls to the Kubernetes API: server-side apply of children, their reads when
a resync checks the cluster itself, and status patches.

A thin layer over the official client; writes skip response deserialisation (the operator
reads the cluster through its watches, never through those replies).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from kubeinfer.api.v1alpha1 import GROUP, PLURAL, VERSION
from kubeinfer.drift import FIELD_MANAGER, adopted_managed_fields

_APPLY = "application/apply-patch+yaml"
_MERGE = "application/merge-patch+json"
_JSON_PATCH = "application/json-patch+json"
_STRATEGIC = "application/strategic-merge-patch+json"
CHILD_KINDS = ("ConfigMap", "Service", "Deployment")


class Kube:
    def __init__(self, api_client: client.ApiClient) -> None:
        self._core = client.CoreV1Api(api_client)
        self._apps = client.AppsV1Api(api_client)
        self._batch = client.BatchV1Api(api_client)
        self._custom = client.CustomObjectsApi(api_client)

    @classmethod
    def connect(cls) -> Kube:
        """In a pod: its service account; elsewhere: the usual kubeconfig (KUBECONFIG)."""
        try:
            config.load_incluster_config()  # type: ignore[no-untyped-call]
        except config.ConfigException:
            config.load_kube_config()  # type: ignore[no-untyped-call]
        configuration = client.Configuration.get_default_copy()
        # The thread pool runs many reconciles at once; share connections among them.
        configuration.connection_pool_maxsize = 32
        return cls(client.ApiClient(configuration))

    def _patch(self, kind: str) -> Callable[..., Any]:
        return {
            "ConfigMap": self._core.patch_namespaced_config_map,
            "Service": self._core.patch_namespaced_service,
            "Deployment": self._apps.patch_namespaced_deployment,
        }[kind]

    def apply(self, obj: Mapping[str, Any]) -> None:
        """Server-side apply as the kubeinfer field manager (idempotent)."""
        meta = obj["metadata"]
        _release(
            self._patch(obj["kind"])(
                meta["name"],
                meta["namespace"],
                obj,
                field_manager=FIELD_MANAGER,
                force=True,
                _content_type=_APPLY,
                _preload_content=False,
            )
        )

    def read(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        """The live object as plain JSON, or None when there is none."""
        method = {
            "ConfigMap": self._core.read_namespaced_config_map,
            "Service": self._core.read_namespaced_service,
            "Deployment": self._apps.read_namespaced_deployment,
            "PersistentVolumeClaim": self._core.read_namespaced_persistent_volume_claim,
            "Job": self._batch.read_namespaced_job,
        }[kind]
        try:
            response: Any = method(name, namespace, _preload_content=False)
        except ApiException as error:
            if error.status == 404:
                return None
            raise
        try:
            return dict(json.loads(response.data))
        finally:
            response.release_conn()

    def ensure_shared(self, obj: Mapping[str, Any]) -> dict[str, Any] | None:
        """Creates a shared object (the model cache's PVC or Job) unless it exists, and makes
        sure it lists this object's owner (a strategic merge adds to ownerReferences, keyed by
        uid). Returns the live object (the one created, or the one there already), None when
        it was deleted in between."""
        kind, meta = obj["kind"], obj["metadata"]
        calls: dict[str, tuple[Callable[..., Any], Callable[..., Any]]] = {
            "PersistentVolumeClaim": (
                self._core.create_namespaced_persistent_volume_claim,
                self._core.patch_namespaced_persistent_volume_claim,
            ),
            "Job": (self._batch.create_namespaced_job, self._batch.patch_namespaced_job),
        }
        create, patch = calls[kind]
        try:
            response = create(meta["namespace"], obj, _preload_content=False)
            try:
                return dict(json.loads(response.data))
            finally:
                response.release_conn()
        except ApiException as error:
            if error.status != 409:
                raise
        live = self.read(kind, meta["namespace"], meta["name"])
        if live is None:
            return None  # deleted in between: the next reconcile creates it
        owners = {o.get("uid") for o in live["metadata"].get("ownerReferences") or ()}
        labels = live["metadata"].get("labels") or {}
        mine = [o for o in meta.get("ownerReferences", ()) if o["uid"] not in owners]
        if mine and labels.get("app.kubernetes.io/managed-by") == "kubeinfer":
            body = {"metadata": {"ownerReferences": mine}}
            _release(
                patch(
                    meta["name"],
                    meta["namespace"],
                    body,
                    _content_type=_STRATEGIC,
                    _preload_content=False,
                )
            )
        return live

    def annotate_claim(self, namespace: str, name: str, annotations: dict[str, str]) -> None:
        """Adds annotations to a PVC (the model cache's: filled)."""
        _release(
            self._core.patch_namespaced_persistent_volume_claim(
                name,
                namespace,
                {"metadata": {"annotations": annotations}},
                _content_type=_MERGE,
                _preload_content=False,
            )
        )

    def log_tail(self, namespace: str, pod: str, container: str, lines: int) -> str:
        """The last lines of a container's log (the download's progress), "" when unreadable."""
        try:
            return str(
                self._core.read_namespaced_pod_log(
                    pod, namespace, container=container, tail_lines=lines
                )
            )
        except ApiException:
            # Not started yet, gone, or its node's kubelet unreachable: progress is a nicety,
            # never a reason for a reconcile to fail.
            return ""

    def delete_job(self, namespace: str, name: str, uid: str) -> None:
        """Deletes that Job (by uid) and its pods (a failed download, to run it again); gone
        or replaced already is fine."""
        try:
            _release(
                self._batch.delete_namespaced_job(
                    name,
                    namespace,
                    body=client.V1DeleteOptions(
                        propagation_policy="Background",
                        preconditions=client.V1Preconditions(uid=uid),
                    ),
                    _preload_content=False,
                )
            )
        except ApiException as error:
            if error.status not in (404, 409):
                raise

    def reclaim_fields(self, obj: Mapping[str, Any]) -> None:
        """Hands the fields other managers own in the spec or data to kubeinfer, so that the
        next apply removes what kubeinfer's object leaves out. Guarded by the resourceVersion:
        a change in between fails this (409) instead of being taken over. kubeinfer's labels
        go back on at once (the admission policy lets the operator write only labelled
        objects)."""
        kind, name, namespace = obj["kind"], obj["metadata"]["name"], obj["metadata"]["namespace"]
        live = self.read(kind, namespace, name)
        if live is None:
            return
        meta = live["metadata"]
        labels = {**(meta.get("labels") or {}), **obj["metadata"].get("labels", {})}
        patch = [
            {"op": "test", "path": "/metadata/resourceVersion", "value": meta["resourceVersion"]},
            {
                "op": "replace",
                "path": "/metadata/managedFields",
                "value": adopted_managed_fields(meta.get("managedFields") or []),
            },
            {"op": "add", "path": "/metadata/labels", "value": labels},
        ]
        _release(
            self._patch(kind)(
                name, namespace, patch, _content_type=_JSON_PATCH, _preload_content=False
            )
        )

    def patch_status(self, namespace: str, name: str, patch: dict[str, Any]) -> None:
        _release(
            self._custom.patch_namespaced_custom_object_status(
                GROUP,
                VERSION,
                namespace,
                PLURAL,
                name,
                {"status": patch},
                _content_type=_MERGE,
                _preload_content=False,
            )
        )


def api_message(error: Exception) -> str:
    """The API server's own message (its Status reply), else the error as text."""
    if isinstance(error, ApiException):
        try:
            status = json.loads(error.body or "")
            message = status.get("message")
            if message:
                return f"{message} ({error.status})"
        except (ValueError, AttributeError):
            pass
        return f"{error.status} {error.reason}"
    return f"{type(error).__name__}: {error}"


def _release(response: Any) -> None:
    """Hands the connection back to the pool: an unread reply keeps it checked out, and the
    next call would open (and TLS-handshake) a new one."""
    response.drain_conn()
    response.release_conn()
