"""The pool inside an anyio program, on asyncio (or trio: pass "trio").

The same code runs on either event loop: anyio's task group fans out the
work, the pool's workers do the blocking part, and a deadline cancels what
is left cooperatively.
"""

import sys
import time
import zlib

import anyio

import trio_pool


class Compressor:
    """One zlib compressor per worker thread, reused from job to job."""

    def __init__(self, level: int) -> None:
        self.level = level

    def compress(self, data: bytes) -> int:
        return len(zlib.compress(data, self.level))


def slow_job() -> str:
    while True:  # blocking work that stops when its caller gives up
        trio_pool.check_cancelled()
        time.sleep(0.01)


async def main() -> None:
    chunks = [bytes([n]) * 100_000 for n in range(8)]
    sizes: dict[int, int] = {}
    async with trio_pool.Pool(Compressor, 9, workers=4) as pool:

        async def compress(n: int) -> None:
            sizes[n] = await pool.interface.compress(chunks[n])

        async with anyio.create_task_group() as tg:
            for n in range(len(chunks)):
                tg.start_soon(compress, n)
        print(
            f"compressed {len(sizes)} chunks of 100000 bytes to {sorted(set(sizes.values()))} bytes"
        )

        with anyio.move_on_after(0.1) as scope:
            await pool.run(slow_job)
        print("slow job cancelled by the deadline:", scope.cancelled_caught)
        stats = pool.statistics()
        print(f"completed={stats.completed} cancelled={stats.cancelled}")


if __name__ == "__main__":
    backend = sys.argv[1] if len(sys.argv) > 1 else "asyncio"
    print("running on", backend)
    anyio.run(main, backend=backend)
