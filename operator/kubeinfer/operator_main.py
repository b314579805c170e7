"""Runs the kopf operator with kubeinfer's handlers (the `kubeinfer operator` command)."""

from __future__ import annotations

import logging

import kopf

from kubeinfer import handlers  # noqa: F401  (importing registers the kopf handlers)
from kubeinfer.redact import RedactingFilter
from kubeinfer.render import ImageSettings


class _QuietWatchHandlers(logging.Filter):
    """Drops the per-event success lines of the watch handlers (thousands an hour)."""

    NOISY = (
        "Handler 'on_child_deleted' succeeded",
        "Handler 'on_node' succeeded",
        "Handler 'forget_deleted' succeeded",
    )

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(self.NOISY)


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
    for handler in logging.getLogger().handlers:
        handler.addFilter(_QuietWatchHandlers())
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
        ),
    )
