"""The operator's log line: time, level, the object and the handler, then the message.

    2026-12-01T18:30:00.123Z INFO    [default/qwen] [refresh:child] kubeinfer.reconcile: ...

The object and handler come from the record when kopf's object logger wrote it, otherwise
from the handler running when the line was logged (a callable the operator passes in, which
reads kopf's context); "-" where there is none (start-up, watch streams). Objects other than
ModelDeployments carry their kind ([Pod default/qwen-7d9f]): the event that led to the line.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

# (object reference as kopf writes it: kind, namespace, name; handler id), either unknown.
Context = tuple[Mapping[str, Any] | None, str | None]
MAIN_KIND = "ModelDeployment"
# kopf's own lines about a handler ("Handler 'on_spec' succeeded.") are written after it ran.
_KOPF_HANDLER_LINE = re.compile(r"^Handler '([^']+)'")


# Set by the operator around each reconcile it runs outside a kopf handler (its refresh
# queue): the ModelDeployment and why it is reconciled ("refresh:child").
RECONCILING: ContextVar[Context] = ContextVar("reconciling", default=(None, None))


def no_context() -> Context:
    return None, None


def object_label(ref: Mapping[str, Any] | None) -> str:
    if not ref or not ref.get("name"):
        return "-"
    namespace, name, kind = ref.get("namespace"), ref["name"], ref.get("kind")
    where = f"{namespace}/{name}" if namespace else str(name)
    return where if kind in (None, MAIN_KIND) else f"{kind} {where}"


class OperatorFormatter(logging.Formatter):
    def __init__(self, context: Callable[[], Context] = no_context) -> None:
        super().__init__()
        self._context = context

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        moment = datetime.fromtimestamp(record.created, UTC)
        return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")

    def format(self, record: logging.LogRecord) -> str:
        # A reconcile queued from a handler inherits that handler's context: its own names
        # the object and why it runs.
        ref, handler = RECONCILING.get()
        if ref is None and handler is None:
            ref, handler = self._context()
        ref = getattr(record, "k8s_ref", None) or ref
        message = record.getMessage()
        if handler is None and (match := _KOPF_HANDLER_LINE.match(message)):
            handler = match.group(1)
        line = (
            f"{self.formatTime(record)} {record.levelname:<7} [{object_label(ref)}] "
            f"[{handler or '-'}] {record.name}: {message}"
        )
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            line += "\n" + record.exc_text
        return line
