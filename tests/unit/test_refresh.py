"""The refresh queue: bursts settle into one refresh, failures retry with capped back-off."""

from __future__ import annotations

import asyncio

import pytest

from kubeinfer.refresh import RefreshQueue, Request, retry_delay

KEY = ("ns", "md")
OTHER = ("ns", "other")


class Recorder:
    """A runner that records each request and fails as often as told."""

    def __init__(self, fail_times: int = 0, duration: float = 0.0) -> None:
        self.requests: list[Request] = []
        self.fail_times, self.duration = fail_times, duration

    async def __call__(self, request: Request) -> bool:
        self.requests.append(request)
        await asyncio.sleep(self.duration)
        if self.fail_times:
            self.fail_times -= 1
            return False
        return True


def run(coroutine_fn):  # type: ignore[no-untyped-def]
    return asyncio.run(coroutine_fn())


def test_retry_delay_doubles_and_is_capped() -> None:
    assert [retry_delay(n, 1.0, 10.0) for n in range(1, 7)] == [1, 2, 4, 8, 10, 10]


def test_a_burst_of_events_shares_one_refresh() -> None:
    async def scenario() -> Recorder:
        runner = Recorder()
        queue = RefreshQueue(runner)
        for _ in range(20):
            queue.queue(KEY, "child", settle=0.05)
        queue.queue(OTHER, "child", settle=0.05)
        assert queue.pending(KEY)
        await asyncio.sleep(0.2)
        assert not queue.pending(KEY)
        return runner

    runner = run(scenario)
    assert sorted(r.key for r in runner.requests) == [KEY, OTHER]


def test_an_event_during_a_run_queues_the_next_one() -> None:
    async def scenario() -> Recorder:
        runner = Recorder(duration=0.1)
        queue = RefreshQueue(runner)
        queue.queue(KEY, "child", settle=0)
        await asyncio.sleep(0.05)  # running now
        queue.queue(KEY, "child", settle=0)
        await asyncio.sleep(0.3)
        return runner

    assert len(run(scenario).requests) == 2


def test_a_verify_request_upgrades_the_queued_one() -> None:
    async def scenario() -> Recorder:
        runner = Recorder()
        queue = RefreshQueue(runner)
        queue.queue(KEY, "child", settle=0.05)
        queue.queue(KEY, "resync", settle=0, verify=True)
        await asyncio.sleep(0.1)
        return runner

    (request,) = run(scenario).requests
    assert request == Request(KEY, "child", verify=True)


def test_failures_retry_with_back_off_until_success() -> None:
    async def scenario() -> tuple[Recorder, RefreshQueue]:
        runner = Recorder(fail_times=2)
        queue = RefreshQueue(runner, retry_first=0.05, retry_max=1.0)
        queue.queue(KEY, "spec", settle=0)
        await asyncio.sleep(0.01)
        assert queue.failures == {KEY: 1}
        await asyncio.sleep(0.3)  # 0.05 then 0.1 later: the third try succeeds
        return runner, queue

    runner, queue = run(scenario)
    assert [r.trigger for r in runner.requests] == ["spec", "spec", "spec"]
    assert queue.failures == {}


def test_success_from_an_event_cancels_the_pending_retry() -> None:
    async def scenario() -> Recorder:
        runner = Recorder(fail_times=1)
        queue = RefreshQueue(runner, retry_first=0.2)
        queue.queue(KEY, "spec", settle=0)
        await asyncio.sleep(0.01)  # failed; retry due in 0.2 s
        queue.queue(KEY, "child", settle=0)  # an event refreshes at once and succeeds
        await asyncio.sleep(0.3)
        return runner

    assert [r.trigger for r in run(scenario).requests] == ["spec", "child"]


def test_repeated_failures_keep_one_retry_scheduled() -> None:
    async def scenario() -> tuple[Recorder, RefreshQueue]:
        runner = Recorder()
        queue = RefreshQueue(runner, retry_first=0.05)
        for _ in range(5):
            queue.failed(KEY, "spec")
        await asyncio.sleep(0.01)
        assert runner.requests == []
        await asyncio.sleep(2.0)  # the fifth failure's delay is 0.8 s; one retry only
        return runner, queue

    runner, queue = run(scenario)
    assert len(runner.requests) == 1
    assert queue.failures == {}  # the retry succeeded


def test_forget_drops_count_and_retry() -> None:
    async def scenario() -> Recorder:
        runner = Recorder()
        queue = RefreshQueue(runner, retry_first=0.05)
        queue.failed(KEY, "spec")
        queue.forget(KEY)
        await asyncio.sleep(0.2)
        assert queue.failures == {}
        return runner

    assert run(scenario).requests == []


def test_look_again_keeps_only_the_latest_wish() -> None:
    async def scenario() -> Recorder:
        runner = Recorder()
        queue = RefreshQueue(runner)
        queue.look_again(KEY, 0.05)
        queue.look_again(KEY, 0.15)  # replaces the first
        queue.look_again(OTHER, 0.05)
        queue.look_again(OTHER, None)  # cancelled
        await asyncio.sleep(0.1)
        assert runner.requests == []
        await asyncio.sleep(0.1)
        return runner

    assert run(scenario).requests == [Request(KEY, "timer")]


@pytest.mark.parametrize("failures", [0, -1])
def test_retry_delay_of_no_failures_is_the_first(failures: int) -> None:
    assert retry_delay(failures, 1.0, 10.0) == 1.0
