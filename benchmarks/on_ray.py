"""RayHost against bare Ray, interleaved in one run on one local Ray; medians of the rounds.

    python -m benchmarks.on_ray [--rounds 3] [--quick] [--out benchmarks/ray.md]

Needs ``pip install '.[ray]'``. Peers: bare actor calls
(``ray.get(actor.f.remote(x))``, one at a time, and pipelined: every call
submitted round-robin, then all gathered) and ``ray.util.ActorPool.map``,
against the pool on a ``RayHost`` (on trio), all on actors of the same
options (``max_concurrency=1``). The pool calls the interface's method by
name (``pool.call("f", x)``), as a bare call names the actor's; ``pool.map``
ships ``add_one``. The floor is the least a loop-driven worker can do: submit the call on
the loop and await its ``ObjectRef`` there, woken by the reply's future
(Ray's completion callback, in Ray's thread, posts to the loop), one call in
flight per actor, as :class:`trio_pool.RayHost` does by default (the pool
is measured with that, and with ``calls_in_flight=4``). Scenarios:

- latency: one trivial call at a time, 1 actor (p50, µs), a bare call, the
  loop-driven floor and a pool call in turn;
- pipelined: 2,000 trivial calls over 4 actors (calls/s); the pool from 64
  tasks at once (``pool.run`` each), and ``pool.map`` (its adaptive chunks).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import ray
import trio
from ray.util import ActorPool

import trio_pool

CALLS, SAMPLES, WORKERS, OUTSTANDING = 2000, 300, 4, 64
#: The calls each actor holds at once in the pool's second configuration (and its floor's).
IN_FLIGHT = 4


def add_one(x: int) -> int:
    return x + 1


class Bare:
    def f(self, x: int) -> int:
        return x + 1


def bare_actors(count: int) -> list[Any]:
    cls = ray.remote(Bare).options(max_concurrency=1, max_restarts=0, max_task_retries=0)
    actors = [cls.remote() for _ in range(count)]
    ray.get([a.f.remote(0) for a in actors])  # started and warm
    return actors


def latency() -> dict[str, float]:
    """Bare calls and pool calls in turn, one of each per step, so both see the same machine."""
    [actor] = bare_actors(1)

    async def main() -> dict[str, float]:
        bare, floor, pooled = [], [], []
        async with trio_pool.Pool(Bare, workers=1, host=trio_pool.RayHost()) as pool:
            await pool.call("f", 0)
            for i in range(SAMPLES):
                start = time.perf_counter()
                assert ray.get(actor.f.remote(i)) == i + 1  # (blocks the loop: nothing else runs)
                bare.append(time.perf_counter() - start)
                start = time.perf_counter()
                assert await on_the_loop(actor.f.remote(i)) == i + 1
                floor.append(time.perf_counter() - start)
                start = time.perf_counter()
                assert (await pool.call("f", i)).unwrap() == i + 1
                pooled.append(time.perf_counter() - start)
        return {
            "bare actor call": statistics.median(bare) * 1e6,
            "floor: awaited on the loop": statistics.median(floor) * 1e6,
            "trio_pool RayHost": statistics.median(pooled) * 1e6,
        }

    try:
        return trio.run(main)
    finally:
        ray.kill(actor)


async def on_the_loop(ref: Any) -> Any:
    """What ``ref`` brings, awaited on trio: woken by its future's callback."""
    token, done = trio.lowlevel.current_trio_token(), trio.Event()
    future = ref.future()
    future.add_done_callback(lambda _: token.run_sync_soon(done.set))
    await done.wait()
    return future.result()


def floor_pipelined(per_actor: int) -> float:
    """64 tasks' calls through ``per_actor`` loop-driven tasks per actor, one call out each."""
    actors = bare_actors(WORKERS)

    async def main() -> float:
        send, receive = trio.open_memory_channel[tuple[int, list[Any], trio.Event]](0)

        async def worker(actor: Any) -> None:
            async for x, reply, done in receive:
                reply.append(await on_the_loop(actor.f.remote(x)))
                done.set()

        async def client(first: int) -> None:
            for i in range(first, CALLS, OUTSTANDING):
                reply: list[Any] = []
                done = trio.Event()
                await send.send((i, reply, done))
                await done.wait()
                assert reply == [i + 1]

        async with trio.open_nursery() as workers:
            for actor in actors:
                for _ in range(per_actor):
                    workers.start_soon(worker, actor)
            start = time.perf_counter()
            async with trio.open_nursery() as clients:
                for first in range(OUTSTANDING):
                    clients.start_soon(client, first)
            rate = CALLS / (time.perf_counter() - start)
            workers.cancel_scope.cancel()
        return rate

    try:
        return trio.run(main)
    finally:
        for actor in actors:
            ray.kill(actor)


def bare_pipelined() -> float:
    actors = bare_actors(WORKERS)
    start = time.perf_counter()
    refs = [actors[i % WORKERS].f.remote(i) for i in range(CALLS)]
    assert ray.get(refs) == [i + 1 for i in range(CALLS)]
    rate = CALLS / (time.perf_counter() - start)
    for actor in actors:
        ray.kill(actor)
    return rate


def actor_pool_map() -> float:
    actors = bare_actors(WORKERS)
    start = time.perf_counter()
    results = list(ActorPool(actors).map(lambda a, v: a.f.remote(v), range(CALLS)))
    rate = CALLS / (time.perf_counter() - start)
    assert results == [i + 1 for i in range(CALLS)]
    for actor in actors:
        ray.kill(actor)
    return rate


def pool_pipelined(calls_in_flight: int) -> float:
    async def main() -> float:
        host = trio_pool.RayHost(calls_in_flight=calls_in_flight)
        async with trio_pool.Pool(Bare, workers=WORKERS, host=host) as pool:
            await pool.broadcast(add_one, 0)

            async def client(first: int) -> None:
                for i in range(first, CALLS, OUTSTANDING):
                    assert (await pool.call("f", i)).unwrap() == i + 1

            start = time.perf_counter()
            async with trio.open_nursery() as nursery:
                for first in range(OUTSTANDING):
                    nursery.start_soon(client, first)
            return CALLS / (time.perf_counter() - start)

    return trio.run(main)


def pool_map(calls_in_flight: int) -> float:
    async def main() -> float:
        host = trio_pool.RayHost(calls_in_flight=calls_in_flight)
        async with trio_pool.Pool(workers=WORKERS, host=host) as pool:
            await pool.broadcast(add_one, 0)
            start = time.perf_counter()
            async with pool.map(add_one, range(CALLS)) as results:
                assert [x async for x in results] == [i + 1 for i in range(CALLS)]
            return CALLS / (time.perf_counter() - start)

    return trio.run(main)


def pipelined() -> dict[str, float]:
    return {
        "bare actor calls, pipelined": bare_pipelined(),
        "floor: one call in flight per actor, on the loop": floor_pipelined(1),
        f"floor: {IN_FLIGHT} calls in flight per actor, on the loop": floor_pipelined(IN_FLIGHT),
        "ActorPool.map": actor_pool_map(),
        "trio_pool RayHost (pool.call)": pool_pipelined(1),
        f"trio_pool RayHost, {IN_FLIGHT} calls in flight (pool.call)": pool_pipelined(IN_FLIGHT),
        "trio_pool RayHost (pool.map)": pool_map(1),
        f"trio_pool RayHost, {IN_FLIGHT} calls in flight (pool.map)": pool_map(IN_FLIGHT),
    }


SCENARIOS: dict[str, Callable[[], dict[str, float]]] = {
    "latency p50 (µs), 1 actor": latency,
    f"pipelined calls/s, {WORKERS} actors": pipelined,
}


LATENCY, PIPELINED = SCENARIOS

#: (what, scenario, pool's peer, reference peer, bound, whether the pool must be at most it)
TARGETS = [
    (
        "latency at most 1.2x a bare actor call",
        LATENCY,
        "trio_pool RayHost",
        "bare actor call",
        1.2,
        True,
    ),
    (
        f"64 tasks' pool.call at least 0.5x bare actor calls, pipelined "
        f"(calls_in_flight={IN_FLIGHT})",
        PIPELINED,
        f"trio_pool RayHost, {IN_FLIGHT} calls in flight (pool.call)",
        "bare actor calls, pipelined",
        0.5,
        False,
    ),
    *[
        (
            f"pool.map at least 1x {reference}",
            PIPELINED,
            "trio_pool RayHost (pool.map)",
            reference,
            1.0,
            False,
        )
        for reference in ("bare actor calls, pipelined", "ActorPool.map")
    ],
]


#: (scenario, bare peer, the loop-driven floor, the pool): what the floor costs, and the pool on it
FLOORS = [
    (LATENCY, "bare actor call", "floor: awaited on the loop", "trio_pool RayHost"),
    (
        PIPELINED,
        "bare actor calls, pipelined",
        "floor: one call in flight per actor, on the loop",
        "trio_pool RayHost (pool.call)",
    ),
    (
        PIPELINED,
        "bare actor calls, pipelined",
        f"floor: {IN_FLIGHT} calls in flight per actor, on the loop",
        f"trio_pool RayHost, {IN_FLIGHT} calls in flight (pool.call)",
    ),
]


def measure(rounds: int) -> dict[str, dict[str, float]]:
    samples: dict[str, dict[str, list[float]]] = {}
    for round_number in range(1, rounds + 1):
        for scenario, run in SCENARIOS.items():
            for peer, value in run().items():
                samples.setdefault(scenario, {}).setdefault(peer, []).append(value)
                print(f"round {round_number}: {scenario}: {peer}: {value:,.0f}")
    return {
        scenario: {peer: statistics.median(values) for peer, values in peers.items()}
        for scenario, peers in samples.items()
    }


def report(medians: dict[str, dict[str, float]], rounds: int) -> str:
    lines = [
        f"RayHost against bare Ray, medians of {rounds} interleaved rounds on one local Ray "
        "(`ray.init(num_cpus=2)`, this 2-core machine; `python -m benchmarks.on_ray`).",
        "",
        "| scenario | peer | median |",
        "|---|---|---|",
    ]
    for scenario, peers in medians.items():
        lines += [f"| {scenario} | {peer} | {value:,.0f} |" for peer, value in peers.items()]
    lines += ["", "| target (issue 22) | this run | met |", "|---|---|---|"]
    for what, scenario, pool, reference, bound, at_most in TARGETS:
        ratio = medians[scenario][pool] / medians[scenario][reference]
        met = ratio <= bound if at_most else ratio >= bound
        lines.append(f"| {what} | {ratio:.2f}x | {'yes' if met else 'no'} |")
    lines += ["", "| scenario | floor | floor / bare | pool / floor |", "|---|---|---|---|"]
    for scenario, bare, floor, pool in FLOORS:
        peers = medians[scenario]
        floor_ratio, pool_ratio = peers[floor] / peers[bare], peers[pool] / peers[floor]
        lines.append(f"| {scenario} | {floor} | {floor_ratio:.2f}x | {pool_ratio:.2f}x |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("ray.md"))
    parser.add_argument("--quick", action="store_true", help="a tenth of the calls (a check)")
    options = parser.parse_args()
    if options.quick:
        global CALLS, SAMPLES
        CALLS, SAMPLES = CALLS // 10, SAMPLES // 10
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        text = report(measure(options.rounds), options.rounds)
    finally:
        ray.shutdown()
    options.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
