"""What a service needs: a lease's reset, shedding load with max_wait, the waiters in
statistics, and the typed calls (broadcast_method, current_interface(kind))."""

from __future__ import annotations

import asyncio
import math
import sqlite3
import threading
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import anyio
import pytest
import trio

import trio_pool

from helpers import TIMEOUT, Gate, poll_until, wait_in_thread


class Db:
    """A connection per worker that records its resets and its hook, in order."""

    def __init__(self, path: Path, log: list[str]) -> None:
        self.conn = sqlite3.connect(path, timeout=TIMEOUT, isolation_level=None)
        self.log = log

    def execute(self, sql: str, *params: object) -> list[tuple[Any, ...]]:
        return self.conn.execute(sql, params).fetchall()

    def insert(self, n: int) -> None:
        self.conn.execute("insert into t values (?)", (n,))
        self.log.append(f"insert {n}")

    def rollback(self) -> None:
        self.log.append(f"reset (in a transaction: {self.conn.in_transaction})")
        if self.conn.in_transaction:
            self.conn.execute("rollback")

    def in_transaction(self) -> bool:
        return self.conn.in_transaction

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self.log.append(f"hook {exc!r}")
        if self.conn.in_transaction:
            self.conn.execute("rollback")
        self.conn.close()


@pytest.fixture
def path(tmp_path: Path) -> Path:
    path = tmp_path / "t.db"
    sqlite3.connect(path).execute("create table t (n integer)").connection.close()
    return path


def rows(path: Path) -> list[int]:
    conn = sqlite3.connect(path)
    try:
        return [n for (n,) in conn.execute("select n from t order by n")]
    finally:
        conn.close()


# --- lease(reset=...) -------------------------------------------------------------------


@pytest.mark.parametrize("ending", ["normally", "by an error", "by a cancellation"])
async def test_a_lease_reset_ends_the_transaction_the_block_left_open(
    backend: str, path: Path, ending: str
) -> None:
    log: list[str] = []
    async with trio_pool.Pool(Db, path, log, workers=1) as pool:
        with anyio.CancelScope() as scope:
            try:
                async with pool.lease(reset=Db.rollback) as db:
                    await db.call_method(Db.execute, "begin immediate")
                    await db.call_method(Db.insert, 1)
                    if ending == "by an error":
                        raise KeyError("inside")
                    if ending == "by a cancellation":
                        scope.cancel()  # the reset must run all the same, shielded
                        await anyio.sleep_forever()
            except KeyError:
                pass
        assert scope.cancelled_caught == (ending == "by a cancellation")
        assert log == ["insert 1", "reset (in a transaction: True)"]
        # The next user of the worker is outside any transaction, and row 1 is gone.
        assert not await pool.call_method(Db.in_transaction)
        await pool.call_method(Db.insert, 2)
        assert not pool.statistics().worker_states[0].leased
    assert rows(path) == [2]


async def test_a_lease_reset_runs_before_shared_jobs_when_the_pool_closes(
    backend: str, path: Path
) -> None:
    log: list[str] = []
    async with anyio.create_task_group() as tg:
        async with trio_pool.Pool(Db, path, log, workers=1) as pool:
            leased = anyio.Event()

            async def hold_a_lease_in_a_transaction() -> None:
                async with pool.lease(reset=Db.rollback) as db:
                    await db.call_method(Db.execute, "begin immediate")
                    await db.call_method(Db.insert, 1)
                    leased.set()
                    await anyio.sleep_forever()

            tg.start_soon(hold_a_lease_in_a_transaction)
            await leased.wait()
            job = pool.submit_nowait(lambda: trio_pool.current_interface(Db).insert(2))
            await pool.aclose()
        tg.cancel_scope.cancel()  # the lessee leaves after the pool closed
    # The queued job got the worker only after the reset had ended the transaction,
    # and the reset ran once (not again when the lessee left).
    assert log == ["insert 1", "reset (in a transaction: True)", "insert 2", "hook None"]
    assert job.done
    assert rows(path) == [2]


async def test_a_lease_reset_that_raises_fails_the_lease_and_returns_the_worker(
    backend: str, path: Path
) -> None:
    def broken_reset(db: Db) -> None:
        raise OSError("the connection is gone")

    async with trio_pool.Pool(Db, path, [], workers=1) as pool:
        with pytest.raises(OSError, match="the connection is gone") as info:
            async with pool.lease(reset=broken_reset):
                raise KeyError("inside")
        assert isinstance(info.value.__context__, KeyError)  # the block's error is kept
        assert not pool.statistics().worker_states[0].leased
        assert await pool.run(str, 1) == "1"


async def test_a_pool_that_stops_by_an_error_runs_the_hook_instead_of_the_reset(
    backend: str, path: Path
) -> None:
    log: list[str] = []
    async with anyio.create_task_group() as tg:
        with pytest.raises(ZeroDivisionError):
            async with trio_pool.Pool(Db, path, log, workers=1) as pool:
                leased = anyio.Event()

                async def hold_a_lease() -> None:
                    async with pool.lease(reset=Db.rollback) as db:
                        await db.call_method(Db.execute, "begin immediate")
                        leased.set()
                        await anyio.sleep_forever()

                tg.start_soon(hold_a_lease)
                await leased.wait()
                1 / 0  # noqa: B018
        tg.cancel_scope.cancel()
    assert log == ["hook ZeroDivisionError('division by zero')"]


async def test_lease_checks_its_reset(backend: str) -> None:
    async def coro(interface: object) -> None:
        pass  # pragma: no cover

    async with trio_pool.Pool(workers=1) as pool:
        with pytest.raises(TypeError, match="async function"):
            pool.lease(reset=coro)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="expected a sync function"):
            pool.lease(reset=42)  # type: ignore[arg-type]


# --- max_wait and the waiters in statistics --------------------------------------------


async def test_max_wait_sheds_a_call_that_finds_no_room(backend: str) -> None:
    gate = Gate()
    async with trio_pool.Pool(workers=1, queue_size=1, max_wait=0.01) as pool:
        running = await pool.submit(gate.enter)
        await wait_in_thread(gate.entered)
        queued = await pool.submit(str, "queued")  # the queue is full now
        with pytest.raises(trio.WouldBlock, match=r"max_wait=0\.01"):
            await pool.run(str, "shed")
        with pytest.raises(anyio.WouldBlock):
            await pool.submit(str, "shed")
        with pytest.raises(trio.WouldBlock):
            await pool.call("upper")
        stats = pool.statistics()
        assert (stats.submitted, stats.queued, stats.waiting_for_room) == (2, 1, 0)
        gate.open()
        assert (await queued.wait()).unwrap() == "queued"
        await running.wait()
        assert await pool.run(str, "room again") == "room again"


async def test_a_waiter_let_in_before_max_wait_runs_and_is_counted_while_it_waits(
    backend: str,
) -> None:
    gate = Gate()
    results: list[str] = []

    async def run(pool: trio_pool.Pool[None], n: int) -> None:
        results.append(await pool.run(str, n))

    async with trio_pool.Pool(workers=1, queue_size=1, max_wait=TIMEOUT) as pool:
        running = await pool.submit(gate.enter)
        await wait_in_thread(gate.entered)
        await pool.submit(str, "queued")
        async with anyio.create_task_group() as tg:
            for n in range(3):
                tg.start_soon(run, pool, n)
            await poll_until(lambda: pool.statistics().waiting_for_room == 3)
            assert pool.statistics().queued == 1
            gate.open()
        assert sorted(results) == ["0", "1", "2"]
        assert pool.statistics().waiting_for_room == 0
        await running.wait()


async def test_max_wait_sheds_a_lease(backend: str) -> None:
    async with trio_pool.Pool(workers=1, max_wait=0.01) as pool:
        async with pool.lease():
            with pytest.raises(trio.WouldBlock, match="no worker to lease within max_wait"):
                async with pool.lease():
                    pass  # pragma: no cover
            assert pool.statistics().waiting_for_lease == 0
        async with pool.lease() as worker:  # free again
            assert await worker.run(str, 1) == "1"


async def test_the_tasks_waiting_for_a_lease_are_counted(backend: str) -> None:
    async def lease_once(pool: trio_pool.Pool[None]) -> None:
        async with pool.lease() as worker:
            await worker.run(str, 1)

    async with trio_pool.Pool(workers=1) as pool, anyio.create_task_group() as tg:
        async with pool.lease():
            for _ in range(2):
                tg.start_soon(lease_once, pool)
            await poll_until(lambda: pool.statistics().waiting_for_lease == 2)
        await poll_until(lambda: pool.statistics().waiting_for_lease == 0)


@pytest.mark.trio
async def test_max_wait_bounds_the_wait_for_a_worker_not_only_for_room(
    mock_clock: trio.testing.MockClock,
) -> None:
    gate = Gate()
    ran: list[str] = []
    shed: list[BaseException] = []

    async def call(how: str) -> None:
        try:
            if how == "run":
                await pool.run(ran.append, how)
            else:
                await pool.call("append", how)
        except trio.WouldBlock as exc:
            shed.append(exc)

    async with trio_pool.Pool({"append": ran.append}, workers=1, max_wait=1) as pool:
        running = await pool.submit(gate.enter)
        await wait_in_thread(gate.entered)
        submitted = await pool.submit(ran.append, "submitted")  # nobody waits: never shed
        async with trio.open_nursery() as nursery:
            nursery.start_soon(call, "run")
            nursery.start_soon(call, "call")
            await poll_until(lambda: pool.statistics().queued == 3)
            mock_clock.jump(0.9)
            await trio.testing.wait_all_tasks_blocked()
            assert shed == []
            mock_clock.jump(0.2)  # no worker took them within max_wait: out, unrun
        assert len(shed) == 2
        assert all(isinstance(e, anyio.WouldBlock) for e in shed)
        assert all("no worker took the job within max_wait=1.0 s" in str(e) for e in shed)
        stats = pool.statistics()
        assert (stats.queued, stats.cancelled) == (1, 2)
        gate.open()
        await running.wait()
        assert (await submitted.wait()).unwrap() is None
    assert ran == ["submitted"]


@pytest.mark.trio
async def test_a_job_that_started_within_max_wait_is_never_shed(
    mock_clock: trio.testing.MockClock,
) -> None:
    gate = Gate()
    async with trio_pool.Pool(workers=1, max_wait=1) as pool:
        async with trio.open_nursery() as nursery:
            results: list[object] = []

            async def call() -> None:
                results.append(await pool.run(gate.enter, "ran"))

            nursery.start_soon(call)
            await wait_in_thread(gate.entered)
            mock_clock.jump(10)
            await trio.testing.wait_all_tasks_blocked()
            gate.open()
        assert results == ["ran"]


async def test_max_wait_0_runs_a_call_a_free_worker_takes_and_sheds_the_others(
    backend: str,
) -> None:
    gate = Gate()
    async with trio_pool.Pool(workers=2, max_wait=0) as pool:
        assert await pool.run(str, 1) == "1"  # an idle worker takes it: not shed
        running = [await pool.submit(gate.enter) for _ in range(2)]
        await gate.wait_arrivals(2)
        with pytest.raises(trio.WouldBlock, match="no worker took the job"):  # none is free
            await pool.run(str, 2)
        gate.open()
        for job in running:
            await job.wait()
        assert await pool.run(str, 3) == "3"


async def test_map_is_never_shed(backend: str) -> None:
    async with trio_pool.Pool(workers=1, queue_size=1, max_wait=0) as pool:
        async with pool.map(str, range(50)) as results:
            assert [r async for r in results] == [str(n) for n in range(50)]


@pytest.mark.parametrize(
    ("max_wait", "error", "message"),
    [
        (-1, ValueError, "max_wait must be at least 0, not -1"),
        (math.nan, ValueError, "max_wait must be at least 0"),
        ("1", TypeError, "max_wait must be a number of seconds, not '1'"),
        (True, TypeError, "max_wait must be a number of seconds"),
    ],
)
def test_max_wait_is_checked(max_wait: object, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        trio_pool.Pool(max_wait=max_wait)  # type: ignore[arg-type]


# --- the typed calls ----------------------------------------------------------------------


class Counter:
    def __init__(self) -> None:
        self.count = 0
        self.thread = threading.get_ident()

    def bump(self, by: int) -> tuple[int, bool]:
        self.count += by
        return self.count, threading.get_ident() == self.thread


async def test_broadcast_method_calls_each_workers_own_interface(backend: str) -> None:
    async with trio_pool.Pool(Counter, workers=3) as pool:
        first = await pool.broadcast_method(Counter.bump, 2)
        assert [o.unwrap() for o in first] == [(2, True)] * 3
        second = await pool.broadcast_method(Counter.bump, by=1)
        assert [o.unwrap() for o in second] == [(3, True)] * 3
        with pytest.raises(TypeError, match="not the name 'bump'"):
            await pool.broadcast_method("bump")  # type: ignore[arg-type]


async def test_current_interface_of_a_kind_checks_the_kind(backend: str) -> None:
    def bump_here() -> tuple[int, bool]:
        return trio_pool.current_interface(Counter).bump(5)

    def wrong_kind() -> object:
        return trio_pool.current_interface(Db)

    class Bumps(Protocol):
        def bump(self, by: int) -> tuple[int, bool]: ...

    @runtime_checkable
    class Queries(Protocol):
        def query(self) -> None: ...

    def bump_a_protocol() -> tuple[int, bool]:
        return trio_pool.current_interface(Bumps).bump(1)  # type: ignore[type-abstract]

    def query_a_protocol() -> None:
        trio_pool.current_interface(Queries)  # type: ignore[type-abstract]

    async with trio_pool.Pool(Counter, workers=1) as pool:
        assert await pool.run(bump_here) == (5, True)
        with pytest.raises(TypeError, match=r"the worker's interface is <.*Counter.*>, not a Db"):
            await pool.run(wrong_kind)
        # A protocol that isinstance cannot check is taken on trust; one it can, is checked.
        assert await pool.run(bump_a_protocol) == (6, True)
        with pytest.raises(TypeError, match="not a Queries"):
            await pool.run(query_a_protocol)


def test_a_native_asyncio_cancel_does_not_cut_a_lease_reset_short() -> None:
    # asyncio's Task.cancel() gets through anyio's shields: the lease's exit
    # must still wait for its reset, then raise the cancellation.
    entered, gate = threading.Event(), threading.Event()
    log: list[str] = []

    class Conn:
        def reset(self) -> None:
            entered.set()
            assert gate.wait(TIMEOUT)
            log.append("reset done")

    async def main() -> None:
        async with trio_pool.Pool(Conn, workers=1) as pool:

            async def lessee() -> None:
                async with pool.lease(reset=Conn.reset):
                    await asyncio.sleep(0)

            task = asyncio.create_task(lessee())
            assert await asyncio.to_thread(entered.wait, TIMEOUT)
            task.cancel()  # while the reset runs
            for _ in range(50):  # let the task see it: it must go on waiting
                await asyncio.sleep(0)
            log.append(f"the lessee ended during the reset: {task.done()}")
            gate.set()
            with pytest.raises(asyncio.CancelledError):
                await task
            log.append("the lessee raised its cancellation")

    asyncio.run(main())
    assert log == [
        "the lessee ended during the reset: False",
        "reset done",
        "the lessee raised its cancellation",
    ]
