"""Per-call overhead of one sequential round trip: the pool against trio.to_thread.

    python benchmarks/overhead.py [calls] [rounds]

Peers are interleaved within each round and the medians printed, because a
shared machine's speed drifts; compare the ratio, not the absolute numbers.
"""

from __future__ import annotations

import statistics
import sys
import time

import trio

import trio_pool


def noop() -> None:
    return None


async def main(calls: int, rounds: int) -> None:
    limiter = trio.CapacityLimiter(4)
    pool_us: list[float] = []
    to_thread_us: list[float] = []
    async with trio_pool.Pool(workers=4) as pool:
        for _ in range(rounds):
            start = time.perf_counter()
            for _ in range(calls):
                await pool.run(noop)
            pool_us.append((time.perf_counter() - start) / calls * 1e6)
            start = time.perf_counter()
            for _ in range(calls):
                await trio.to_thread.run_sync(noop, limiter=limiter)
            to_thread_us.append((time.perf_counter() - start) / calls * 1e6)
    pool_median = statistics.median(pool_us)
    to_thread_median = statistics.median(to_thread_us)
    print(f"median of {rounds} rounds of {calls} sequential calls")
    print(f"await pool.run(noop):                {pool_median:7.1f} µs per call")
    print(f"await trio.to_thread.run_sync(noop): {to_thread_median:7.1f} µs per call")
    print(f"ratio pool / to_thread:              {pool_median / to_thread_median:7.2f}")


if __name__ == "__main__":
    trio.run(
        main,
        int(sys.argv[1]) if len(sys.argv) > 1 else 2000,
        int(sys.argv[2]) if len(sys.argv) > 2 else 7,
    )
