"""The refresh queue: when each ModelDeployment is looked at again, and how often.

Events of a ModelDeployment's children come in bursts (a rollout is a dozen of them): the
first queues one refresh after a short settle, later ones join it, and events that arrive
while it runs queue the next. A refresh that failed is tried again after 1, 2, 4 ... seconds
(capped), apart from the event queue: child events meanwhile still refresh at once, and a
success cancels the pending retry. No kopf here: the handlers feed it, tests drive it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

Key = tuple[str, str]  # (namespace, name) of a ModelDeployment

# Child events within this window share one refresh.
CHILD_SETTLE_SECONDS = 0.5
RETRY_FIRST_SECONDS = 1.0
RETRY_MAX_SECONDS = 300.0


@dataclass(frozen=True)
class Request:
    """One queued refresh: why it runs, and whether it reads the children from the API
    (a resync) rather than from the watches."""

    key: Key
    trigger: str
    verify: bool = False


# Runs one refresh; True when it succeeded, False when it should be tried again later. It
# does not raise: a runner reports its own errors (one log line) and returns False.
Runner = Callable[[Request], Awaitable[bool]]


def retry_delay(
    failures: int, first: float = RETRY_FIRST_SECONDS, cap: float = RETRY_MAX_SECONDS
) -> float:
    """Seconds before the next try after `failures` failures in a row (1 -> first)."""
    return float(min(first * 2 ** max(failures - 1, 0), cap))


class RefreshQueue:
    def __init__(
        self,
        run: Runner,
        *,
        retry_first: float = RETRY_FIRST_SECONDS,
        retry_max: float = RETRY_MAX_SECONDS,
    ) -> None:
        self._run = run
        self._retry_first, self._retry_max = retry_first, retry_max
        self._queued: dict[Key, Request] = {}
        self._retries: dict[Key, asyncio.Task[None]] = {}
        self._timers: dict[Key, asyncio.Task[None]] = {}
        self._tasks: set[asyncio.Task[None]] = set()  # keeps them referenced
        self.failures: dict[Key, int] = {}  # failed refreshes in a row, by key

    def queue(
        self, key: Key, trigger: str, *, settle: float = CHILD_SETTLE_SECONDS, verify: bool = False
    ) -> None:
        """At most one queued refresh per key; a later request joins it (and a request to
        verify makes the queued one verify)."""
        queued = self._queued.get(key)
        if queued is not None:
            if verify and not queued.verify:
                self._queued[key] = Request(key, queued.trigger, verify=True)
            return
        self._queued[key] = Request(key, trigger, verify)
        self._spawn(self._after(settle, key))

    def pending(self, key: Key) -> bool:
        return key in self._queued

    def succeeded(self, key: Key) -> None:
        self.failures.pop(key, None)
        _cancel(self._retries.pop(key, None))

    def failed(self, key: Key, trigger: str) -> float:
        """Counts a failure and schedules the next try (unless one is scheduled); returns the
        delay, for the log line."""
        failures = self.failures.get(key, 0) + 1
        self.failures[key] = failures
        delay = retry_delay(failures, self._retry_first, self._retry_max)
        if key not in self._retries or self._retries[key].done():
            self._retries[key] = self._spawn(self._retry(delay, key, trigger))
        return delay

    def look_again(self, key: Key, after: float | None) -> None:
        """One refresh `after` seconds from now, whatever the events (a download's progress,
        its next run); the latest wish replaces an earlier one, None cancels it. Apart from
        the event queue: a wait of minutes must not hold back the refreshes events queue."""
        _cancel(self._timers.pop(key, None))
        if after is not None:
            self._timers[key] = self._spawn(self._later(after, key))

    def forget(self, key: Key) -> None:
        """The ModelDeployment is gone: no retry, no timer, no count (a queued refresh finds
        no object)."""
        self.succeeded(key)
        self.look_again(key, None)

    async def _after(self, settle: float, key: Key) -> None:
        await asyncio.sleep(settle)
        request = self._queued.pop(key)
        if await self._run(request):
            self.succeeded(key)
        else:
            self.failed(key, request.trigger)

    async def _retry(self, delay: float, key: Key, trigger: str) -> None:
        await asyncio.sleep(delay)
        self._retries.pop(key, None)
        self.queue(key, trigger, settle=0)

    async def _later(self, after: float, key: Key) -> None:
        await asyncio.sleep(after)
        self._timers.pop(key, None)
        self.queue(key, "timer", settle=0)

    def _spawn(self, work: Awaitable[None]) -> asyncio.Task[None]:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task


def _cancel(task: asyncio.Task[None] | None) -> None:
    if task is not None:
        task.cancel()
