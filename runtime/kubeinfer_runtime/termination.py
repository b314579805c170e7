"""Writing the container's termination message, which the operator reads into a condition."""

from __future__ import annotations

from pathlib import Path

from .logs import get_logger

log = get_logger("termination")


def write_termination_message(path: str, message: str) -> None:
    # Kubernetes reads at most 4 KiB; one line is the contract.
    text = message.replace("\n", " ").strip()[:4000] + "\n"
    try:
        Path(path).write_text(text, encoding="utf-8")
    except OSError as err:  # a missing or read-only path must not take the engine down
        log.warning("could not write the termination message to %s: %s", path, err)
