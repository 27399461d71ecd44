"""Jobs: their life, done-callbacks, cancel, and the loop they belong to (others are refused)."""

from __future__ import annotations

import asyncio
import gc
import threading
import weakref
from collections.abc import Callable
from typing import Any

import anyio
import outcome
import pytest
import trio
import trio.testing

import trio_pool

from helpers import (
    TIMEOUT,
    Gate,
    Log,
    wait_in_thread,
)


def test_a_job_used_from_another_thread_or_loop_refuses_at_once() -> None:
    errors: list[BaseException] = []

    def refused(attempt: Callable[[], object]) -> None:
        try:
            attempt()
        except RuntimeError as exc:
            errors.append(exc)

    def from_another_thread(running: trio_pool.Job[Any], queued: trio_pool.Job[Any]) -> None:
        async def wait_for_both() -> None:
            with anyio.fail_after(TIMEOUT):  # a bug fails instead of hanging
                for job in (running, queued):
                    try:
                        await job.wait()
                    except RuntimeError as exc:  # noqa: PERF203
                        errors.append(exc)

        trio.run(wait_for_both)
        asyncio.run(wait_for_both())
        refused(queued.cancel)  # from a plain thread: the queued job is left in place
        refused(running.cancel)
        refused(lambda: queued.add_done_callback(print))

    async def main() -> tuple[object, object]:
        gate = Gate()
        async with trio_pool.Pool(workers=1) as pool:
            running = await pool.submit(gate.enter, 5)
            queued = await pool.submit(int, "7")
            await wait_in_thread(gate.entered)
            thread = threading.Thread(target=from_another_thread, args=(running, queued))
            thread.start()
            await trio.to_thread.run_sync(thread.join, TIMEOUT)
            assert not thread.is_alive()
            assert not running.done
            assert not queued.done
            gate.open()
            # The owning loop is unharmed: both jobs run and are waited for here.
            return (await running.wait()).unwrap(), (await queued.wait()).unwrap()

    assert trio.run(main) == (5, 7)
    assert len(errors) == 7
    assert all("belongs to the event loop that entered it" in str(e) for e in errors), errors


def test_a_job_has_no_public_constructor() -> None:
    with pytest.raises(TypeError, match=r"trio_pool.Job has no public constructor"):
        trio_pool.Job(int, (), {}, False, None, None)  # type: ignore[arg-type]


async def test_job_lifecycle_and_done_callbacks(backend: str) -> None:
    gate = Gate()
    seen: list[tuple[outcome.Outcome[Any], int]] = []
    async with trio_pool.Pool(workers=1) as pool:
        job = await pool.submit(gate.enter, "value")
        job.add_done_callback(lambda o: seen.append((o, threading.get_ident())))
        assert not job.done
        assert job.outcome is None
        await wait_in_thread(gate.entered)
        assert job.worker_id == 0
        gate.open()
        result = await job.wait()
        assert result is job.outcome
        assert seen == [(result, threading.get_ident())]
        job.add_done_callback(lambda o: seen.append((o, 0)))  # already done: at once
        assert seen[1][0] is result
        assert job.done
        assert result.unwrap() == "value"
        assert "done" in repr(job)


async def test_cancelling_the_wait_leaves_the_job_alone(backend: str) -> None:
    gate = Gate()
    async with trio_pool.Pool(workers=1) as pool:
        job = await pool.submit(gate.enter, "kept")
        with anyio.move_on_after(0):
            await job.wait()
        gate.open()
        assert (await job.wait()).unwrap() == "kept"


async def test_job_cancel(backend: str) -> None:
    log, gate = Log(), Gate(cooperative=True)
    async with trio_pool.Pool(workers=1) as pool:
        running = await pool.submit(gate.enter)
        await wait_in_thread(gate.entered)
        queued = await pool.submit(log.add, "ran")
        assert queued.cancel() is True
        assert isinstance(queued.outcome, outcome.Error)
        assert isinstance(queued.outcome.error, trio_pool.JobCancelled)
        assert queued.cancel() is False  # already done
        assert running.cancel() is False  # running: asked to stop
        result = await running.wait()
        assert isinstance(result, outcome.Error)
        assert isinstance(result.error, trio_pool.JobCancelled)
    assert log.of("ran") == []
    assert pool.statistics().cancelled == 2


async def test_a_done_callback_may_cancel_a_job_taken_out_by_an_error_exit(backend: str) -> None:
    # The exit takes both queued jobs out, then finishes them one by one; the
    # first one's callback cancels the second, which is out but not yet done.
    log, gate = Log(), Gate(cooperative=True)
    answers: list[object] = []

    def cancel_the_other(_: object) -> None:
        try:
            answers.append(second.cancel())
        except BaseException as exc:
            answers.append(exc)

    with pytest.raises(KeyError):
        async with trio_pool.Pool(workers=1) as pool:
            await pool.submit(gate.enter)
            await wait_in_thread(gate.entered)
            first = await pool.submit(log.add, "ran")
            second = await pool.submit(log.add, "ran")
            first.add_done_callback(cancel_the_other)
            raise KeyError("body")
    assert answers == [False]
    assert isinstance(second.outcome, outcome.Error)
    assert isinstance(second.outcome.error, trio_pool.JobCancelled)
    assert log.of("ran") == []


async def test_a_failing_done_callback_is_logged(
    backend: str, caplog: pytest.LogCaptureFixture
) -> None:
    async with trio_pool.Pool(workers=1) as pool:
        job = await pool.submit(int)
        job.add_done_callback(lambda _: 1 / 0)
        seen: list[object] = []
        job.add_done_callback(seen.append)
        await job.wait()
    assert seen == [job.outcome]
    assert "done-callback" in caplog.text
    assert "ZeroDivisionError" in caplog.text


async def test_the_pool_keeps_no_reference_to_finished_jobs(backend: str) -> None:
    class Blob:
        pass

    async with trio_pool.Pool(workers=2) as pool:
        arg, result = Blob(), None
        refs = [weakref.ref(arg)]

        def make() -> Blob:
            made = Blob()
            refs.append(weakref.ref(made))
            return made

        result = await pool.run(lambda a: make(), arg)
        job = await pool.submit(make)
        await job.wait()
        del arg, result, job
        gc.collect()
        assert [ref() for ref in refs] == [None, None, None]


async def test_a_finished_job_nobody_holds_is_freed_without_the_cycle_collector(
    backend: str,
) -> None:
    # The handle and the pool's record of a job refer to each other until the
    # job is complete; a benchmark that dropped the handles of submit_nowait
    # found them piling up until the cycle collector ran.
    async with trio_pool.Pool(workers=1) as pool:
        gc.collect()
        gc.disable()
        try:
            jobs = [pool.submit_nowait(int, str(n)) for n in range(3)]
            handles = [weakref.ref(job) for job in jobs]
            for job in jobs:
                await job.wait()
            del jobs, job
            assert [handle() for handle in handles] == [None, None, None]
        finally:
            gc.enable()
