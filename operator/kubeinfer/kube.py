"""The operator's writes to the Kubernetes API: server-side apply of children, status patches.

A thin layer over the official client; every call skips response deserialisation (the
operator reads the cluster through its watches, never through these replies).
"""

from __future__ import annotations

from typing import Any

from kubernetes import client, config

from kubeinfer.api.v1alpha1 import GROUP, PLURAL, VERSION

FIELD_MANAGER = "kubeinfer"
_APPLY = "application/apply-patch+yaml"
_MERGE = "application/merge-patch+json"


class Kube:
    def __init__(self, api_client: client.ApiClient) -> None:
        self._core = client.CoreV1Api(api_client)
        self._apps = client.AppsV1Api(api_client)
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

    def apply(self, obj: dict[str, Any]) -> None:
        """Server-side apply as the kubeinfer field manager (idempotent)."""
        meta = obj["metadata"]
        method = {
            "ConfigMap": self._core.patch_namespaced_config_map,
            "Service": self._core.patch_namespaced_service,
            "Deployment": self._apps.patch_namespaced_deployment,
        }[obj["kind"]]
        _release(
            method(
                meta["name"],
                meta["namespace"],
                obj,
                field_manager=FIELD_MANAGER,
                force=True,
                _content_type=_APPLY,
                _preload_content=False,
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


def _release(response: Any) -> None:
    """Hands the connection back to the pool: an unread reply keeps it checked out, and the
    next call would open (and TLS-handshake) a new one."""
    response.drain_conn()
    response.release_conn()
