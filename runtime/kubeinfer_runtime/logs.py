"""The runtime's one logging set-up.

The runtime's own records go to a private duplicate of stderr, so that when the engine
runs in-process (llama.cpp) and fd 2 is redirected into the diagnosis pipe, the runtime
never reads, or diagnoses, its own lines. Credentials are masked in every record.
"""

from __future__ import annotations

import logging
import os
import sys

from kubeinfer.redact import RedactingFilter

LOGGER_NAME = "kubeinfer_runtime"


def setup_logging(level: int = logging.INFO) -> None:
    stream = open(os.dup(sys.stderr.fileno()), "w", buffering=1, encoding="utf-8")  # noqa: SIM115
    handler = logging.StreamHandler(stream)
    handler.setFormatter(
        logging.Formatter("%(asctime)s %(levelname)s kubeinfer-runtime: %(message)s")
    )
    handler.addFilter(RedactingFilter())
    root = logging.getLogger(LOGGER_NAME)
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False


def get_logger(name: str) -> logging.Logger:
    return logging.getLogger(f"{LOGGER_NAME}.{name}")
