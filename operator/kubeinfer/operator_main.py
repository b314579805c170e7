"""Runs the kopf operator with kubeinfer's handlers (the `kubeinfer operator` command)."""

from __future__ import annotations

import logging

import kopf
from kopf._core.actions import execution
from kopf._core.intents import handlers as kopf_handlers

from kubeinfer import handlers  # noqa: F401  (importing registers the kopf handlers)
from kubeinfer.logs import Context, OperatorFormatter
from kubeinfer.redact import RedactingFilter
from kubeinfer.render import ImageSettings


def kopf_context() -> Context:
    """The object and handler kopf is running in this task (kopf 1.45's context variables,
    which it sets around each handler call). Indexing handlers are left out: kubeinfer starts
    long-lived tasks from them (the resync loop), which would inherit their first object."""
    handler = execution.handler_var.get(None)
    cause = execution.cause_var.get(None)
    if handler is None or isinstance(handler, kopf_handlers.IndexingHandler):
        return None, None
    body = getattr(cause, "body", None) or {}
    metadata = body.get("metadata", {})
    ref = {
        "kind": body.get("kind"),
        "namespace": metadata.get("namespace"),
        "name": metadata.get("name"),
    }
    return ref, str(handler.id)


def run_operator(
    *,
    namespaces: list[str],
    metrics_port: int,
    liveness_port: int,
    images: ImageSettings,
    workers: int,
    resync_seconds: float,
) -> None:
    kopf.configure(log_format=kopf.LogFormat.PLAIN)
    # kopf's per-object INFO lines are one "Handler 'on_model_deployment' succeeded" per
    # event (thousands an hour, and their records cost CPU even when filtered out); its
    # warnings and errors about an object stay.
    logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    for handler in logging.getLogger().handlers:
        handler.setFormatter(OperatorFormatter(kopf_context))
        handler.addFilter(RedactingFilter())
    kopf.run(
        clusterwide=not namespaces,
        namespaces=namespaces,
        # One replica (Recreate): no peering objects to create or to block on.
        standalone=True,
        liveness_endpoint=f"http://0.0.0.0:{liveness_port}/healthz",
        memo=kopf.Memo(
            images=images,
            metrics_port=metrics_port,
            workers=workers,
            resync_seconds=resync_seconds,
            namespaced=bool(namespaces),
            namespaces=namespaces,
        ),
    )
