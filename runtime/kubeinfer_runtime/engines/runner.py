"""What every engine run shares: readiness, diagnosis of the engine's output, signals.

Engines other than llama.cpp run as a child process rather than through ``os.execvp``.
Exec would hand signals to the engine for free, but the runtime would be gone: nobody to
read the engine's output for the termination message, nor to serve the runtime's ready
metric. So the child gets SIGTERM/SIGINT forwarded, its output is passed through line by
line (and diagnosed), and the runtime exits with the child's code. Requests never pass
through the runtime: clients reach the engine's port directly.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..logs import get_logger
from ..metrics import RuntimeMetrics
from ..readiness import wait_until_ready
from ..termination import write_termination_message
from ..watch import EngineWatcher, pump, tee_fd

log = get_logger("runner")


@dataclass
class RunContext:
    metrics: RuntimeMetrics
    watcher: EngineWatcher
    health_url: str
    started: float = field(default_factory=time.monotonic)

    def mark_ready(self) -> None:
        elapsed = time.monotonic() - self.started
        self.metrics.ready.set(1)
        self.metrics.time_to_ready.set(elapsed)
        log.info("engine ready after %.2f s", elapsed)

    def engine_failed(self, what: str) -> None:
        """A failure no diagnosis explained still leaves a termination message."""
        if self.watcher.last is None:
            message = f"{what} — see the container log for the engine's own error"
            log.error("%s", message)
            write_termination_message(self.watcher.termination_path, message)

    @contextmanager
    def engine_output_on_stderr(self, *also: Callable[[str], None]) -> Iterator[None]:
        """For in-process engines: diagnose everything written to fd 2 (and hand each line
        to ``also``, the engine's own readers)."""

        def feed(line: str) -> None:
            self.watcher.feed(line)
            for reader in also:
                reader(line)

        sys.stderr.flush()
        with tee_fd(2, feed):
            yield


@contextmanager
def handle_signals(handler: Callable[[int, Any], None]) -> Iterator[None]:
    """SIGTERM and SIGINT go to ``handler`` inside the block, as before outside it."""
    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def executable(name: str) -> str:
    """A console script from this environment first (venvs run without PATH set up)."""
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.exists() else (shutil.which(name) or name)


def run_command(argv: list[str], ctx: RunContext, cwd: Path | None = None) -> int:
    """Run the engine as a child; forward signals; exit code as a shell would report it."""
    argv = [executable(argv[0]), *argv[1:]]
    log.info("starting: %s", " ".join(argv))
    read_fd, write_fd = os.pipe()
    try:
        child = subprocess.Popen(
            argv, stdout=write_fd, stderr=write_fd, stdin=subprocess.DEVNULL, cwd=cwd
        )
    except OSError as err:
        os.close(read_fd)
        os.close(write_fd)
        log.error("cannot start %s: %s", argv[0], err)
        return 127
    os.close(write_fd)

    stopping = False

    def forward(signum: int, _frame: Any) -> None:
        nonlocal stopping
        stopping = True
        log.info("forwarding %s to the engine", signal.Signals(signum).name)
        child.send_signal(signum)

    reader = threading.Thread(
        target=pump, args=(read_fd, sys.stdout.fileno(), ctx.watcher.feed), daemon=True
    )
    reader.start()
    with handle_signals(forward):
        if wait_until_ready(ctx.health_url, alive=lambda: child.poll() is None, interval=0.25):
            ctx.mark_ready()
        code = child.wait()
    reader.join(timeout=5)
    os.close(read_fd)
    ctx.metrics.ready.set(0)
    log.info("engine exited with code %d", code)
    code = 128 - code if code < 0 else code
    if code != 0 and not stopping:
        ctx.engine_failed(f"{Path(argv[0]).name} exited with code {code}")
    return code
