"""One SQLite connection per worker thread, and a transaction through a lease.

sqlite3 connections may only be used by the thread that created them: the
pool builds one per worker, runs every query there, and closes it in the same
thread (rolling back a transaction left open if the pool stops on an error).
A transaction spans several calls on one connection, so it leases one worker.
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

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.conn.in_transaction:  # a transaction left open: keep it only on success
            self.conn.execute("commit" if exc_type is None else "rollback")
        self.conn.close()


async def main(path: Path) -> None:
    with sqlite3.connect(path) as setup:
        setup.execute("create table if not exists visits (page text, n integer)")
    setup.close()

    async with trio_pool.Pool(Db, path, workers=4) as pool:
        async with trio.open_nursery() as nursery:
            for page in ["home", "about", "blog"] * 10:
                nursery.start_soon(
                    pool.call_method, Db.execute, "insert into visits values (?, 1)", page
                )
        # A transaction needs one connection, so one worker: lease it. Other
        # tasks keep using the other workers meanwhile.
        async with pool.lease() as db:
            await db.interface.query("begin")
            await db.interface.query("update visits set n = 2 where page = 'home'")
            before = await pool.interface.query("select sum(n) from visits where page = 'home'")
            await db.interface.query("commit")
        after = await pool.interface.query("select sum(n) from visits where page = 'home'")
        print(
            "home during the transaction, seen from another worker: "
            f"{before[0][0]}; after: {after[0][0]}"
        )
        rows = await pool.interface.query(
            "select page, sum(n) from visits group by page order by page"
        )
        for page, count in rows:
            print(f"{page}: {count} visits")
        threads = {w.name for w in pool.statistics().worker_states}
        print(f"{len(threads)} connections, one per worker thread")


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        trio.run(main, Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tmp) / "visits.db")
