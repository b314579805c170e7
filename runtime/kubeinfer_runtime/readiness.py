"""Waiting for the engine to answer its health check."""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from collections.abc import Callable


def local_url(host: str, port: int, path: str = "/health") -> str:
    """The URL the runtime itself uses to reach the engine it started."""
    if host in ("0.0.0.0", "", "*"):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}{path}"


def answers(url: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def wait_until_ready(
    url: str, *, alive: Callable[[], bool], timeout: float | None = None, interval: float = 0.05
) -> bool:
    """Poll ``url`` until it answers 200; False if the engine dies or time runs out."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while alive():
        if answers(url):
            return True
        if deadline is not None and time.monotonic() > deadline:
            return False
        time.sleep(interval)
    return False
