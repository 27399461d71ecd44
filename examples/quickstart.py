"""The pool in one page: an interface per worker thread, and every way to call work."""

import hashlib
import threading

import trio

import trio_pool


class Hasher:
    """Each worker builds one of these, in its own thread."""

    def __init__(self, algorithm: str) -> None:
        self.algorithm = algorithm
        self.thread = threading.current_thread().name

    def digest(self, data: bytes) -> str:
        return hashlib.new(self.algorithm, data).hexdigest()[:16]

    def __exit__(self, *exc_info: object) -> None:
        print(f"  {self.thread} closed its hasher")


def slow_square(x: int) -> int:
    return x * x


async def main() -> None:
    async with trio_pool.Pool(Hasher, "sha256", workers=2) as pool:
        # A method of the interface, run on the worker's own Hasher: the value,
        # or it raises. Typed: mypy and pyright know this returns a str.
        print("digest:", await pool.call_method(Hasher.digest, b"hello"))
        # The same by name, untyped.
        print("interface:", await pool.interface.digest(b"hello"))
        # By name, as an outcome.Outcome: errors come back inside it.
        print("call:", await pool.call("digest", b"hello"))
        print("unknown op:", await pool.call("nope"))
        # Any function, in a worker thread.
        print("run:", await pool.run(len, b"abc"))
        # Start now, collect later.
        jobs = [await pool.submit(slow_square, n) for n in range(5)]
        print("jobs:", [(await job.wait()).unwrap() for job in jobs])
        stats = pool.statistics()
        print(f"stats: {stats.workers} workers, {stats.completed} completed, {stats.failed} failed")
    print("all workers stopped")


if __name__ == "__main__":
    trio.run(main)
