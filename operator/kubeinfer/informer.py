"""List-and-watch of one collection that keeps nothing of the objects but what the operator
reads from them (client-go's informer with a transform, in a thread).

A Deployment or a Node is several kilobytes of JSON of which a reconcile reads a few fields.
Each informer lists its collection a page at a time, then follows its watch, turns every
object into its summary (`transform`) the moment it is parsed and hands on only that; the
objects themselves never queue up and never enter a cache. After a watch expired (410 Gone)
or failed, the collection is listed again and the objects no longer there are reported
gone.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, Generic, TypeVar

from kubeinfer.kube import ApiError, Kube, api_message

T = TypeVar("T")
Ref = tuple[str, str]  # (namespace, name); namespace "" for cluster-scoped objects
# Each watch asks the server to end it after this long (then it starts again where it was).
WATCH_SECONDS = 300
RETRY_SECONDS = (1.0, 2.0, 5.0, 10.0, 20.0)
logger = logging.getLogger(__name__)


class Informer(Generic[T]):
    """`on_change(ref, summary)` for every object as it is listed or changes, with None when
    it is gone; `on_listed(count)` after each full listing. Both run in the informer's
    thread: hand them on to the event loop."""

    def __init__(
        self,
        kube: Kube,
        path: str,
        transform: Callable[[Mapping[str, Any]], T],
        on_change: Callable[[Ref, T | None], object],
        on_listed: Callable[[int], object],
        *,
        selector: str | None = None,
    ) -> None:
        self._kube, self._path, self._transform = kube, path, transform
        self._on_change, self._on_listed = on_change, on_listed
        self._query = {"labelSelector": selector} if selector else {}
        self._known: set[Ref] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"watch {path}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        failures = 0
        resource_version = ""
        while not self._stop.is_set():
            try:
                if not resource_version:
                    resource_version = self._list()
                resource_version = self._follow(resource_version)
                failures = 0
            except Exception as error:
                resource_version = ""  # list again: events may have been missed
                if isinstance(error, ApiError) and error.status == 410:
                    continue
                delay = RETRY_SECONDS[min(failures, len(RETRY_SECONDS) - 1)]
                failures += 1
                logger.warning(
                    "watching %s failed: %s; listing again in %.0fs",
                    self._path,
                    api_message(error),
                    delay,
                )
                self._stop.wait(delay)

    def _list(self) -> str:
        started = time.monotonic()
        seen: set[Ref] = set()
        resource_version = ""
        for page, version in self._kube.list(self._path, self._query):
            resource_version = version  # the last page's is the list's
            for obj in page:
                ref = _ref(obj)
                seen.add(ref)
                self._on_change(ref, self._transform(obj))
        for ref in self._known - seen:
            self._on_change(ref, None)
        self._known = seen
        logger.info("listed %d in %s in %.2fs", len(seen), self._path, time.monotonic() - started)
        self._on_listed(len(seen))
        return resource_version

    def _follow(self, resource_version: str) -> str:
        """Applies the watch's events until the server ends it; returns where it stopped."""
        query = {**self._query, "allowWatchBookmarks": "true"}
        for event in self._kube.watch(self._path, resource_version, WATCH_SECONDS, query):
            if self._stop.is_set():
                break
            kind, obj = event.get("type"), event.get("object") or {}
            if kind == "ERROR":
                code = int(obj.get("code") or 500)
                raise ApiError(code, str(obj.get("reason") or ""), json.dumps(obj).encode())
            meta = obj.get("metadata") or {}
            resource_version = meta.get("resourceVersion") or resource_version
            if kind == "BOOKMARK":
                continue
            ref = _ref(obj)
            if kind == "DELETED":
                self._known.discard(ref)
                self._on_change(ref, None)
            else:
                self._known.add(ref)
                self._on_change(ref, self._transform(obj))
        return resource_version


def _ref(obj: Mapping[str, Any]) -> Ref:
    meta = obj["metadata"]
    return str(meta.get("namespace") or ""), str(meta["name"])
