"""The caller's side: a caller cancelled while its job is queued or runs, and abandoning."""

from __future__ import annotations

import anyio
import pytest

import trio_pool

from helpers import (
    Gate,
    Log,
    cancel_once_entered,
    wait_in_thread,
)


async def test_caller_cancelled_while_queued(backend: str) -> None:
    log, gate = Log(), Gate()
    async with trio_pool.Pool(workers=1) as pool:
        await pool.submit(gate.enter)
        await wait_in_thread(gate.entered)
        with anyio.CancelScope() as scope:
            async with anyio.create_task_group() as tg:
                tg.start_soon(pool.run, log.add, "ran", "cancelled caller")
                await anyio.wait_all_tasks_blocked()
                assert pool.statistics().queued == 1
                scope.cancel()
        assert pool.statistics().queued == 0
        gate.open()
        # The next caller gets its own result, and the cancelled job never ran.
        assert await pool.run(lambda: "mine") == "mine"
        assert log.of("ran") == []
        stats = pool.statistics()
        assert (stats.submitted, stats.completed, stats.cancelled) == (3, 2, 1)


async def test_a_caller_cancelled_before_it_calls_submits_nothing(backend: str) -> None:
    log = Log()
    async with trio_pool.Pool(workers=2) as pool:
        with anyio.move_on_after(0):  # expired on entry: the call sees it at once
            await pool.run(log.add, "ran", "expired deadline")
        with anyio.CancelScope() as scope:
            scope.cancel()
            await pool.call_method(Log.add, log, "ran", "cancelled scope")
        assert pool.statistics().submitted == 0
    assert log.of("ran") == []


async def test_a_burst_of_jobs_reaches_every_idle_worker(backend: str) -> None:
    # The loop wakes one idle worker per burst; the woken ones wake the rest.
    async with trio_pool.Pool(workers=4) as pool:
        for _ in range(20):
            gate, ids = Gate(), set()
            jobs = [pool.submit_nowait(gate.enter) for _ in range(4)]
            await gate.wait_arrivals(4)  # all four block at once: one per worker
            gate.open()
            for job in jobs:
                await job.wait()
                ids.add(job.worker_id)
            assert len(ids) == 4


@pytest.mark.parametrize("fails", [False, True])
async def test_caller_cancelled_while_running_waits_and_gets_the_result(
    backend: str, fails: bool
) -> None:
    # As trio.to_thread.run_sync: the finished job's value (or its own error)
    # comes back, and the cancellation comes at the caller's next checkpoint.
    gate = Gate()
    got: list[object] = []
    caller_scope = anyio.CancelScope()

    def job() -> str:
        gate.enter()
        if fails:
            raise KeyError("the job's own error")
        return "value"

    async def caller() -> None:
        with caller_scope:
            try:
                got.append(await pool.run(job))
            except KeyError as exc:
                got.append(exc.args[0])
            await anyio.lowlevel.checkpoint()  # the cancellation comes here
            got.append("not cancelled")  # pragma: no cover

    async with trio_pool.Pool(workers=1) as pool:
        async with anyio.create_task_group() as tg:
            tg.start_soon(caller)
            await wait_in_thread(gate.entered)
            caller_scope.cancel()
            await anyio.wait_all_tasks_blocked()
            assert got == []  # still waiting for the job
            assert pool.statistics().busy == 1
            gate.open()
        assert caller_scope.cancelled_caught
        assert got == ["the job's own error" if fails else "value"]
        stats = pool.statistics()
        assert (stats.busy, stats.completed + stats.failed) == (0, 1)


async def test_a_running_job_sees_its_callers_cancellation(backend: str) -> None:
    gate = Gate(cooperative=True)
    async with trio_pool.Pool(workers=1) as pool:
        scope = await cancel_once_entered(gate.entered, pool.run, gate.enter)
        assert scope.cancelled_caught
        stats = pool.statistics()
        assert (stats.cancelled, stats.failed, stats.busy) == (1, 0, 0)


async def test_abandon_on_cancel_returns_at_once(backend: str) -> None:
    gate = Gate()
    async with trio_pool.Pool(workers=1, abandon_on_cancel=True) as pool:
        scope = await cancel_once_entered(gate.entered, pool.run, gate.enter)
        assert scope.cancelled_caught
        stats = pool.statistics()
        assert (stats.busy, stats.cancelled) == (1, 1)  # the job still runs
        gate.open()
        assert await pool.run(lambda: "next") == "next"  # the worker moved on
        stats = pool.statistics()
        assert (stats.submitted, stats.completed, stats.cancelled) == (2, 1, 1)
