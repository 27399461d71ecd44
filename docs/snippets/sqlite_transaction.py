"""A transaction helper: one leased worker, begin, commit, or rollback on any error."""

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

    def __exit__(self, exc_type: object, *rest: object) -> None:
        if self.conn.in_transaction:
            self.conn.execute("rollback")
        self.conn.close()


@contextlib.asynccontextmanager
async def transaction(pool: trio_pool.Pool) -> AsyncIterator[trio_pool.WorkerLease]:
    """Every call through the yielded lease runs on one connection, in one transaction."""
    async with pool.lease() as db:
        await db.interface.query("begin immediate")
        try:
            yield db
        except BaseException:
            with trio.CancelScope(shield=True):  # roll back even if we are cancelled
                await db.interface.query("rollback")
            raise
        await db.interface.query("commit")


async def main(path: Path) -> None:
    async with trio_pool.Pool(Db, path, workers=2) as pool:
        await pool.interface.query("create table accounts (name text, balance integer)")
        await pool.interface.query("insert into accounts values ('a', 100), ('b', 0)")

        async with transaction(pool) as db:
            await db.interface.query("update accounts set balance = balance - 30 where name = 'a'")
            await db.interface.query("update accounts set balance = balance + 30 where name = 'b'")

        try:
            async with transaction(pool) as db:
                await db.interface.query("update accounts set balance = 0 where name = 'a'")
                raise RuntimeError("changed my mind")
        except RuntimeError:
            pass

        rows = await pool.interface.query("select name, balance from accounts order by name")
        print(rows)


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        trio.run(main, Path(tmp) / "bank.db")
