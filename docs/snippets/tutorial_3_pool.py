"""Tutorial, step 3: a Pool whose workers each build their own interface."""

import sqlite3
import threading

import trio

import trio_pool

WORDS = ["trio", "trial", "pool", "poll", "thread"]


class Words:
    """One per worker thread: built there, used there, closed there."""

    def __init__(self, words: list[str]) -> None:  # runs once, in the worker thread
        self.conn = sqlite3.connect(":memory:")  # usable only in this thread
        self.conn.execute("create table words (word text)")
        self.conn.executemany("insert into words values (?)", [(w,) for w in words])
        self.thread = threading.current_thread().name

    def count(self, prefix: str) -> int:
        sql = "select count(*) from words where word like ? || '%'"
        (n,) = self.conn.execute(sql, (prefix,)).fetchone()
        return int(n)

    def where(self) -> str:
        return self.thread

    def __exit__(self, *exc_info: object) -> None:  # runs once, in the same thread
        self.conn.close()


async def main() -> None:
    async with trio_pool.Pool(Words, WORDS, workers=2) as pool:
        # An operation of the interface, awaited like a method: the value, or it raises.
        print("tri:", await pool.interface.count("tri"))
        # The same as an outcome.Outcome: errors come back inside it.
        print("call:", await pool.call("count", "po"))
        print("unknown:", await pool.call("nope"))
        # Typed: mypy and pyright infer int from Words.count.
        print("call_method:", await pool.call_method(Words.count, "t"))
        # Any function, in a worker thread.
        print("run:", await pool.run(sum, [1, 2, 3]))
        # Many calls at once: the two workers share them.
        threads: set[str] = set()

        async def one() -> None:
            threads.add(await pool.interface.where())

        async with trio.open_nursery() as nursery:
            for _ in range(20):
                nursery.start_soon(one)
        print("at most two threads:", len(threads) <= 2)
    print("every connection closed in its own thread")


if __name__ == "__main__":
    trio.run(main)
