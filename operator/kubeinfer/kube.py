"""The operator's calls to the Kubernetes API: server-side apply of children, their reads when
a resync checks the cluster itself, status patches, and the node list-and-watch.

Plain HTTP over urllib3: the operator reads the cluster through its watches and sends small
JSON documents, so the official client's per-call validation and models are pure cost (and
its import alone is 20 MiB of the operator's memory). `login()` finds the credentials the
way the official client does (in a pod its service account, else the kubeconfig); kopf logs
in with the same ones.
"""

from __future__ import annotations

import base64
import os
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

import orjson
import urllib3
import yaml

from kubeinfer.api.v1alpha1 import GROUP, PLURAL, VERSION
from kubeinfer.drift import FIELD_MANAGER, adopted_managed_fields

_APPLY = "application/apply-patch+yaml"
_MERGE = "application/merge-patch+json"
_JSON_PATCH = "application/json-patch+json"
_STRATEGIC = "application/strategic-merge-patch+json"
CHILD_KINDS = ("Service", "Deployment")
_SERVICE_ACCOUNT = "/var/run/secrets/kubernetes.io/serviceaccount"
# Where each kind lives in the API (namespaced collections).
_COLLECTIONS = {
    "ConfigMap": "/api/v1/namespaces/{ns}/configmaps",
    "Service": "/api/v1/namespaces/{ns}/services",
    "PersistentVolumeClaim": "/api/v1/namespaces/{ns}/persistentvolumeclaims",
    "Pod": "/api/v1/namespaces/{ns}/pods",
    "Deployment": "/apis/apps/v1/namespaces/{ns}/deployments",
    "Job": "/apis/batch/v1/namespaces/{ns}/jobs",
    "ModelDeployment": f"/apis/{GROUP}/{VERSION}/namespaces/{{ns}}/{PLURAL}",
}
# Bound service-account tokens rotate (the kubelet rewrites the file): read it this often.
_TOKEN_SECONDS = 60.0


class ApiError(Exception):
    """A reply other than 2xx, with the API server's Status document when it sent one."""

    def __init__(self, status: int, reason: str, body: bytes) -> None:
        super().__init__(f"{status} {reason}")
        self.status, self.reason, self.body = status, reason, body

    @property
    def message(self) -> str:
        try:
            text = orjson.loads(self.body).get("message")
        except (ValueError, AttributeError):
            text = None
        return f"{text} ({self.status})" if text else f"{self.status} {self.reason}"


@dataclass(frozen=True)
class Credentials:
    """Where the API server is and how to prove who we are (one of token, client cert)."""

    server: str
    ca_path: str | None = None
    ca_data: bytes | None = None  # PEM
    insecure: bool = False
    token: str | None = None
    token_path: str | None = None  # read again now and then (rotated tokens)
    cert_path: str | None = None
    key_path: str | None = None
    default_namespace: str | None = None

    def current_token(self) -> str | None:
        if self.token_path:
            with open(self.token_path, encoding="utf-8") as file:
                return file.read().strip() or None
        return self.token


def login(kubeconfig: str | None = None) -> Credentials:
    """In a pod: its service account, and the API server's address from the environment (no
    cluster DNS needed); elsewhere: the current context of `kubeconfig`, $KUBECONFIG or
    ~/.kube/config."""
    host = os.environ.get("KUBERNETES_SERVICE_HOST")
    port = os.environ.get("KUBERNETES_SERVICE_PORT")
    token_path = f"{_SERVICE_ACCOUNT}/token"
    if host and port and os.path.exists(token_path) and not kubeconfig:
        host = f"[{host}]" if ":" in host else host
        with open(f"{_SERVICE_ACCOUNT}/namespace", encoding="utf-8") as file:
            namespace = file.read().strip() or None
        return Credentials(
            server=f"https://{host}:{port}",
            ca_path=f"{_SERVICE_ACCOUNT}/ca.crt",
            token_path=token_path,
            default_namespace=namespace,
        )
    return _from_kubeconfig(kubeconfig)


def _from_kubeconfig(kubeconfig: str | None) -> Credentials:
    paths = kubeconfig or os.environ.get("KUBECONFIG") or os.path.expanduser("~/.kube/config")
    merged: dict[str, dict[str, Any]] = {"contexts": {}, "clusters": {}, "users": {}}
    current = None
    for path in filter(None, paths.split(os.pathsep)):
        with open(os.path.expanduser(path), encoding="utf-8") as file:
            config = yaml.safe_load(file) or {}
        current = current or config.get("current-context")
        for section, key in (("contexts", "context"), ("clusters", "cluster"), ("users", "user")):
            for item in config.get(section) or ():  # the first file to name one wins
                merged[section].setdefault(item["name"], item.get(key) or {})
    if not current or current not in merged["contexts"]:
        raise RuntimeError(f"kubeconfig {paths}: no current context")
    context = merged["contexts"][current]
    cluster = merged["clusters"].get(context.get("cluster"), {})
    user = merged["users"].get(context.get("user"), {})
    if "exec" in user or "auth-provider" in user:
        raise RuntimeError(
            f"kubeconfig {paths}: user {context.get('user')} logs in through a plugin; "
            "give the operator a token or a client certificate"
        )
    ca_data = cluster.get("certificate-authority-data")
    return Credentials(
        server=cluster["server"].rstrip("/"),
        ca_path=cluster.get("certificate-authority"),
        ca_data=base64.b64decode(ca_data) if ca_data else None,
        insecure=bool(cluster.get("insecure-skip-tls-verify")),
        token=user.get("token"),
        cert_path=user.get("client-certificate") or _spill(user.get("client-certificate-data")),
        key_path=user.get("client-key") or _spill(user.get("client-key-data")),
        default_namespace=context.get("namespace"),
    )


def _spill(data: str | None) -> str | None:
    """urllib3 takes client certificates from files only: inline ones go to a private one."""
    if not data:
        return None
    fd, path = tempfile.mkstemp(prefix="kubeinfer-", suffix=".pem")
    with os.fdopen(fd, "wb") as file:
        file.write(base64.b64decode(data))
    return path


class Kube:
    def __init__(self, credentials: Credentials, pool_size: int = 32) -> None:
        self.credentials = credentials
        self._server = credentials.server.rstrip("/")
        tls: dict[str, Any] = {}
        if self._server.startswith("https:"):
            tls = {
                "cert_reqs": "CERT_NONE" if credentials.insecure else "CERT_REQUIRED",
                "ca_certs": credentials.ca_path,
                "ca_cert_data": credentials.ca_data.decode() if credentials.ca_data else None,
                "cert_file": credentials.cert_path,
                "key_file": credentials.key_path,
            }
        # The thread pool runs many reconciles at once; they share these connections.
        self._http = urllib3.PoolManager(num_pools=2, maxsize=pool_size, block=False, **tls)
        self._token_lock = threading.Lock()
        self._token: tuple[float, str | None] = (0.0, None)

    @classmethod
    def connect(cls) -> Kube:
        return cls(login())

    def _headers(self, content_type: str | None) -> dict[str, str]:
        headers = {"Accept": "application/json", "User-Agent": "kubeinfer-operator"}
        if content_type:
            headers["Content-Type"] = content_type
        token = self._current_token()
        if token:
            headers["Authorization"] = f"Bearer {token}"
        return headers

    def _current_token(self, renew: bool = False) -> str | None:
        with self._token_lock:
            read_at = self._token[0]
            if renew or time.monotonic() - read_at > _TOKEN_SECONDS:
                self._token = (time.monotonic(), self.credentials.current_token())
            return self._token[1]

    def request(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, Any] | None = None,
        body: Any = None,
        content_type: str | None = None,
        stream: bool = False,
        timeout: float | None = 30,
    ) -> urllib3.BaseHTTPResponse:
        """One call; raises ApiError on a non-2xx reply. With `stream`, the caller reads the
        reply and releases it."""
        url = self._server + path + (f"?{urlencode(query)}" if query else "")
        data = None if body is None else orjson.dumps(body)
        for attempt in (1, 2):
            response = self._http.request(
                method,
                url,
                body=data,
                headers=self._headers(content_type if data is not None else None),
                preload_content=not stream,
                timeout=urllib3.Timeout(connect=10, read=timeout),
                retries=False,
            )
            if response.status == 401 and attempt == 1 and self.credentials.token_path:
                response.release_conn()
                self._current_token(renew=True)  # rotated since the last read
                continue
            break
        if response.status >= 300:
            payload = response.read() if stream else response.data
            response.release_conn()
            raise ApiError(response.status, response.reason or "", payload)
        return response

    def _json(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        response = self.request(method, path, **kwargs)
        return dict(orjson.loads(response.data)) if response.data else {}

    def apply(self, obj: Mapping[str, Any]) -> None:
        """Server-side apply as the kubeinfer field manager (idempotent)."""
        meta = obj["metadata"]
        self.request(
            "PATCH",
            _path(obj["kind"], meta["namespace"], meta["name"]),
            query={"fieldManager": FIELD_MANAGER, "force": "true"},
            body=obj,
            content_type=_APPLY,
        )

    def create(self, obj: Mapping[str, Any]) -> None:
        """A plain create as the kubeinfer field manager: cheaper for the API server than an
        apply, and it fails (409) where the name is taken, with no read before it."""
        meta = obj["metadata"]
        self.request(
            "POST",
            _path(obj["kind"], meta["namespace"]),
            query={"fieldManager": FIELD_MANAGER},
            body=obj,
        )

    def read(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        """The live object as plain JSON, or None when there is none."""
        try:
            return self._json("GET", _path(kind, namespace, name))
        except ApiError as error:
            if error.status == 404:
                return None
            raise

    def list(
        self, path: str, query: Mapping[str, Any] | None = None, page: int = 250
    ) -> Iterator[tuple[list[dict[str, Any]], str]]:
        """A collection page by page (a few hundred objects in memory at a time), each page
        with the list's resourceVersion (the last one's is where a watch starts)."""
        token = None
        while True:
            paging = {"limit": page, **({"continue": token} if token else {})}
            found = self._json("GET", path, query={**(query or {}), **paging})
            meta = found.get("metadata") or {}
            yield found.get("items") or [], str(meta.get("resourceVersion") or "")
            token = meta.get("continue")
            if not token:
                return

    def watch(
        self,
        path: str,
        resource_version: str,
        timeout_seconds: int = 300,
        query: Mapping[str, Any] | None = None,
    ) -> Iterator[dict[str, Any]]:
        """The events of a collection from a resourceVersion on, as they come (one JSON
        document a line), bookmarks included; ends when the server closes the watch."""
        query = {
            **(query or {}),
            "watch": "true",
            "resourceVersion": resource_version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": timeout_seconds,
        }
        response = self.request("GET", path, query=query, stream=True, timeout=timeout_seconds + 30)
        try:
            pending = b""
            for chunk in response.stream(64 * 1024, decode_content=True):
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    if line.strip():
                        yield orjson.loads(line)
        finally:
            response.release_conn()

    def ensure_shared(self, obj: Mapping[str, Any]) -> dict[str, Any] | None:
        """Creates a shared object (the model cache's PVC or Job) unless it exists, and makes
        sure it lists this object's owner (a strategic merge adds to ownerReferences, keyed by
        uid). Returns the live object (the one created, or the one there already), None when
        it was deleted in between."""
        kind, meta = obj["kind"], obj["metadata"]
        try:
            return self._json("POST", _path(kind, meta["namespace"]), body=obj)
        except ApiError as error:
            if error.status != 409:
                raise
        live = self.read(kind, meta["namespace"], meta["name"])
        if live is None:
            return None  # deleted in between: the next reconcile creates it
        owners = {o.get("uid") for o in live["metadata"].get("ownerReferences") or ()}
        labels = live["metadata"].get("labels") or {}
        mine = [o for o in meta.get("ownerReferences", ()) if o["uid"] not in owners]
        if mine and labels.get("app.kubernetes.io/managed-by") == "kubeinfer":
            self.request(
                "PATCH",
                _path(kind, meta["namespace"], meta["name"]),
                body={"metadata": {"ownerReferences": mine}},
                content_type=_STRATEGIC,
            )
        return live

    def annotate_claim(self, namespace: str, name: str, annotations: dict[str, str]) -> None:
        """Adds annotations to a PVC (the model cache's: filled)."""
        self.request(
            "PATCH",
            _path("PersistentVolumeClaim", namespace, name),
            body={"metadata": {"annotations": annotations}},
            content_type=_MERGE,
        )

    def log_tail(self, namespace: str, pod: str, container: str, lines: int) -> str:
        """The last lines of a container's log (the download's progress), "" when unreadable."""
        try:
            response = self.request(
                "GET",
                _path("Pod", namespace, pod) + "/log",
                query={"container": container, "tailLines": lines},
            )
        except (ApiError, urllib3.exceptions.HTTPError):
            # Not started yet, gone, or its node's kubelet unreachable: progress is a nicety,
            # never a reason for a reconcile to fail.
            return ""
        return response.data.decode("utf-8", "replace")

    def delete(self, kind: str, namespace: str, name: str, uid: str) -> None:
        """Deletes that object (by uid; a Job with its pods); gone or replaced already is
        fine."""
        body = {"propagationPolicy": "Background", "preconditions": {"uid": uid}}
        try:
            self.request("DELETE", _path(kind, namespace, name), body=body)
        except ApiError as error:
            if error.status not in (404, 409):
                raise

    def delete_job(self, namespace: str, name: str, uid: str) -> None:
        """A failed download's Job and its pods, to run it again."""
        self.delete("Job", namespace, name, uid)

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
        self.request("PATCH", _path(kind, namespace, name), body=patch, content_type=_JSON_PATCH)

    def patch_status(self, namespace: str, name: str, patch: dict[str, Any]) -> None:
        self.request(
            "PATCH",
            _path("ModelDeployment", namespace, name) + "/status",
            body={"status": patch},
            content_type=_MERGE,
        )


def _path(kind: str, namespace: str, name: str | None = None) -> str:
    collection = _COLLECTIONS[kind].format(ns=quote(namespace, safe=""))
    return f"{collection}/{quote(name, safe='')}" if name else collection


def api_message(error: Exception) -> str:
    """The API server's own message (its Status reply), else the error as text."""
    if isinstance(error, ApiError):
        return error.message
    return f"{type(error).__name__}: {error}"
