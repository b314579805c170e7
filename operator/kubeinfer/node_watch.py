"""The nodes as decisions read them: a list-and-watch of Node objects that keeps only their
facts (`kubeinfer.nodes.NodeFacts`), never the objects.

A Node is a few kilobytes of JSON (images, conditions, addresses) of which a decision reads a
handful of labels and quantities. kopf would hand every node event to a worker of its own
and keep per-object state; here one thread lists the nodes a page at a time, then follows
their watch, turns each object into its facts at once and passes only those on. After a
watch expired (410 Gone) or failed, the nodes are listed again and those no longer there
are reported gone.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from kubeinfer.kube import ApiError, Kube, api_message
from kubeinfer.nodes import NodeFacts, node_facts

NODES = "/api/v1/nodes"
# Each watch asks the server to end it after this long (then it starts again where it was).
WATCH_SECONDS = 300
RETRY_SECONDS = (1.0, 2.0, 5.0, 10.0, 20.0)
logger = logging.getLogger(__name__)

# Called with every node's facts as they change (None: the node is gone), then with the
# count after each full listing.
OnNode = Callable[[str, NodeFacts | None], object]
OnListed = Callable[[int], object]


class NodeWatch:
    def __init__(self, kube: Kube, on_node: OnNode, on_listed: OnListed) -> None:
        self._kube, self._on_node, self._on_listed = kube, on_node, on_listed
        self._known: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="node-watch", daemon=True)

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
                gone = isinstance(error, ApiError) and error.status == 410
                resource_version = ""  # list again: events may have been missed
                if gone:
                    continue
                delay = RETRY_SECONDS[min(failures, len(RETRY_SECONDS) - 1)]
                failures += 1
                logger.warning(
                    "watching nodes failed: %s; listing again in %.0fs", api_message(error), delay
                )
                self._stop.wait(delay)

    def _list(self) -> str:
        started = time.monotonic()
        seen: set[str] = set()
        resource_version = ""
        for page, version in self._kube.list(NODES):
            resource_version = version  # the last page's is the list's
            for node in page:
                name = node["metadata"]["name"]
                seen.add(name)
                self._on_node(name, node_facts(node))
        for name in self._known - seen:
            self._on_node(name, None)
        self._known = seen
        logger.info("listed %d nodes in %.2fs", len(seen), time.monotonic() - started)
        self._on_listed(len(seen))
        return resource_version

    def _follow(self, resource_version: str) -> str:
        """Applies the watch's events until the server ends it; returns where it stopped."""
        for event in self._kube.watch(NODES, resource_version, WATCH_SECONDS):
            if self._stop.is_set():
                break
            kind, obj = event.get("type"), event.get("object") or {}
            if kind == "ERROR":
                code = int(obj.get("code") or 500)
                raise ApiError(code, str(obj.get("reason") or ""), json.dumps(obj).encode())
            resource_version = _resource_version(obj) or resource_version
            if kind == "BOOKMARK":
                continue
            name = obj["metadata"]["name"]
            if kind == "DELETED":
                self._known.discard(name)
                self._on_node(name, None)
            else:
                self._known.add(name)
                self._on_node(name, node_facts(obj))
        return resource_version


def _resource_version(obj: dict[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("resourceVersion") or "")
