"""Subinterpreter workers against their peers, interleaved in one run; medians of the rounds.

    python -m benchmarks.interpreters [--rounds 5] [--out benchmarks/interpreters.md]

Needs CPython 3.13+ (the ``bench-interpreters`` nox session). Peers, all on
trio: the pool with ``InterpreterHost``, with ``ProcessHost`` and with
threads, and ``anyio.to_interpreter.run_sync``; and, for the CPU-bound
scenario, the floor: bare subinterpreters running the same work from plain
threads, one each (:func:`floor_cpu`). Scenarios:

- cpu: pure-Python CPU-bound work, speedup from 1 to 2 workers;
- tiny: round trips of a trivial call, 16 outstanding, 2 workers (calls/s);
- latency: one call at a time, 1 worker (p50, µs);
- open: opening 2 workers, each serving one call (ms).
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import trio

import trio_pool

from ._work import add_one, count_primes, pause

Call = Callable[..., Awaitable[Any]]
Opener = Callable[[int], contextlib.AbstractAsyncContextManager[Call]]
LIMIT = 150_000  # count_primes' work per call (about 0.3 s here)


def _pool(host: Any) -> Opener:
    @contextlib.asynccontextmanager
    async def opener(workers: int) -> AsyncIterator[Call]:
        async with trio_pool.Pool(workers=workers, host=host) as pool:
            yield pool.run

    return opener


@contextlib.asynccontextmanager
async def _anyio_to_interpreter(workers: int) -> AsyncIterator[Call]:
    import anyio.to_interpreter

    limiter = anyio.CapacityLimiter(workers)

    async def call(fn: Callable[..., Any], *args: Any) -> Any:
        return await anyio.to_interpreter.run_sync(fn, *args, limiter=limiter)

    yield call


PEERS: dict[str, Opener] = {
    "trio_pool InterpreterHost": _pool(trio_pool.InterpreterHost()),
    "trio_pool ProcessHost": _pool(trio_pool.ProcessHost()),
    "trio_pool threads": _pool(trio_pool.ThreadHost()),
    "anyio.to_interpreter": _anyio_to_interpreter,
}


async def warm(call: Call, workers: int) -> None:
    """Start every worker before timing (each peer starts them lazily or not)."""
    async with anyio.create_task_group() as tasks:
        for _ in range(workers):
            tasks.start_soon(call, pause, 0.05)  # each imports the work module there


def cpu(opener: Opener) -> float:
    def timed(workers: int) -> float:
        async def main() -> float:
            async with opener(workers) as call:
                await warm(call, workers)
                start = time.perf_counter()
                async with anyio.create_task_group() as tasks:
                    for _ in range(4):
                        tasks.start_soon(call, count_primes, LIMIT)
                return time.perf_counter() - start

        return trio.run(main)

    return timed(1) / timed(2)


def floor_cpu() -> float:
    """The same 4 calls on bare subinterpreters, from 1 and from 2 plain threads."""
    import inspect

    import _interpreters  # type: ignore[import-not-found]  # pyright: ignore

    source = inspect.getsource(count_primes)
    code = f"{source}\ncount_primes({LIMIT})"

    def timed(threads: int) -> float:
        def work(calls: int) -> None:
            ident = _interpreters.create()
            try:
                _interpreters.exec(ident, source)
                for _ in range(calls):
                    assert _interpreters.exec(ident, code) is None
            finally:
                _interpreters.destroy(ident)

        workers = [threading.Thread(target=work, args=(4 // threads,)) for _ in range(threads)]
        start = time.perf_counter()
        for thread in workers:
            thread.start()
        for thread in workers:
            thread.join()
        return time.perf_counter() - start

    return timed(1) / timed(2)


def tiny(opener: Opener) -> float:
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

    return trio.run(main)


def latency(opener: Opener) -> float:
    async def main() -> float:
        async with opener(1) as call:
            await warm(call, 1)
            samples = []
            for i in range(300):
                start = time.perf_counter()
                await call(add_one, i)
                samples.append(time.perf_counter() - start)
            return statistics.median(samples) * 1e6

    return trio.run(main)


def open_two(opener: Opener) -> float:
    async def main() -> float:
        start = time.perf_counter()
        async with opener(2) as call:
            async with anyio.create_task_group() as tasks:
                for i in range(2):
                    tasks.start_soon(call, add_one, i)
            return (time.perf_counter() - start) * 1e3

    return trio.run(main)


SCENARIOS: dict[str, tuple[str, Callable[[Opener], float], Callable[[], float] | None]] = {
    "cpu speedup 1 -> 2 workers": ("higher", cpu, floor_cpu),
    "tiny (calls/s)": ("higher", tiny, None),
    "latency p50 (µs)": ("lower", latency, None),
    "open 2 workers (ms)": ("lower", open_two, None),
}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/interpreters.md"))
    args = parser.parse_args(argv)
    columns = [*PEERS, "floor"]
    figures: dict[str, dict[str, list[float]]] = {s: {p: [] for p in columns} for s in SCENARIOS}
    for round_ in range(args.rounds):
        for scenario, (_, run, floor) in SCENARIOS.items():
            for peer, opener in PEERS.items():
                figures[scenario][peer].append(run(opener))
            if floor is not None:
                figures[scenario]["floor"].append(floor())
        print(f"round {round_ + 1}/{args.rounds} done", flush=True)
    pool = "trio_pool InterpreterHost"
    lines = [
        f"Subinterpreter workers, medians of {args.rounds} interleaved rounds "
        "(`python -m benchmarks.interpreters`, on trio).",
        "",
        "| scenario | "
        + " | ".join(columns)
        + " | pool / ProcessHost | pool / anyio | pool / floor |",
        "|---|" + "---|" * (len(columns) + 3),
    ]
    for scenario, (better, _, _) in SCENARIOS.items():
        medians = {p: statistics.median(v) if v else None for p, v in figures[scenario].items()}
        cells = " | ".join(
            "—" if v is None else f"{v:,.2f}" if v < 100 else f"{v:,.0f}" for v in medians.values()
        )
        ratios = [
            "—" if medians[other] is None else f"{medians[pool] / medians[other]:.2f}x"  # type: ignore[operator]
            for other in ("trio_pool ProcessHost", "anyio.to_interpreter", "floor")
        ]
        lines.append(f"| {scenario} | {cells} | {' | '.join(ratios)} ({better} is better) |")
    text = "\n".join(lines) + "\n"
    args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
