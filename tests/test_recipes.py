"""The documented SQLite recipes hold under cancellation at random moments, on every loop.

A transfer is acknowledged when its caller saw it finish. Whatever deadlines
and cancellations hit, money is conserved, every acknowledged transfer is in
the database, and no worker is left inside a transaction.
"""

from __future__ import annotations

import asyncio
import importlib.util
import random
import sqlite3
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import ModuleType

import anyio
import pytest

import trio_pool

ROOT = Path(__file__).parent.parent


def load(relative: str) -> ModuleType:
    path = ROOT / relative
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


snippet = load("docs/snippets/sqlite_transaction.py")
ACCOUNTS = ["a", "b", "c", "d"]


def make_bank(path: Path) -> None:
    conn = sqlite3.connect(path)
    with conn:
        conn.execute("create table accounts (name text, balance integer)")
        conn.execute("create table transfers (id integer)")
        conn.executemany("insert into accounts values (?, 100)", [(a,) for a in ACCOUNTS])
    conn.close()


def read_bank(path: Path) -> tuple[int, set[int]]:
    conn = sqlite3.connect(path)
    try:
        (total,) = conn.execute("select sum(balance) from accounts").fetchone()
        ids = {i for (i,) in conn.execute("select id from transfers")}
        return total, ids
    finally:
        conn.close()


UPDATE = "update accounts set balance = balance + ? where name = ?"


async def transfer_through_a_lease(
    pool: trio_pool.Pool[snippet.Db], n: int, rng: random.Random
) -> None:
    source, target = rng.sample(ACCOUNTS, 2)
    query = snippet.Db.query
    async with snippet.transaction(pool) as db:
        await db.call_method(query, UPDATE, -1, source)
        await db.call_method(query, UPDATE, 1, target)
        await db.call_method(query, "insert into transfers values (?)", n)


Cancel = Callable[[Awaitable[None], float], Awaitable[bool]]


async def anyio_deadline(call: Awaitable[None], seconds: float) -> bool:
    """True if ``call`` finished before an anyio deadline."""
    with anyio.move_on_after(seconds):
        await call
        return True
    return False


async def native_asyncio_cancel(call: Awaitable[None], seconds: float) -> bool:
    """True if ``call`` finished before a native ``Task.cancel()``."""
    try:
        await asyncio.wait_for(call, seconds)
    except (asyncio.TimeoutError, TimeoutError):
        return False
    return True


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_the_transaction_helper_loses_nothing_under_random_cancellations(
    backend: str, tmp_path: Path, seed: int
) -> None:
    cancellers: list[Cancel] = [anyio_deadline]
    if backend == "anyio-asyncio":
        cancellers.append(native_asyncio_cancel)
    rng = random.Random(seed)
    path = tmp_path / "bank.db"
    make_bank(path)
    acknowledged: set[int] = set()

    async def one(n: int, seed: float) -> None:
        task_rng = random.Random(seed)  # drawn in order below: a seed repeats its plan
        cancel = task_rng.choice(cancellers)
        seconds = task_rng.choice([0, 0.0001, 0.0003, 0.001, 0.003, 10])
        if await cancel(transfer_through_a_lease(pool, n, task_rng), seconds):
            acknowledged.add(n)

    async with trio_pool.Pool(snippet.Db, path, workers=3) as pool:
        async with anyio.create_task_group() as tg:
            for n in range(150):
                tg.start_soon(one, n, rng.random())
        inside = [o.unwrap() for o in await pool.broadcast_method(snippet.Db.in_transaction)]
        assert inside == [False] * 3
    total, committed = read_bank(path)
    assert total == 100 * len(ACCOUNTS)
    assert acknowledged <= committed
    assert acknowledged  # the long deadlines let some through


async def test_a_transaction_cancelled_at_its_commit_is_rolled_back(
    backend: str, tmp_path: Path
) -> None:
    path = tmp_path / "bank.db"
    make_bank(path)
    async with trio_pool.Pool(snippet.Db, path, workers=1) as pool:
        with anyio.CancelScope() as scope:
            async with snippet.transaction(pool) as db:
                await db.call_method(snippet.Db.query, UPDATE, -50, "a")
                scope.cancel()  # the helper's commit is the next await: it never runs
        assert scope.cancelled_caught
        # The one worker is free of the transaction, and the update is gone.
        assert not await pool.call_method(snippet.Db.in_transaction)
        assert await pool.call_method(snippet.Db.query, "select balance from accounts") == [
            (100,)
        ] * len(ACCOUNTS)
