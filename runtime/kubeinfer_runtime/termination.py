"""Writing the container's termination message, which the operator reads into a condition."""

from __future__ import annotations

import os
from pathlib import Path

from kubeinfer.redact import redact, secret_values

from .logs import get_logger

log = get_logger("termination")


def write_termination_message(path: str, message: str) -> None:
    # Kubernetes reads at most 4 KiB; one line is the contract.
    # The operator copies it into a condition and an event: no credential may reach it.
    text = redact(message, secret_values(os.environ)).replace("\n", " ").strip()[:4000] + "\n"
    try:
        Path(path).write_text(text, encoding="utf-8")
    except OSError as err:  # a missing or read-only path must not take the engine down
        log.warning("could not write the termination message to %s: %s", path, err)
