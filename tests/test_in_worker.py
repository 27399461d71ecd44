"""What a job can do from inside its worker thread: wait/notify and from_loop."""

from __future__ import annotations

import threading
from typing import Any

import anyio
import anyio.lowlevel
import outcome
import pytest
import trio

import trio_pool

from helpers import TIMEOUT, Gate, cancel_once_entered, poll_until, wait_in_thread

# --- wait / notify ------------------------------------------------------------------


def waiter(
    started: threading.Event, event: object, timeout: float | None = None
) -> tuple[Any, ...]:
    started.set()
    return trio_pool.wait(event, timeout)


async def test_notify_wakes_a_waiting_job(backend: str) -> None:
    started = threading.Event()
    async with trio_pool.Pool(workers=1) as pool:
        job = await pool.submit(waiter, started, "ready")
        await wait_in_thread(started)
        assert job.worker_id is not None
        pool.notify(job.worker_id, "other", 0)  # another event: kept, not returned
        pool.notify(job.worker_id, "ready", 1, "two")
        assert (await job.wait()).unwrap() == (1, "two")
        # The other notify is kept for the next wait on that worker.
        assert await pool.run(trio_pool.wait, "other") == (0,)


async def test_a_notify_that_comes_first_is_kept(backend: str) -> None:
    async with trio_pool.Pool(workers=1) as pool:
        pool.notify(0, "go", "early")
        pool.notify(0, "go", "later")
        assert await pool.run(trio_pool.wait, "go") == ("early",)
        assert await pool.run(trio_pool.wait, "go") == ("later",)


async def test_wait_times_out(backend: str) -> None:
    async with trio_pool.Pool(workers=1) as pool:
        with pytest.raises(TimeoutError):
            await pool.run(trio_pool.wait, "never", 0.01)
        with pytest.raises(TimeoutError):
            await pool.run(trio_pool.wait, "never", 0)


async def test_cancelling_the_caller_wakes_a_waiting_job(backend: str) -> None:
    started = threading.Event()
    async with trio_pool.Pool(workers=1) as pool:
        scope = await cancel_once_entered(started, pool.run, waiter, started, "never")
        assert scope.cancelled_caught
        stats = pool.statistics()
        assert (stats.cancelled, stats.busy) == (1, 0)


async def test_job_cancel_wakes_a_waiting_job(backend: str) -> None:
    started = threading.Event()
    async with trio_pool.Pool(workers=1) as pool:
        job = await pool.submit(waiter, started, "never")
        await wait_in_thread(started)
        job.cancel()
        result = await job.wait()
        assert isinstance(result, outcome.Error)
        assert isinstance(result.error, trio_pool.JobCancelled)


async def test_bad_waits_and_notifies(backend: str) -> None:
    with pytest.raises(RuntimeError, match="job"):
        trio_pool.wait("x")
    async with trio_pool.Pool(workers=1) as pool:
        with pytest.raises(LookupError):
            pool.notify(5, "x")
        with pytest.raises(ValueError, match="negative"):
            await pool.run(trio_pool.wait, "x", -1)
        with pytest.raises(TypeError, match="timeout"):
            await pool.run(trio_pool.wait, "x", "1")
    with pytest.raises(LookupError):
        pool.notify(0, "x")  # the pool is closed: its workers are gone


# --- from_loop ----------------------------------------------------------------------


async def double_later(x: int) -> int:
    await anyio.lowlevel.checkpoint()
    return 2 * x


async def fail_later() -> None:
    await anyio.lowlevel.checkpoint()
    raise KeyError("from the loop")


async def test_from_loop_returns_the_value(backend: str) -> None:
    async with trio_pool.Pool(workers=2) as pool:
        assert await pool.run(trio_pool.from_loop, double_later, 21) == 42
        job = await pool.submit(trio_pool.from_loop, double_later, 4)  # served in the pool's scope
        assert (await job.wait()).unwrap() == 8
        with pytest.raises(KeyError, match="from the loop"):
            await pool.run(trio_pool.from_loop, fail_later)
        async with pool.lease() as worker:
            assert await worker.run(trio_pool.from_loop, double_later, 1) == 2
        results = await pool.broadcast(trio_pool.from_loop, double_later, 3)
        assert [r.unwrap() for r in results] == [6, 6]


async def test_from_loop_runs_in_the_callers_task_and_scope(backend: str) -> None:
    async def where() -> object:
        return anyio.get_current_task().id

    me = anyio.get_current_task().id
    async with trio_pool.Pool(workers=1) as pool:
        assert await pool.run(trio_pool.from_loop, where) == me
        # Cancelling the caller's scope cancels what from_loop runs, and the job
        # sees JobCancelled.
        seen: list[BaseException] = []
        entered = anyio.Event()

        async def forever() -> None:
            entered.set()
            await anyio.sleep_forever()

        def job() -> None:
            try:
                trio_pool.from_loop(forever)
            except BaseException as exc:
                seen.append(exc)
                raise

        with anyio.CancelScope() as scope:
            async with anyio.create_task_group() as tg:
                tg.start_soon(pool.run, job)
                await entered.wait()
                scope.cancel()
        assert scope.cancelled_caught
        assert [type(e) for e in seen] == [trio_pool.JobCancelled]
        assert pool.statistics().cancelled == 1


async def test_from_loop_after_the_caller_left_raises_at_once(backend: str) -> None:
    gate = Gate(cooperative=False)
    seen: list[object] = []

    def job() -> None:
        gate.enter()
        seen.append(outcome.capture(trio_pool.from_loop, double_later, 1))

    async with trio_pool.Pool(workers=1, abandon_on_cancel=True) as pool:
        scope = await cancel_once_entered(gate.entered, pool.run, job)
        assert scope.cancelled_caught  # abandoned: the caller left at once
        gate.open()
        await poll_until(lambda: bool(seen))
    [result] = seen
    assert isinstance(result, outcome.Error)
    assert isinstance(result.error, trio_pool.JobCancelled)


async def test_from_loop_while_the_pool_stops_on_an_error(backend: str) -> None:
    entered = threading.Event()
    seen: list[object] = []

    async def forever() -> None:
        entered.set()
        await anyio.sleep_forever()

    def job() -> None:
        seen.append(outcome.capture(trio_pool.from_loop, forever))

    with pytest.raises(KeyError):
        async with trio_pool.Pool(workers=1) as pool:
            await pool.submit(job)  # nobody waits: it runs in the pool's scope
            await wait_in_thread(entered)
            raise KeyError("body")
    [result] = seen
    assert isinstance(result, outcome.Error)
    assert isinstance(result.error, trio_pool.JobCancelled)


def test_from_loop_outside_a_job() -> None:
    with pytest.raises(RuntimeError, match="job"):
        trio_pool.from_loop(double_later, 1)


# --- edges found from outside -----------------------------------------------------


@pytest.mark.trio
async def test_a_job_calling_the_pool_through_from_thread_ends_with_the_scope() -> None:
    # The nested call waits behind its own job on the only worker, in the
    # worker's task; the cancellation of the scope around the pool reaches it.
    pools: list[trio_pool.Pool] = []

    def nested() -> object:
        return trio.from_thread.run(pools[0].run, int)

    async def cancel_once_it_waits(scope: anyio.CancelScope) -> None:
        def nested_waits() -> bool:
            stats = pools[0].statistics() if pools else None
            return stats is not None and (stats.busy, stats.queued) == (1, 1)

        await poll_until(nested_waits)
        scope.cancel()

    with anyio.fail_after(TIMEOUT):
        async with anyio.create_task_group() as tg:
            with anyio.CancelScope() as scope:
                async with trio_pool.Pool(workers=1) as pool:
                    pools.append(pool)
                    tg.start_soon(cancel_once_it_waits, scope)
                    await pool.run(nested)
    assert scope.cancelled_caught


def test_from_loop_under_plain_asyncio_run() -> None:
    import asyncio

    async def double(x: int) -> int:
        await asyncio.sleep(0)
        return 2 * x

    async def main() -> list[int]:
        async with trio_pool.Pool(workers=1) as pool:
            job = await pool.submit(trio_pool.from_loop, double, 4)  # in the pool's scope
            return [await pool.run(trio_pool.from_loop, double, 1), (await job.wait()).unwrap()]

    assert asyncio.run(asyncio.wait_for(main(), TIMEOUT)) == [2, 8]


async def test_job_cancel_reaches_a_submitted_job_waiting_in_from_loop(backend: str) -> None:
    async def never() -> None:
        await anyio.sleep_forever()

    async with trio_pool.Pool(workers=1) as pool:
        job = await pool.submit(trio_pool.from_loop, never)
        await poll_until(lambda: pool.statistics().busy == 1)
        await anyio.wait_all_tasks_blocked()
        assert job.cancel() is False  # running: asked to stop, its loop call cancelled
        with anyio.fail_after(TIMEOUT):
            result = await job.wait()
        assert isinstance(result, outcome.Error)
        assert isinstance(result.error, trio_pool.JobCancelled)


async def test_a_job_sees_no_event_loop_in_its_thread(backend: str) -> None:
    import sniffio

    async with trio_pool.Pool(workers=1) as pool:
        with pytest.raises(sniffio.AsyncLibraryNotFoundError):
            await pool.run(sniffio.current_async_library)
        with pytest.raises(sniffio.AsyncLibraryNotFoundError):
            await trio_pool.run_in_thread(sniffio.current_async_library)

        async def library() -> str:
            return sniffio.current_async_library()

        # ...while what it runs on the loop sees the loop.
        assert await pool.run(trio_pool.from_loop, library) in ("trio", "asyncio")


async def test_from_loop_refuses_a_sync_function_before_running_it(backend: str) -> None:
    ran: list[int] = []
    async with trio_pool.Pool(workers=1) as pool:
        with pytest.raises(TypeError, match="appears to be synchronous"):
            await pool.run(trio_pool.from_loop, ran.append, 1)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="appears to be synchronous"):
            await pool.run(trio_pool.from_loop, lambda: 1)  # type: ignore[arg-type]
    assert ran == []


async def test_from_loop_in_run_in_thread(backend: str) -> None:
    async def where() -> object:
        return anyio.get_current_task().id

    assert await trio_pool.run_in_thread(trio_pool.from_loop, where) == (
        anyio.get_current_task().id
    )


async def test_from_loop_runs_in_a_copy_of_the_jobs_context(backend: str) -> None:
    import contextvars

    var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="unset")

    async def read_and_set() -> str:
        seen = var.get()
        var.set("set by the loop call")
        return seen

    def job() -> tuple[str, str]:
        var.set("set by the job")
        seen_on_the_loop = trio_pool.from_loop(read_and_set)
        return seen_on_the_loop, var.get()

    var.set("the caller's")
    async with trio_pool.Pool(workers=1) as pool:
        assert await pool.run(job) == ("set by the job", "set by the job")
    assert var.get() == "the caller's"  # nothing leaked into the caller


async def test_from_loop_after_a_deadline_around_the_pool_expired(backend: str) -> None:
    # A deadline around the block cancels the pool's own tasks before its exit
    # starts: a call made then, by a job nobody waits for, was never answered,
    # and the exit waited for its worker forever (found by the stress test).
    gate = Gate()
    seen: list[object] = []

    def job() -> None:
        gate.enter()
        seen.append(outcome.capture(trio_pool.from_loop, double_later, 1))

    with anyio.CancelScope() as outer:
        async with trio_pool.Pool(workers=1) as pool:
            await pool.submit(job)
            await wait_in_thread(gate.entered)
            outer.cancel()
            with anyio.CancelScope(shield=True):  # the body goes on a little
                gate.open()
                await poll_until(lambda: bool(seen))
    [result] = seen
    assert isinstance(result, outcome.Error)
    assert isinstance(result.error, trio_pool.JobCancelled)


@pytest.mark.trio
async def test_check_cancelled_sees_the_callers_cancellation_from_the_moment_it_comes() -> None:
    # As trio.from_thread.check_cancelled() in a trio.to_thread job: trio tells the
    # thread in the same step as the cancel(), before the caller's task runs again.
    entered, cancelled_now, checked = threading.Event(), threading.Event(), threading.Event()
    seen: list[str] = []

    def job() -> None:
        entered.set()
        assert cancelled_now.wait(TIMEOUT)
        try:
            trio_pool.check_cancelled()
            seen.append("missed")
        except trio_pool.JobCancelled:
            seen.append("seen")
            raise
        finally:
            checked.set()

    async with trio_pool.Pool(workers=1) as pool:
        with trio.CancelScope() as scope:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(pool.run, job)
                await wait_in_thread(entered)
                scope.cancel()
                cancelled_now.set()
                # Block the loop: the caller's task cannot run before the job has looked.
                assert checked.wait(TIMEOUT)
        assert scope.cancelled_caught  # the job ended by JobCancelled: the caller raised
    assert seen == ["seen"]


@pytest.mark.trio
async def test_trio_from_thread_in_a_job_runs_in_the_pools_task_from_loop_in_the_callers() -> None:
    # The chosen behaviour (documented in howto/from_loop): trio runs what a thread
    # sends with trio.from_thread in the task that lent the thread, which is the
    # pool's task of that worker, for as long as the pool lives; a caller's cancel
    # scope does not reach it. from_loop() runs in the caller's task and scope.
    tasks: dict[str, trio.lowlevel.Task] = {}

    async def note_task(key: str) -> None:
        await trio.lowlevel.checkpoint()
        tasks[key] = trio.lowlevel.current_task()

    def job() -> str:
        trio.from_thread.run(note_task, "trio.from_thread.run")
        trio_pool.from_loop(note_task, "from_loop")
        return trio.from_thread.run_sync(lambda: "a sync handshake works")

    async with trio_pool.Pool(workers=1, name="p") as pool:
        assert await pool.run(job) == "a sync handshake works"
    assert tasks["from_loop"] is trio.lowlevel.current_task()
    assert tasks["trio.from_thread.run"].name == "p-worker-0"
