"""Leases: exclusive use of one worker, its reset, and leases racing the pool's close."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

import anyio
import pytest

import trio_pool

from helpers import (
    TIMEOUT,
    Gate,
    poll_until,
    wait_in_thread,
)


async def test_a_lease_whose_worker_is_busy_as_the_pool_begins_closing_is_refused(
    backend: str,
) -> None:
    gate = Gate()
    resets: list[object] = []
    entry: list[str] = []
    async with anyio.create_task_group() as tg:
        async with trio_pool.Pool(workers=1) as pool:
            job = pool.submit_nowait(gate.enter, "shared")
            await wait_in_thread(gate.entered)

            async def lessee() -> None:
                try:
                    async with pool.lease(reset=resets.append):
                        entry.append("entered")
                except trio_pool.PoolClosedError:
                    entry.append("refused")

            tg.start_soon(lessee)
            # The busy worker is leased; the lessee waits for its shared job to end.
            await poll_until(lambda: pool.statistics().worker_states[0].leased)
            tg.start_soon(pool.aclose)  # a normal close starts meanwhile
            await poll_until(lambda: "closing" in repr(pool))
            gate.open()
    assert entry == ["refused"]  # the pool's leases ended: nothing to reset, nothing shared
    assert resets == []
    assert job.outcome is not None
    assert job.outcome.unwrap() == "shared"


def test_a_native_cancel_while_a_reset_runs_does_not_lose_the_resets_error() -> None:
    gate = Gate()

    def failing_reset(interface: object) -> None:
        gate.enter()
        raise OSError("the reset failed")

    async def main() -> None:
        async with trio_pool.Pool(workers=1) as pool:

            async def lessee() -> None:
                async with pool.lease(reset=failing_reset):
                    pass

            task = asyncio.ensure_future(lessee())
            await wait_in_thread(gate.entered)
            task.cancel()  # lands while the lease waits for its reset
            await asyncio.sleep(0)
            gate.open()
            # The reset's error wins over the cancellation, as in an asyncio.TaskGroup.
            with pytest.raises(OSError, match="the reset failed"):
                await task
            assert not pool.statistics().worker_states[0].leased
            assert await pool.run(int, "3") == 3

    asyncio.run(asyncio.wait_for(main(), TIMEOUT))


def test_a_native_cancel_while_a_reset_runs_is_raised_when_the_reset_succeeds() -> None:
    gate = Gate()

    async def main() -> None:
        async with trio_pool.Pool(workers=1) as pool:

            async def lessee() -> None:
                async with pool.lease(reset=gate.enter):
                    pass

            task = asyncio.ensure_future(lessee())
            await wait_in_thread(gate.entered)
            task.cancel()
            await asyncio.sleep(0)
            gate.open()
            with pytest.raises(asyncio.CancelledError):
                await task

    asyncio.run(asyncio.wait_for(main(), TIMEOUT))


def worker_id() -> int:
    return trio_pool.current_worker().id


class Db:
    def __init__(self, path: Path) -> None:
        self.conn = sqlite3.connect(path, timeout=TIMEOUT, isolation_level=None)

    def execute(self, sql: str, *params: object) -> list[tuple[Any, ...]]:
        return self.conn.execute(sql, params).fetchall()

    def __exit__(self, *exc_info: object) -> None:
        self.conn.close()


async def test_a_transaction_through_a_lease(backend: str, tmp_path: Path) -> None:
    path = tmp_path / "t.db"
    sqlite3.connect(path).execute("create table t (n integer)").connection.close()
    async with trio_pool.Pool(Db, path, workers=3) as pool:
        async with pool.lease() as db:
            await db.call_method(Db.execute, "begin")
            await db.interface.execute("insert into t values (1)")
            # Other tasks keep using the rest of the pool meanwhile...
            others = {await pool.run(worker_id) for _ in range(30)}
            assert db.id not in others
            # ...and do not see the uncommitted row.
            assert await pool.interface.execute("select count(*) from t") == [(0,)]
            assert (await db.call("execute", "insert into t values (2)")).unwrap() == []
            assert await db.run(worker_id) == db.id
            await db.interface.execute("commit")
        assert await pool.interface.execute("select sum(n) from t") == [(3,)]
        assert not any(w.leased for w in pool.statistics().worker_states)
        with pytest.raises(RuntimeError, match="ended"):
            await db.run(int)


async def test_leaving_a_lease_by_error_or_cancellation_returns_the_worker(backend: str) -> None:
    async with trio_pool.Pool(workers=1) as pool:
        with pytest.raises(KeyError):
            async with pool.lease() as worker:
                assert pool.statistics().worker_states[0].leased
                raise KeyError("inside")
        assert not pool.statistics().worker_states[0].leased
        with anyio.CancelScope() as scope:
            async with pool.lease():
                scope.cancel()
                await anyio.sleep_forever()
        assert not pool.statistics().worker_states[0].leased
        assert await pool.run(str, 1) == "1"
        assert worker.id == 0


async def test_a_lease_refuses_what_the_pool_refuses(backend: str) -> None:
    async def coro() -> None:
        pass  # pragma: no cover

    async with trio_pool.Pool(workers=1) as pool, pool.lease() as worker:
        with pytest.raises(TypeError, match="async function"):
            await worker.run(coro)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="async function"):
            await worker.call_method(coro)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="expected a sync function, not 42"):
            await worker.run(42)  # type: ignore[arg-type]
        # A name is an operation: the error says where names go.
        with pytest.raises(TypeError, match=r"not the name 'query'.*call\('query', ...\)"):
            await worker.run("query")  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="name of an operation"):
            await worker.call(len)  # type: ignore[arg-type]
        assert pool.statistics().submitted == 0  # refused before reaching the worker


async def test_a_lease_waits_while_every_worker_is_leased(backend: str) -> None:
    order: list[str] = []
    async with trio_pool.Pool(workers=1) as pool:
        async with anyio.create_task_group() as tg, pool.lease():

            async def second() -> None:
                async with pool.lease():
                    order.append("second")

            tg.start_soon(second)
            await anyio.wait_all_tasks_blocked()
            order.append("first")
        assert order == ["first", "second"]


async def test_a_lease_call_once_the_pool_closes_says_so_even_in_a_cancelled_scope(
    backend: str,
) -> None:
    async with trio_pool.Pool(workers=1) as pool, anyio.create_task_group() as tg:
        async with pool.lease() as worker:
            tg.start_soon(pool.aclose)
            await poll_until(lambda: "closing" in repr(pool) or "closed" in repr(pool))
            said = "nothing"
            with anyio.CancelScope() as scope:
                scope.cancel()
                try:
                    await worker.run(int, "1")
                except trio_pool.PoolClosedError:
                    said = "closed"
            assert said == "closed"  # not a cancellation: the call could never have run
