"""run_in_thread, Shared, ThreadSafeLock and named_lock, from threads and tasks alike."""

from __future__ import annotations

import threading

import anyio
import pytest

import trio_pool

from helpers import TIMEOUT, Gate, cancel_once_entered, wait_in_thread

# --- run_in_thread ------------------------------------------------------------------


async def test_run_in_thread(backend: str) -> None:
    main = threading.get_ident()
    assert await trio_pool.run_in_thread(threading.get_ident) != main
    assert await trio_pool.run_in_thread(int, "12", base=8) == 10
    with pytest.raises(KeyboardInterrupt):  # any BaseException comes back raised
        await trio_pool.run_in_thread(lambda: (_ for _ in ()).throw(KeyboardInterrupt))
    with pytest.raises(TypeError, match="async function"):
        await trio_pool.run_in_thread(anyio.sleep, 0)  # type: ignore[arg-type]
    names = {t.name for t in threading.enumerate()}
    assert not any(name.startswith("trio_pool.run_in_thread") for name in names)


async def test_run_in_thread_cancellation_waits_and_the_call_can_notice(backend: str) -> None:
    gate = Gate(cooperative=True)
    stopped: list[BaseException] = []

    def work() -> None:
        try:
            gate.enter()
        except BaseException as exc:
            stopped.append(exc)
            raise

    scope = await cancel_once_entered(gate.entered, trio_pool.run_in_thread, work)
    assert scope.cancelled_caught
    assert [type(e) for e in stopped] == [trio_pool.JobCancelled]  # it was waited for


# --- Shared ---------------------------------------------------------------------------


async def test_shared_gives_snapshots_and_keeps_copies(backend: str) -> None:
    original = {"items": [1]}
    box = trio_pool.Shared(original)
    original["items"].append(2)  # the box kept its own copy
    snapshot = box.get()
    snapshot["items"].append(3)  # a snapshot is the caller's alone
    assert box.get() == {"items": [1]}
    assert box.modify(lambda v: {"items": [*v["items"], 4]}) == {"items": [1, 4]}
    box.set({"items": []})
    assert box.get() == {"items": []}
    with pytest.raises(ZeroDivisionError):
        box.modify(lambda v: 1 / 0)  # type: ignore[arg-type,return-value]
    assert box.get() == {"items": []}  # unchanged by a failed modify
    assert "Shared" in repr(box)


async def test_shared_loses_no_update_under_threads_and_tasks(backend: str) -> None:
    box = trio_pool.Shared(0)
    rounds = 500

    def bump_in_thread() -> None:
        for _ in range(rounds):
            box.modify(lambda n: n + 1)

    async def bump_in_task() -> None:
        for _ in range(rounds):
            box.modify(lambda n: n + 1)
            await anyio.lowlevel.checkpoint()

    async with trio_pool.Pool(workers=8) as pool, anyio.create_task_group() as tg:
        for _ in range(8):
            tg.start_soon(pool.run, bump_in_thread)
            tg.start_soon(bump_in_task)
    assert box.get() == 16 * rounds


# --- ThreadSafeLock ---------------------------------------------------------------------


async def test_a_task_waits_for_a_threads_lock_without_blocking_the_loop(backend: str) -> None:
    lock = trio_pool.ThreadSafeLock()
    held, release = threading.Event(), threading.Event()
    order: list[str] = []

    def hold() -> None:
        with lock:
            held.set()
            assert release.wait(TIMEOUT)
            order.append("thread")

    async with trio_pool.Pool(workers=1) as pool, anyio.create_task_group() as tg:
        tg.start_soon(pool.run, hold)
        await wait_in_thread(held)

        async def task() -> None:
            async with lock:
                order.append("task")

        tg.start_soon(task)
        await anyio.wait_all_tasks_blocked()  # the task waits for the lock...
        assert order == []
        ticks = 0
        while ticks < 3:  # ...and the loop keeps running other tasks meanwhile
            await anyio.lowlevel.checkpoint()
            ticks += 1
        assert lock.locked()
        release.set()
    assert order == ["thread", "task"]
    assert not lock.locked()


async def test_cancelling_a_task_waiting_for_the_lock(backend: str) -> None:
    lock = trio_pool.ThreadSafeLock()
    assert lock.acquire()
    with anyio.CancelScope() as scope:
        async with anyio.create_task_group() as tg:
            tg.start_soon(lock.acquire_async)
            await anyio.wait_all_tasks_blocked()
            scope.cancel()
    assert scope.cancelled_caught
    lock.release()
    assert not lock.locked()  # the cancelled waiter did not keep it
    async with lock:
        assert lock.locked()


async def test_the_lock_excludes_threads_and_tasks_from_each_other(backend: str) -> None:
    lock = trio_pool.ThreadSafeLock()
    counter = {"n": 0}
    rounds = 200

    def in_thread() -> None:
        for _ in range(rounds):
            with lock:
                value = counter["n"]
                threading.Event().wait(0)  # let another thread in, if it could
                counter["n"] = value + 1

    async def in_task() -> None:
        for _ in range(rounds):
            async with lock:
                value = counter["n"]
                await anyio.lowlevel.checkpoint()  # let another task in, if it could
                counter["n"] = value + 1

    async with trio_pool.Pool(workers=4) as pool, anyio.create_task_group() as tg:
        for _ in range(4):
            tg.start_soon(pool.run, in_thread)
            tg.start_soon(in_task)
    assert counter["n"] == 8 * rounds


def test_lock_from_threads() -> None:
    lock = trio_pool.ThreadSafeLock()
    assert lock.acquire(blocking=False)
    assert not lock.acquire(blocking=False)
    assert not lock.acquire(timeout=0.01)
    lock.release()
    with pytest.raises(RuntimeError, match="unlocked"):
        lock.release()
    assert "unlocked" in repr(lock)


def test_named_locks() -> None:
    assert trio_pool.named_lock(5) is trio_pool.named_lock(5)
    assert trio_pool.named_lock(5) is not trio_pool.named_lock("5")
    with pytest.raises(TypeError):
        trio_pool.named_lock([5])  # type: ignore[arg-type]
    lock = trio_pool.named_lock("seed")
    with lock:
        assert trio_pool.named_lock("seed").locked()
