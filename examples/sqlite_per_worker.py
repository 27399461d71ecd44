"""One SQLite connection per worker thread; a transaction as one job, and one through a lease.

sqlite3 connections may only be used by the thread that created them: the
pool builds one per worker, runs every query there, and closes it in the same
thread. A transaction is best one job (one method doing begin ... commit): it
runs whole or not at all, whatever happens to its caller. When a transaction
must span several calls, lease a worker with a reset that rolls back what the
block left open, however the block ended.
"""

import sqlite3
import sys
import tempfile
from pathlib import Path
from types import TracebackType

import trio

import trio_pool


class Db:
    def __init__(self, path: Path) -> None:
        # Autocommit mode: transactions are explicit (begin ... commit).
        self.conn = sqlite3.connect(path, timeout=10, isolation_level=None)

    def query(self, sql: str, *params: object) -> list[tuple[object, ...]]:
        return self.conn.execute(sql, params).fetchall()

    def execute(self, sql: str, *params: object) -> int:
        return self.conn.execute(sql, params).rowcount

    def merge_pages(self, old: str, new: str) -> int:
        """One operation, one transaction: it commits whole, or rolls back whole."""
        self.conn.execute("begin immediate")
        try:
            moved = self.conn.execute(
                "insert into visits select ?, n from visits where page = ?", (new, old)
            ).rowcount
            self.conn.execute("delete from visits where page = ?", (old,))
        except BaseException:
            self.conn.execute("rollback")
            raise
        self.conn.execute("commit")
        return moved

    def rollback_if_open(self) -> None:
        """The lease's reset: end a transaction the block left open."""
        if self.conn.in_transaction:
            self.conn.execute("rollback")

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.rollback_if_open()  # never commit what nobody finished
        self.conn.close()


async def main(path: Path) -> None:
    with sqlite3.connect(path) as setup:
        setup.execute("create table if not exists visits (page text, n integer)")
    setup.close()

    async with trio_pool.Pool(Db, path, workers=4) as pool:
        async with trio.open_nursery() as nursery:
            for page in ["home", "about", "blog", "index"] * 10:
                nursery.start_soon(
                    pool.call_method, Db.execute, "insert into visits values (?, 1)", page
                )
        moved = await pool.call_method(Db.merge_pages, "index", "home")
        print(f"merged {moved} visits of index into home")

        # Several calls in one transaction need one connection, so one worker:
        # lease it. The reset runs in the worker's thread when the block ends,
        # however it ends (an error, a cancellation), before anyone else gets it.
        async with pool.lease(reset=Db.rollback_if_open) as db:
            await db.call_method(Db.execute, "begin immediate")
            await db.call_method(Db.execute, "update visits set n = 2 where page = 'home'")
            before = await pool.call_method(
                Db.query, "select sum(n) from visits where page = 'home'"
            )
            await db.call_method(Db.execute, "commit")
        after = await pool.call_method(Db.query, "select sum(n) from visits where page = 'home'")
        print(
            "home during the transaction, seen from another worker: "
            f"{before[0][0]}; after: {after[0][0]}"
        )
        rows = await pool.call_method(
            Db.query, "select page, sum(n) from visits group by page order by page"
        )
        for page, count in rows:
            print(f"{page}: {count} visits")
        threads = {w.name for w in pool.statistics().worker_states}
        print(f"{len(threads)} connections, one per worker thread")


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        trio.run(main, Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tmp) / "visits.db")
