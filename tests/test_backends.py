"""What only asyncio (or only a particular way of running a loop) can show.

Everything else runs on every backend through conftest's parametrisation.
"""

from __future__ import annotations

import asyncio
import sys
import threading
from typing import Any

import anyio
import outcome
import pytest
import trio

import trio_pool

from helpers import TIMEOUT, Gate

if sys.version_info >= (3, 11):
    from asyncio import timeout as asyncio_timeout
else:
    asyncio_timeout = None


def run_asyncio(main: Any) -> Any:
    return asyncio.run(asyncio.wait_for(main(), TIMEOUT))


async def wait_entered(gate: Gate) -> None:
    assert await asyncio.to_thread(gate.entered.wait, TIMEOUT)


def test_native_task_cancel_removes_a_queued_job() -> None:
    ran: list[str] = []

    async def main() -> trio_pool.PoolStatistics:
        gate = Gate()
        async with trio_pool.Pool(workers=1) as pool:
            await pool.submit(gate.enter)
            await wait_entered(gate)
            task = asyncio.create_task(pool.run(ran.append, "queued"))
            for _ in range(10):  # let it queue its job (a few loop iterations)
                await asyncio.sleep(0)
            assert pool.statistics().queued == 1
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert pool.statistics().queued == 0
            gate.open()
            assert await pool.run(str, "next") == "next"
            return pool.statistics()

    stats = run_asyncio(main)
    assert ran == []
    assert (stats.submitted, stats.completed, stats.cancelled) == (3, 2, 1)


def test_native_task_cancel_waits_for_a_running_job() -> None:
    async def main() -> None:
        gate = Gate()
        async with trio_pool.Pool(workers=1) as pool:
            task = asyncio.create_task(pool.run(gate.enter, "value"))
            await wait_entered(gate)
            task.cancel()
            await asyncio.sleep(0)
            await asyncio.sleep(0)
            assert not task.done()  # waiting for its job, despite the cancel
            gate.open()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert pool.statistics().busy == 0

    run_asyncio(main)


def test_native_task_cancel_with_abandon_returns_at_once() -> None:
    async def main() -> None:
        gate = Gate()
        async with trio_pool.Pool(workers=1, abandon_on_cancel=True) as pool:
            task = asyncio.create_task(pool.run(gate.enter, "value"))
            await wait_entered(gate)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert pool.statistics().busy == 1
            gate.open()
            assert await pool.run(str, 1) == "1"

    run_asyncio(main)


@pytest.mark.skipif(asyncio_timeout is None, reason="asyncio.timeout() is new in Python 3.11")
def test_asyncio_timeout_on_a_cooperative_job() -> None:
    async def main() -> trio_pool.PoolStatistics:
        gate = Gate(cooperative=True)
        async with trio_pool.Pool(workers=1) as pool:
            with pytest.raises(TimeoutError):
                async with asyncio_timeout(0.05):  # type: ignore[misc]
                    await pool.run(gate.enter)
            return pool.statistics()

    stats = run_asyncio(main)
    assert (stats.cancelled, stats.failed) == (1, 0)


def test_a_pending_native_cancel_submits_nothing() -> None:
    ran: list[str] = []

    async def main() -> trio_pool.PoolStatistics:
        async with trio_pool.Pool(workers=2) as pool:
            task = asyncio.current_task()
            assert task is not None
            task.cancel()  # pending: delivered at the task's next yield
            with pytest.raises(asyncio.CancelledError):
                await pool.run(ran.append, "cancelled")
            if sys.version_info >= (3, 11):
                task.uncancel()
            return pool.statistics()

    stats = run_asyncio(main)
    assert ran == []
    assert stats.submitted == 0


@pytest.mark.parametrize("backend", ["trio", "asyncio"])
def test_fail_after_on_a_cooperative_job(backend: str) -> None:
    async def main() -> trio_pool.PoolStatistics:
        gate = Gate(cooperative=True)
        async with trio_pool.Pool(workers=1) as pool:
            with pytest.raises(TimeoutError):
                with anyio.fail_after(0.05):
                    await pool.run(gate.enter)
            return pool.statistics()

    stats = anyio.run(main, backend=backend)
    assert (stats.cancelled, stats.failed) == (1, 0)


def test_pools_in_one_asyncio_run_after_another() -> None:
    exits: list[int] = []

    class Iface:
        def __exit__(self, *exc_info: object) -> None:
            exits.append(threading.get_ident())

    async def main(n: int) -> int:
        async with trio_pool.Pool(Iface, workers=2) as pool:
            return await pool.run(lambda: n * 2)

    assert [asyncio.run(main(n)) for n in range(3)] == [0, 2, 4]
    assert len(exits) == 6


def test_pools_in_two_threads_with_loops_of_their_own() -> None:
    exits: list[str] = []
    results: dict[str, Any] = {}
    both_running = threading.Barrier(2, timeout=TIMEOUT)

    class Iface:
        def __init__(self, tag: str) -> None:
            self.tag = tag

        def __exit__(self, *exc_info: object) -> None:
            exits.append(self.tag)

    async def main(tag: str) -> list[object]:
        async with trio_pool.Pool(Iface, tag, workers=2, name=tag) as pool:
            await pool.run(both_running.wait)  # both pools are open at once
            return [await pool.call_method(lambda iface, n: (iface.tag, n), n) for n in range(20)]

    def in_thread(tag: str, runner: Any) -> None:
        results[tag] = outcome.capture(runner, main, tag)

    threads = [
        threading.Thread(target=in_thread, args=("asyncio", lambda m, t: asyncio.run(m(t)))),
        threading.Thread(target=in_thread, args=("trio", trio.run)),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(TIMEOUT)
    assert results["asyncio"].unwrap() == [("asyncio", n) for n in range(20)]
    assert results["trio"].unwrap() == [("trio", n) for n in range(20)]
    assert sorted(exits) == ["asyncio", "asyncio", "trio", "trio"]


@pytest.mark.parametrize("backend", ["trio", "asyncio"])
def test_posting_after_the_loop_finished_is_silent(
    backend: str, capfd: pytest.CaptureFixture[str]
) -> None:
    from trio_pool._backend import current_backend

    async def grab() -> Any:
        return current_backend()

    loop_backend = anyio.run(grab, backend=backend)
    called: list[int] = []
    thread = threading.Thread(target=loop_backend.post, args=(lambda: called.append(1),))
    thread.start()
    thread.join(TIMEOUT)
    assert called == []
    assert capfd.readouterr() == ("", "")


ASYNCIO_RUN_ENDS = """
import asyncio, threading, time, trio_pool

started = threading.Event()

class Iface:
    def __exit__(self, exc_type, exc, tb):
        print("hook", exc_type.__name__, flush=True)

def work():
    started.set()
    while True:
        trio_pool.check_cancelled()
        time.sleep(0.005)

async def background():
    async with trio_pool.Pool(Iface, workers=1) as pool:
        await pool.run(work)

async def main():
    asyncio.create_task(background())
    await asyncio.to_thread(started.wait)
    # main returns: asyncio.run cancels every task left, the pool's included.

asyncio.run(main())
print("asyncio.run returned", flush=True)
"""


def test_asyncio_run_ending_with_a_pool_open_stops_it() -> None:
    import subprocess

    result = subprocess.run(
        [sys.executable, "-c", ASYNCIO_RUN_ENDS],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["hook CancelledError", "asyncio.run returned"]


def test_native_cancel_while_a_map_waits_for_its_running_chunk() -> None:
    async def main() -> None:
        gate = Gate()
        async with trio_pool.Pool(workers=1) as pool:

            async def consumer() -> None:
                async with pool.map(gate.enter, [1, 2]):
                    await wait_entered(gate)  # then leave early: the exit waits for item 1

            task = asyncio.create_task(consumer())
            await wait_entered(gate)
            for _ in range(10):
                await asyncio.sleep(0)
            task.cancel()  # arrives while the exit waits
            for _ in range(10):
                await asyncio.sleep(0)
            assert not task.done()
            gate.open()
            with pytest.raises(asyncio.CancelledError):  # not swallowed by the wait
                await task

    run_asyncio(main)
