"""What mypy and pyright infer for the public API (checked, never run).

Every ``# type: ignore`` here pins an error: mypy (``warn_unused_ignores``)
and pyright (``reportUnnecessaryTypeIgnoreComment``) fail if it goes away.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import outcome
from typing_extensions import assert_type

import trio_pool


class Db:
    def __init__(self, path: str, timeout: float = 5.0) -> None:
        self.path = path

    def query(self, sql: str, *params: object) -> list[tuple[int, ...]]:
        return []

    def rollback(self) -> None:
        pass


class Other:
    def query(self, sql: str) -> list[str]:
        return []


class Entered:
    """Its __enter__ gives the interface, as a context manager's would."""

    def __enter__(self) -> Db:
        return Db("x")

    def __exit__(self, *exc_info: object) -> None:
        pass


def add(a: int, b: int) -> int:
    return a + b


async def check(pool: trio_pool.Pool[Db]) -> None:
    assert_type(await pool.run(add, 1, 2), int)
    assert_type(await pool.call_method(Db.query, "select 1"), list[tuple[int, ...]])
    assert_type(await pool.call("query", "select 1"), outcome.Outcome[Any])
    job = await pool.submit(add, 1, 2)
    assert_type(job, trio_pool.Job[int])
    assert_type(await job.wait(), outcome.Outcome[int])
    assert_type(job.outcome, outcome.Outcome[int] | None)
    assert_type(pool.submit_nowait("query"), trio_pool.Job[Any])
    assert_type(job.worker_id, int | None)
    assert_type(pool.statistics().busy, int)
    assert_type(pool.statistics().waiting_for_room, int)
    assert_type(trio_pool.current_worker().id, int)
    assert_type(trio_pool.current_interface(Db), Db)
    assert_type(trio_pool.current_interface(), Any)
    assert_type(await pool.broadcast(add, 1, 2), list[outcome.Outcome[int]])
    assert_type(
        await pool.broadcast_method(Db.query, "x"), list[outcome.Outcome[list[tuple[int, ...]]]]
    )
    async with pool.lease(reset=Db.rollback) as worker:
        assert_type(worker, trio_pool.WorkerLease[Db])
        assert_type(await worker.call_method(Db.query, "x"), list[tuple[int, ...]])
        await worker.call_method(Other.query, "x")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    await pool.run(add, 1, "2")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    await pool.call_method(Db.query, 1)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    await pool.call_method(Other.query, "x")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    await pool.broadcast_method(Other.query, "x")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    pool.lease(reset=Other.query)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]


class SqliteDb(Db):
    pass


class Cursor:
    def fetch(self) -> list[int]:
        return []


class Connects:
    """Only __enter__: the interface is what it returns."""

    def __enter__(self) -> Cursor:
        return Cursor()


async def takes_any_db(pool: trio_pool.Pool[Db]) -> None:
    await pool.call_method(Db.query, "select 1")


async def takes_a_bare_pool(pool: trio_pool.Pool) -> None:  # a Pool[Any]: fine under --strict
    assert_type(await pool.call_method(Db.query, "x"), list[tuple[int, ...]])


async def check_variance_and_enter() -> None:
    async with trio_pool.Pool(SqliteDb, "app.db") as pool:
        await takes_any_db(pool)  # a Pool[SqliteDb] is a Pool[Db]
        await takes_a_bare_pool(pool)
    assert_type(trio_pool.Pool(Connects), trio_pool.Pool[Cursor])
    async with trio_pool.Pool(Connects) as cursors:
        assert_type(await cursors.call_method(Cursor.fetch), list[int])


def factory(size: int) -> Other:
    return Other()


async def check_what_a_pool_is_of() -> None:
    assert_type(trio_pool.Pool(Db, "app.db"), trio_pool.Pool[Db])
    assert_type(trio_pool.Pool(Db, "app.db", 1.0, workers=2), trio_pool.Pool[Db])
    assert_type(trio_pool.Pool(factory, 3), trio_pool.Pool[Other])
    assert_type(trio_pool.Pool(Entered), trio_pool.Pool[Db])
    assert_type(trio_pool.Pool(), trio_pool.Pool[None])
    assert_type(trio_pool.Pool({"len": len}), trio_pool.Pool[Mapping[str, Callable[..., Any]]])
    trio_pool.Pool(Db, 1, 2, 3)  # type: ignore[arg-type, call-arg]  # pyright: ignore[reportCallIssue, reportArgumentType]
    trio_pool.Pool(Db)  # type: ignore[arg-type, call-arg]  # pyright: ignore[reportCallIssue, reportArgumentType]
    trio_pool.Pool(factory, "3")  # type: ignore[arg-type]  # pyright: ignore[reportCallIssue, reportArgumentType]
    for host in (trio_pool.ThreadHost(), trio_pool.ProcessHost(), trio_pool.RayHost(num_cpus=1)):
        assert_type(trio_pool.Pool(Db, "app.db", host=host), trio_pool.Pool[Db])
    trio_pool.Pool(Db, "app.db", host="ray")  # type: ignore[call-overload]  # pyright: ignore[reportCallIssue, reportArgumentType]


async def check_the_block_swallows_nothing() -> int:
    # __aexit__ returns None: after the block, what it assigned is bound, and a
    # return inside it is the function's only return (no "missing return").
    async with trio_pool.Pool(Db, "app.db") as pool:
        rows = await pool.call_method(Db.query, "select 1")
    assert_type(rows, list[tuple[int, ...]])
    async with trio_pool.Pool(Db, "app.db") as pool:
        assert_type(pool, trio_pool.Pool[Db])
        return len(rows)


async def check_map_over_several_iterables(pool: trio_pool.Pool[None]) -> None:
    assert_type(pool.map(str, [1, 2]), trio_pool.MapResults[str])
    assert_type(pool.map(add, [1, 2], [3, 4]), trio_pool.MapResults[int])
    assert_type(pool.map(add, [1], [2], outcomes=True), trio_pool.MapResults[outcome.Outcome[int]])
    assert_type(pool.map(max, [1], [2], [3]), trio_pool.MapResults[Any])
    pool.map(add, [1], ["2"])  # type: ignore[arg-type]  # pyright: ignore[reportCallIssue, reportArgumentType]
