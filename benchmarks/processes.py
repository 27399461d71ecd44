"""Worker processes against their peers, interleaved in one run; medians of the rounds.

    python -m benchmarks.processes [--rounds 3] [--out benchmarks/processes.md]

Peers (each on trio unless named): the pool with ``ProcessHost`` (on trio
and on asyncio), ``trio_parallel.run_sync``, ``anyio.to_process.run_sync``
and a ``ProcessPoolExecutor`` through ``run_in_executor`` (asyncio); and the
floor, on trio and on asyncio: the fastest honest minimal loop-driven process
worker (:func:`_floor`), to say how far the pool is from what the machine
allows. Scenarios:

- tiny: round trips of a trivial call, 16 outstanding, 2 workers (calls/s);
- latency: one call at a time, 1 worker (p50, µs);
- cpu: pure-Python CPU-bound work, speedup from 1 to 2 workers;
- mib: a 1 MiB argument sent and returned (round trips/s, 2 workers).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing
import pickle
import signal
import statistics
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import anyio
import anyio.to_process
import sniffio
import trio
import trio_parallel

import trio_pool
from benchmarks._work import add_one, count_primes, echo

Call = Callable[..., Awaitable[Any]]
Opener = Callable[[int], contextlib.AbstractAsyncContextManager[Call]]


@contextlib.asynccontextmanager
async def _pool(workers: int) -> AsyncIterator[Call]:
    async with trio_pool.Pool(workers=workers, host=trio_pool.ProcessHost()) as pool:
        yield pool.run


@contextlib.asynccontextmanager
async def _trio_parallel(workers: int) -> AsyncIterator[Call]:
    limiter = trio.CapacityLimiter(workers)
    async with trio_parallel.open_worker_context() as context:

        async def call(fn: Callable[..., Any], *args: Any) -> Any:
            return await context.run_sync(fn, *args, limiter=limiter)

        yield call


@contextlib.asynccontextmanager
async def _anyio_to_process(workers: int) -> AsyncIterator[Call]:
    limiter = anyio.CapacityLimiter(workers)

    async def call(fn: Callable[..., Any], *args: Any) -> Any:
        return await anyio.to_process.run_sync(fn, *args, limiter=limiter)

    yield call


@contextlib.asynccontextmanager
async def _executor(workers: int) -> AsyncIterator[Call]:
    loop = asyncio.get_running_loop()
    with ProcessPoolExecutor(workers) as executor:

        async def call(fn: Callable[..., Any], *args: Any) -> Any:
            return await loop.run_in_executor(executor, fn, *args)

        yield call


# --- the floor: one long-lived child per worker, length-prefixed pickle frames over
# a pipe, the calling task writes its frame and waits for the reply on the loop
# itself, one call in flight per worker, a cancelled caller's reply read and dropped.


def _floor_child(conn: Any) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    while True:
        try:
            fn, args = pickle.loads(conn.recv_bytes())
        except EOFError:
            return
        try:
            reply = (True, fn(*args))
        except BaseException as exc:
            reply = (False, exc)
        conn.send_bytes(pickle.dumps(reply, protocol=5))


async def _readable(fd: int) -> None:
    if sniffio.current_async_library() == "trio":
        await trio.lowlevel.wait_readable(fd)
        return
    loop = asyncio.get_running_loop()
    ready = loop.create_future()
    loop.add_reader(fd, ready.set_result, None)
    try:
        await ready
    finally:
        loop.remove_reader(fd)


@contextlib.asynccontextmanager
async def _floor(workers: int) -> AsyncIterator[Call]:
    context = multiprocessing.get_context("forkserver")
    pipes = [context.Pipe() for _ in range(workers)]
    children = [context.Process(target=_floor_child, args=(end,)) for _, end in pipes]
    for child in children:
        child.start()
    for _, end in pipes:
        end.close()
    free = [conn for conn, _ in pipes]
    room = anyio.Semaphore(workers)

    async def call(fn: Callable[..., Any], *args: Any) -> Any:
        async with room:
            conn = free.pop()
            try:
                conn.send_bytes(pickle.dumps((fn, args), protocol=5))
                try:
                    await _readable(conn.fileno())
                except BaseException:
                    with anyio.CancelScope(shield=True):  # the reply is read, and dropped
                        await _readable(conn.fileno())
                        conn.recv_bytes()
                    raise
                ok, value = pickle.loads(conn.recv_bytes())
            finally:
                free.append(conn)
        if not ok:
            raise value
        return value

    try:
        yield call
    finally:
        for conn, _ in pipes:
            conn.close()
        for child in children:
            child.join()


PEERS: dict[str, tuple[str, Opener]] = {
    "trio_pool ProcessHost": ("trio", _pool),
    "trio_pool ProcessHost (asyncio)": ("asyncio", _pool),
    "trio_parallel": ("trio", _trio_parallel),
    "anyio.to_process": ("trio", _anyio_to_process),
    "ProcessPoolExecutor (asyncio)": ("asyncio", _executor),
    "floor": ("trio", _floor),
    "floor (asyncio)": ("asyncio", _floor),
}
#: The pool itself, and the floors: not peers to beat.
OURS = ("trio_pool ProcessHost", "trio_pool ProcessHost (asyncio)", "floor", "floor (asyncio)")


def run_on(loop: str, async_fn: Callable[[], Awaitable[float]]) -> float:
    if loop == "trio":
        return trio.run(async_fn)
    return asyncio.run(async_fn())  # type: ignore[arg-type]


async def warm(call: Call, workers: int) -> None:
    """Start every worker process before timing (each peer starts them lazily or not)."""
    async with anyio.create_task_group() as tasks:
        for _ in range(workers):
            tasks.start_soon(call, time.sleep, 0.05)


def tiny(loop: str, opener: Opener) -> float:
    calls, outstanding = 2000, 16

    async def main() -> float:
        async with opener(2) as call:
            await warm(call, 2)

            async def client() -> None:
                for i in range(calls // outstanding):
                    await call(add_one, i)

            start = time.perf_counter()
            async with anyio.create_task_group() as tasks:
                for _ in range(outstanding):
                    tasks.start_soon(client)
            return calls / (time.perf_counter() - start)

    return run_on(loop, main)


def latency(loop: str, opener: Opener) -> float:
    async def main() -> float:
        async with opener(1) as call:
            await warm(call, 1)
            samples = []
            for i in range(300):
                start = time.perf_counter()
                await call(add_one, i)
                samples.append(time.perf_counter() - start)
            return statistics.median(samples) * 1e6

    return run_on(loop, main)


def cpu(loop: str, opener: Opener) -> float:
    def timed(workers: int) -> float:
        async def main() -> float:
            async with opener(workers) as call:
                await warm(call, workers)
                start = time.perf_counter()
                async with anyio.create_task_group() as tasks:
                    for _ in range(4):
                        tasks.start_soon(call, count_primes, 60_000)
                return time.perf_counter() - start

        return run_on(loop, main)

    return timed(1) / timed(2)


def mib(loop: str, opener: Opener) -> float:
    data = bytes(1024 * 1024)

    async def main() -> float:
        async with opener(2) as call:
            await warm(call, 2)
            start = time.perf_counter()
            async with anyio.create_task_group() as tasks:
                for _ in range(4):

                    async def client() -> None:
                        for _ in range(25):
                            assert len(await call(echo, data)) == len(data)

                    tasks.start_soon(client)
            return 100 / (time.perf_counter() - start)

    return run_on(loop, main)


SCENARIOS: dict[str, tuple[str, Callable[[str, Opener], float]]] = {
    "tiny (calls/s)": ("higher", tiny),
    "latency p50 (µs)": ("lower", latency),
    "cpu speedup 1 -> 2 workers": ("higher", cpu),
    "1 MiB round trips/s": ("higher", mib),
}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/processes.md"))
    args = parser.parse_args(argv)
    figures: dict[str, dict[str, list[float]]] = {s: {p: [] for p in PEERS} for s in SCENARIOS}
    for round_ in range(args.rounds):
        for scenario, (_, run) in SCENARIOS.items():
            for peer, (loop, opener) in PEERS.items():
                figures[scenario][peer].append(run(loop, opener))
        print(f"round {round_ + 1}/{args.rounds} done", flush=True)
    lines = [
        f"Worker processes, medians of {args.rounds} interleaved rounds "
        "(`python -m benchmarks.processes`).",
        "",
        "| scenario | "
        + " | ".join(PEERS)
        + " | pool / best peer (trio, asyncio) | pool / floor of its loop (trio, asyncio) |",
        "|---|" + "---|" * (len(PEERS) + 2),
    ]
    for scenario, (better, _) in SCENARIOS.items():
        medians = {p: statistics.median(v) for p, v in figures[scenario].items()}
        pools = medians["trio_pool ProcessHost"], medians["trio_pool ProcessHost (asyncio)"]
        floors = medians["floor"], medians["floor (asyncio)"]
        peers = [v for p, v in medians.items() if p not in OURS]
        best = max(peers) if better == "higher" else min(peers)
        cells = " | ".join(f"{v:,.2f}" if v < 100 else f"{v:,.0f}" for v in medians.values())
        to_best = ", ".join(f"{pool / best:.2f}x" for pool in pools)
        to_floor = ", ".join(f"{p / f:.2f}x" for p, f in zip(pools, floors, strict=True))
        lines.append(f"| {scenario} | {cells} | {to_best} | {to_floor} ({better} is better) |")
    text = "\n".join(lines) + "\n"
    args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
