"""Reading the engine's output: pass it through and act on known failures.

``EngineWatcher.feed`` takes one line of engine output; ``tee_fd`` captures a file
descriptor the in-process engine (llama.cpp) writes to, for the same treatment.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from .diagnosis import Diagnosis, diagnose
from .logs import get_logger
from .metrics import RuntimeMetrics
from .termination import write_termination_message

log = get_logger("watch")
# How long the engine-output reader waits between reads: output is passed on and diagnosed
# at most this late, and the reader wakes up at most 20 times a second.
BATCH_SECONDS = 0.05


@dataclass
class EngineWatcher:
    metrics: RuntimeMetrics
    termination_path: str
    last: Diagnosis | None = field(default=None, init=False)

    def feed(self, line: str) -> None:
        found = diagnose(line)
        if found is None:
            return
        self.metrics.diagnoses.labels(found.kind).inc()
        if found != self.last:  # one log line per change, not per failing request
            log.error("diagnosis: %s", found.line())
            write_termination_message(self.termination_path, found.line())
        self.last = found


def pump(read_fd: int, write_fd: int, on_line: Callable[[str], None]) -> None:
    """Copy bytes from read_fd to write_fd unchanged, handing each complete line on.

    It reads in batches: llama.cpp logs several lines per request, and waking up for each
    one takes CPU from the engine's own threads (about 4% of tokens/s on 2 cores)."""
    pending = b""
    while chunk := os.read(read_fd, 65536):
        os.write(write_fd, chunk)
        pending += chunk
        *lines, pending = pending.split(b"\n")
        for raw in lines:
            on_line(raw.decode("utf-8", "replace"))
        time.sleep(BATCH_SECONDS)  # the pipe holds what arrives meanwhile
    if pending:
        on_line(pending.decode("utf-8", "replace"))


@contextmanager
def tee_fd(fd: int, on_line: Callable[[str], None]) -> Iterator[None]:
    """Route everything written to ``fd`` through ``on_line`` while still writing it out.

    Native code (llama.cpp's log) writes to the fd directly, so Python-level redirection
    would miss it; a pipe swapped in with dup2 sees every byte.
    """
    original = os.dup(fd)
    read_fd, write_fd = os.pipe()
    os.dup2(write_fd, fd)
    os.close(write_fd)
    reader = threading.Thread(
        target=pump, args=(read_fd, original, on_line), name="engine-output", daemon=True
    )
    reader.start()
    try:
        yield
    finally:
        os.dup2(original, fd)  # closes the pipe's last write end: the reader sees EOF
        reader.join(timeout=5)
        os.close(read_fd)
        os.close(original)
