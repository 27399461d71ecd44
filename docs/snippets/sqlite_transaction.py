"""A transaction helper: one leased worker, begin, commit; a reset rolls back the rest."""

import contextlib
import sqlite3
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import trio

import trio_pool


class Db:
    def __init__(self, path: Path) -> None:
        # isolation_level=None: sqlite3 leaves transactions to us (begin ... commit).
        self.conn = sqlite3.connect(path, timeout=10, isolation_level=None)

    def query(self, sql: str, *params: object) -> list[tuple[object, ...]]:
        return self.conn.execute(sql, params).fetchall()

    def in_transaction(self) -> bool:
        return self.conn.in_transaction

    def rollback_if_open(self) -> None:
        if self.conn.in_transaction:
            self.conn.execute("rollback")

    def __exit__(self, *exc_info: object) -> None:
        self.rollback_if_open()
        self.conn.close()


@contextlib.asynccontextmanager
async def transaction(pool: trio_pool.Pool[Db]) -> AsyncIterator[trio_pool.WorkerLease[Db]]:
    """Every call through the yielded lease runs on one connection, in one transaction.

    It commits if the block succeeds. If anything else happens (an error, a
    cancellation at any await, ``begin`` and ``commit`` included), the lease's
    reset rolls back in the worker's thread before another task gets it.
    """
    async with pool.lease(reset=Db.rollback_if_open) as db:
        await db.call_method(Db.query, "begin immediate")
        yield db
        await db.call_method(Db.query, "commit")


async def main(path: Path) -> None:
    async with trio_pool.Pool(Db, path, workers=2) as pool:
        await pool.call_method(Db.query, "create table accounts (name text, balance integer)")
        await pool.call_method(Db.query, "insert into accounts values ('a', 100), ('b', 0)")

        async with transaction(pool) as db:
            await db.call_method(
                Db.query, "update accounts set balance = balance - 30 where name = 'a'"
            )
            await db.call_method(
                Db.query, "update accounts set balance = balance + 30 where name = 'b'"
            )

        try:
            async with transaction(pool) as db:
                await db.call_method(Db.query, "update accounts set balance = 0 where name = 'a'")
                raise RuntimeError("changed my mind")
        except RuntimeError:
            pass

        with trio.CancelScope() as scope:  # cancelled just before its commit
            async with transaction(pool) as db:
                await db.call_method(Db.query, "update accounts set balance = 0 where name = 'b'")
                scope.cancel()

        rows = await pool.call_method(Db.query, "select name, balance from accounts order by name")
        print(rows)
        inside = [o.unwrap() for o in await pool.broadcast_method(Db.in_transaction)]
        print(f"workers inside a transaction: {inside}")


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        trio.run(main, Path(tmp) / "bank.db")
