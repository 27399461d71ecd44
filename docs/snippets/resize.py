"""Resizing a pool by hand, and autoscaling on the event loop's clock."""

import threading
import time

import trio
import trio.lowlevel
import trio.testing

import trio_pool

exited: list[str] = []  # thread names, appended by the exit hooks


class Model:
    def __exit__(self, *exc_info: object) -> None:
        exited.append(threading.current_thread().name)


def names(pool: trio_pool.Pool) -> list[str]:
    return [w.name for w in pool.statistics().worker_states]


async def by_hand() -> None:
    async with trio_pool.Pool(Model, workers=2, name="db") as pool:
        print("start:", names(pool))
        await pool.resize(3)  # returns once the new worker has loaded
        print("resize(3):", names(pool))
        await pool.stop_workers(2)  # idle ones first, youngest first
        print("stop_workers(2):", names(pool), "- hooks ran in:", sorted(exited))
        await pool.ensure(at_least=2, at_most=8)
        print("ensure(at_least=2, at_most=8):", names(pool))


def loaded_workers(pool: trio_pool.Pool) -> int:
    return sum(w.state != "starting" for w in pool.statistics().worker_states)


async def wait_for_workers(pool: trio_pool.Pool, count: int) -> None:
    """Wait until exactly ``count`` workers are alive and loaded.

    Threads start and stop in real time, while the loop's clock is a MockClock.
    """
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if pool.statistics().workers == loaded_workers(pool) == count:
            return
        await trio.testing.wait_all_tasks_blocked()
        await trio.lowlevel.checkpoint()
    raise TimeoutError(f"expected {count} workers")


async def autoscaled(clock: trio.testing.MockClock) -> None:
    gate = threading.Event()
    async with trio_pool.Pool(min_workers=1, max_workers=3, idle_timeout=30) as pool:
        print("autoscaling starts with", pool.worker_count, "worker")
        jobs = [await pool.submit(gate.wait, 10) for _ in range(5)]
        await wait_for_workers(pool, 3)
        print("5 jobs wait and no worker is free: grown to", pool.worker_count)
        gate.set()
        for job in jobs:
            await job.wait()
        clock.jump(29)
        await trio.testing.wait_all_tasks_blocked()
        print("idle for 29 s:", pool.worker_count, "workers")
        clock.jump(2)
        await wait_for_workers(pool, 1)
        stats = pool.statistics()
        print(f"idle for 31 s: {stats.workers} worker (min_workers)")
        print(f"scaled_up={stats.scaled_up} scaled_down={stats.scaled_down}")


if __name__ == "__main__":
    trio.run(by_hand)
    clock = trio.testing.MockClock()
    trio.run(autoscaled, clock, clock=clock)
