"""The operator's log lines: a timestamp, the object and the handler on every one."""

from __future__ import annotations

import contextvars
import io
import logging
import re
from types import SimpleNamespace
from typing import Any

import kopf
from kopf._core.actions import execution

from kubeinfer import handlers  # noqa: F401  (registers the handlers looked up below)
from kubeinfer.logs import RECONCILING, OperatorFormatter
from kubeinfer.operator_main import kopf_context

STAMP = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"


def _handler(handler_id: str) -> execution.Handler:
    registry = kopf.get_default_registry()
    for kind in (registry._changing, registry._watching, registry._indexing):
        for handler in kind.get_all_handlers():
            if handler.id == handler_id:
                return handler
    raise LookupError(handler_id)


def _log(formatter: OperatorFormatter, message: str, **extra: Any) -> str:
    stream = io.StringIO()
    sink = logging.StreamHandler(stream)
    sink.setFormatter(formatter)
    logger = logging.getLogger("kubeinfer.test_logs")
    logger.addHandler(sink)
    logger.propagate = False
    try:
        logger.warning(message, extra=extra)
    finally:
        logger.removeHandler(sink)
    return stream.getvalue().rstrip("\n")


def _in_handler(handler_id: str, body: dict[str, Any], message: str) -> str:
    """Logs as a line written while kopf runs `handler_id` for `body` (kopf sets these two
    context variables around every handler call)."""

    def run() -> str:
        execution.handler_var.set(_handler(handler_id))
        execution.cause_var.set(SimpleNamespace(body=body))  # type: ignore[arg-type]
        return _log(OperatorFormatter(kopf_context), message)

    return contextvars.copy_context().run(run)


def _body(kind: str, name: str) -> dict[str, Any]:
    return {"kind": kind, "metadata": {"namespace": "models", "name": name}}


def test_a_line_outside_any_handler_has_time_and_dashes() -> None:
    line = _log(OperatorFormatter(kopf_context), "watching started")
    assert re.fullmatch(
        rf"{STAMP} WARNING \[-\] \[-\] kubeinfer\.test_logs: watching started", line
    )


def test_a_line_in_a_handler_names_the_modeldeployment_and_the_handler() -> None:
    line = _in_handler("on_model_deployment", _body("ModelDeployment", "qwen"), "queued")
    assert re.fullmatch(
        rf"{STAMP} WARNING \[models/qwen\] \[on_model_deployment\] \S+: queued", line
    )


def test_a_line_in_a_queued_reconcile_names_the_modeldeployment_and_why() -> None:
    def in_reconcile() -> str:
        # Queued from a handler (for another object): the reconcile's own context wins.
        execution.handler_var.set(_handler("on_model_deployment"))
        execution.cause_var.set(SimpleNamespace(body=_body("ModelDeployment", "other")))  # type: ignore[arg-type]
        RECONCILING.set(({"namespace": "models", "name": "qwen"}, "refresh:child"))
        return _log(OperatorFormatter(kopf_context), "repairing: Deployment")

    line = contextvars.copy_context().run(in_reconcile)
    assert re.fullmatch(
        rf"{STAMP} WARNING \[models/qwen\] \[refresh:child\] \S+: repairing: Deployment", line
    )


def test_another_kind_is_named_with_its_kind() -> None:
    # kopf's handlers are the ModelDeployments' own now; the formatter still names any kind.
    line = _in_handler("on_model_deployment", _body("Pod", "qwen-7d9f"), "queued")
    assert "[Pod models/qwen-7d9f] [on_model_deployment]" in line


def test_lines_under_an_indexer_carry_no_object() -> None:
    # Long-lived tasks started from an indexer inherit its context: it names no object.
    line = _in_handler("md_index", _body("ModelDeployment", "first"), "resync")
    assert "[-] [-]" in line


def test_kopf_object_logger_lines_keep_their_object_and_name_the_handler() -> None:
    ref = {"kind": "ModelDeployment", "namespace": "models", "name": "qwen"}
    line = _log(OperatorFormatter(), "Handler 'on_spec' succeeded.", k8s_ref=ref)
    assert re.fullmatch(rf"{STAMP} WARNING \[models/qwen\] \[on_spec\] \S+: Handler .*", line)


def test_a_traceback_follows_its_line() -> None:
    stream = io.StringIO()
    sink = logging.StreamHandler(stream)
    sink.setFormatter(OperatorFormatter())
    logger = logging.getLogger("kubeinfer.test_logs.exc")
    logger.addHandler(sink)
    logger.propagate = False
    try:
        raise ValueError("boom")
    except ValueError:
        logger.exception("failed")
    finally:
        logger.removeHandler(sink)
    first, *rest = stream.getvalue().splitlines()
    assert re.fullmatch(rf"{STAMP} ERROR   \[-\] \[-\] \S+: failed", first)
    assert rest[-1] == "ValueError: boom"
