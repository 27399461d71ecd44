"""Run every scenario for every peer in one process, interleaved, and report medians.

    python -m benchmarks [--rounds 5] [--scale 1.0] [--out benchmarks/results] [--no-plot]

Peers are interleaved within each round (a shared machine's speed drifts
over seconds), every figure is the median over the rounds, and the pool is
compared to each peer as a ratio measured in the same run. Differences under
25% are noise on such machines.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import statistics
import sys
import time
import tracemalloc
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import anyio

import trio_pool

from .peers import PEERS, Peer, gather, run_on


def add_one(x: int) -> int:
    return x + 1


def sleep_1ms() -> None:
    time.sleep(0.001)


BUFFER = bytes(4 * 1024 * 1024)


def hash_buffer() -> str:
    return hashlib.sha256(BUFFER).hexdigest()


# --- scenarios: each returns {metric: value} for one peer, one round -------------------


def tiny(peer: Peer, scale: float) -> dict[str, float]:
    calls, outstanding = max(64, int(20_000 * scale)), 64

    async def main() -> float:
        async with peer.open(4) as call:
            per_task = calls // outstanding

            async def client(_: int) -> None:
                for i in range(per_task):
                    await call(add_one, i)

            start = time.perf_counter()
            await gather(outstanding, client)
            return per_task * outstanding / (time.perf_counter() - start)

    return {"calls/s": run_on(peer.loop, main)}


def latency(peer: Peer, scale: float) -> dict[str, float]:
    calls = max(50, int(5_000 * scale))

    async def main() -> list[float]:
        async with peer.open(4) as call:
            times = []
            for i in range(calls):
                start = time.perf_counter()
                await call(add_one, i)
                times.append((time.perf_counter() - start) * 1e6)
            return sorted(times)

    times = run_on(peer.loop, main)
    return {"p50 µs": times[len(times) // 2], "p99 µs": times[int(len(times) * 0.99)]}


def io(peer: Peer, scale: float) -> dict[str, float]:
    calls, workers = max(32, int(2_000 * scale)), 32

    async def main() -> float:
        async with peer.open(workers) as call:
            per_task = calls // workers

            async def client(_: int) -> None:
                for _ in range(per_task):
                    await call(sleep_1ms)

            start = time.perf_counter()
            await gather(workers, client)
            return (time.perf_counter() - start) * 1e3

    wall = run_on(peer.loop, main)
    ideal = calls / workers  # ms: each worker sleeps 1 ms per call
    return {"ms": wall, "x ideal": wall / ideal}


def cpu(peer: Peer, scale: float) -> dict[str, float]:
    hashes = max(4, int(128 * scale))  # long enough (~0.3 s) to rise above the noise

    def timed(workers: int) -> float:
        async def main() -> float:
            async with peer.open(workers) as call:

                async def client(_: int) -> None:
                    for _ in range(hashes // workers):
                        await call(hash_buffer)

                start = time.perf_counter()
                await gather(workers, client)
                return time.perf_counter() - start

        result: float = run_on(peer.loop, main)
        return result

    return {"speedup 1→2": timed(1) / timed(2)}


def map_items(peer: Peer, scale: float, *, batches: bool = False) -> dict[str, float]:
    """Tiny items through pool.map (chunksize=1000), one by one or a batch at a time."""
    items = max(1_000, int(200_000 * scale))
    if not peer.is_pool:
        return {}

    async def main() -> float:
        async with trio_pool.Pool(workers=2) as pool:
            start = time.perf_counter()
            async with pool.map(add_one, range(items), chunksize=1000) as results:
                if batches:
                    async for _ in results.batches():
                        pass
                else:
                    async for _ in results:
                        pass
            return items / (time.perf_counter() - start)

    rate = run_on(peer.loop, main)
    start = time.perf_counter()
    for i in range(items):
        add_one(i)
    loop_rate = items / (time.perf_counter() - start)
    return {"items/s": rate, "x for loop": rate / loop_rate}


def map_batches(peer: Peer, scale: float) -> dict[str, float]:
    return map_items(peer, scale, batches=True)


def memory(peer: Peer, scale: float) -> dict[str, float]:
    """Peak bytes per queued job, and what 10 rounds of jobs leave behind."""
    jobs = max(1_000, int(100_000 * scale))
    if not peer.is_pool:
        return {}

    async def main() -> dict[str, float]:
        gate = anyio.Event()
        async with trio_pool.Pool(workers=1, queue_size=jobs + 1) as pool:
            await pool.submit(anyio.from_thread.run, gate.wait)  # hold the worker
            tracemalloc.start()
            try:
                base = tracemalloc.get_traced_memory()[0]
                for i in range(jobs):
                    last = pool.submit_nowait(add_one, i)
                peak = tracemalloc.get_traced_memory()[1] - base
                gate.set()
                await last.wait()
                after = []  # memory in use after each round of jobs has finished
                for _ in range(10):
                    for i in range(jobs // 10):
                        last = pool.submit_nowait(add_one, i)
                    await last.wait()
                    del last
                    after.append(tracemalloc.get_traced_memory()[0])
            finally:
                tracemalloc.stop()
        return {"bytes/job": peak / jobs, "growth B/round": (after[-1] - after[0]) / 9}

    result: dict[str, float] = run_on(peer.loop, main)
    return result


SCENARIOS: dict[str, Callable[[Peer, float], dict[str, float]]] = {
    "tiny": tiny,
    "latency": latency,
    "io": io,
    "cpu": cpu,
    "map": map_items,
    "map batches": map_batches,
    "memory": memory,
}

# The figure of each scenario that ratios are taken on, and whether more is better.
HEADLINE = {
    "tiny": ("calls/s", True),
    "latency": ("p50 µs", False),
    "io": ("ms", False),
    "cpu": ("speedup 1→2", True),
    "map": ("items/s", True),
    "map batches": ("items/s", True),
    "memory": ("bytes/job", False),
}


def measure(rounds: int, scale: float) -> dict[str, dict[str, dict[str, float]]]:
    """{scenario: {peer: {metric: median}}}, peers interleaved in every round."""
    samples: dict[str, dict[str, dict[str, list[float]]]] = defaultdict(
        lambda: defaultdict(lambda: defaultdict(list))
    )
    for round_number in range(rounds):
        for scenario, run in SCENARIOS.items():
            for peer in PEERS:
                for metric, value in run(peer, scale).items():
                    samples[scenario][peer.name][metric].append(value)
        print(f"round {round_number + 1}/{rounds} done", file=sys.stderr)
    return {
        scenario: {
            peer: {metric: statistics.median(values) for metric, values in metrics.items()}
            for peer, metrics in peers.items()
        }
        for scenario, peers in samples.items()
    }


def ratios(results: dict[str, dict[str, dict[str, float]]]) -> dict[str, dict[str, float]]:
    """{scenario: {peer: pool's headline / peer's}} for the pool on the peer's own loop."""
    out: dict[str, dict[str, float]] = {}
    for scenario, peers in results.items():
        metric, _ = HEADLINE[scenario]
        out[scenario] = {}
        for peer in PEERS:
            if peer.is_pool or metric not in peers.get(peer.name, {}):
                continue
            pool = peers[f"trio_pool ({peer.loop})"][metric]
            out[scenario][peer.name] = pool / peers[peer.name][metric]
    return out


def cpu_model() -> str:
    """The processor's model name, where Linux tells it."""
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "an unknown processor"


def markdown(results: dict[str, dict[str, dict[str, float]]], rounds: int, scale: float) -> str:
    lines = [
        f"Medians of {rounds} interleaved rounds (scale {scale}) on {cpu_model()} "
        f"({os.cpu_count()} CPUs, {platform.machine()}), "
        f"{platform.python_implementation()} {platform.python_version()}; "
        "ratio = trio_pool on the same loop / the peer, for the scenario's first figure.",
        "",
        "| scenario | peer | figures | ratio |",
        "|---|---|---|---|",
    ]
    table = ratios(results)
    for scenario, peers in results.items():
        for name, metrics in peers.items():
            if not metrics:
                continue
            figures = ", ".join(f"{m} {v:,.4g}" for m, v in metrics.items())
            ratio = table[scenario].get(name)
            lines.append(
                f"| {scenario} | {name} | {figures} | {'' if ratio is None else f'{ratio:.2f}'} |"
            )
    return "\n".join(lines) + "\n"


def plot(results: dict[str, dict[str, dict[str, float]]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    table = ratios(results)
    scenarios = [s for s in table if table[s]]
    fig, axes = plt.subplots(1, len(scenarios), figsize=(4 * len(scenarios), 4), squeeze=False)
    for ax, scenario in zip(axes[0], scenarios, strict=True):
        names = list(table[scenario])
        ax.barh(names, [table[scenario][n] for n in names])
        ax.axvline(1.0, color="black", linewidth=0.8)
        better = "higher" if HEADLINE[scenario][1] else "lower"
        ax.set_title(f"{scenario}: pool / peer ({better} is better for the pool)", fontsize=8)
        ax.tick_params(labelsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--scale", type=float, default=1.0, help="fraction of the full sizes")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    parser.add_argument("--no-plot", action="store_true")
    args = parser.parse_args(argv)
    results = measure(args.rounds, args.scale)
    table = markdown(results, args.rounds, args.scale)
    print(table)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".md").write_text(table)
    if not args.no_plot:
        plot(results, args.out.with_suffix(".png"))


if __name__ == "__main__":
    main()
