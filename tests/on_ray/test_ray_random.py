"""Seeded random programs against a pool on Ray, with its invariants checked after each.

A few tasks drive a random mix at once: calls (some under tiny deadlines),
submits with ``job.cancel()``, leases, resizes, jobs that kill their actor,
on a host with ``kill_on_cancel``, or with one or three calls in flight
per actor (where a job queued behind one that kills its actor fails too).
Each job returns its own tag, so a result delivered to the wrong caller
shows. After the block: every actor that loaded either ran its hook once or
died (``workers_died``), and no actor is left (conftest.py).

``TRIO_POOL_RAY_PROGRAMS=<n>`` runs that many programs (default 6).
"""

from __future__ import annotations

import os
import random
import time
from pathlib import Path
from typing import Any

import anyio
import outcome
import pytest

import trio_pool

from helpers import TIMEOUT

PROGRAMS = int(os.environ.get("TRIO_POOL_RAY_PROGRAMS", "6"))

pytestmark = pytest.mark.timeout(300)


class Tagged:
    def __init__(self, record: str) -> None:
        self.record = record
        self._note("load")

    def _note(self, what: str) -> None:
        with open(self.record, "a") as file:
            file.write(f"{what} {os.getpid()}\n")

    def __exit__(self, *exc_info: Any) -> None:
        self._note("exit")


def echo(tag: str, spin: float) -> str:
    """Returns its tag; first spins for ``spin`` seconds unless asked to stop."""
    deadline = time.monotonic() + spin
    while time.monotonic() < deadline:
        trio_pool.check_cancelled()
        time.sleep(0.001)
    return tag


def die() -> None:
    os._exit(1)


class Program:
    def __init__(self, seed: int, pool: trio_pool.Pool[Any], host: trio_pool.RayHost) -> None:
        self.rng = random.Random(seed)
        self.pool = pool
        self.tags = 0
        self.deaths = 0
        self.in_flight = host.calls_in_flight > 1

    async def run(self, tag: str, spin: float) -> None:
        try:
            assert await self.pool.run(echo, tag, spin) == tag
        except trio_pool.BrokenWorkerError:
            if not self.in_flight:
                raise

    def check(self, result: outcome.Outcome[object], tag: str) -> None:
        """The job's own tag, or its cancellation; with calls in flight, maybe a death before it."""
        if isinstance(result, outcome.Value):
            assert result == outcome.Value(tag)
        elif not (self.in_flight and isinstance(result.error, trio_pool.BrokenWorkerError)):
            assert isinstance(result.error, trio_pool.JobCancelled), result.error

    def tag(self) -> str:
        self.tags += 1
        return f"tag-{self.tags}"

    async def lease_twice(self) -> None:
        """Two calls on one lease: a lease given a worker that then died takes another."""
        async with self.pool.lease() as worker:
            first, second = self.tag(), self.tag()
            assert await worker.run(echo, first, 0) == first
            assert await worker.run(echo, second, 0) == second

    async def client(self) -> None:
        rng, pool = self.rng, self.pool
        for _ in range(rng.randint(5, 15)):
            choice = rng.random()
            tag, spin = self.tag(), rng.choice([0, 0, 0.002, 0.02])
            if choice < 0.35:
                await self.run(tag, spin)
            elif choice < 0.55:
                with anyio.move_on_after(rng.uniform(0, 0.01)):
                    await self.run(tag, spin)
            elif choice < 0.75:
                job = await pool.submit(echo, tag, spin)
                if rng.random() < 0.5:
                    await anyio.sleep(rng.uniform(0, 0.005))
                    job.cancel()
                self.check(await job.wait(), tag)
            elif choice < 0.85:
                await self.lease_twice()
            elif choice < 0.95:
                try:
                    await pool.resize(rng.randint(1, 3))
                except ValueError as exc:  # leased or loading workers it may not stop
                    assert "cannot stop" in str(exc)  # noqa: PT017
            else:
                result = await (await pool.submit(die)).wait()
                assert isinstance(result, outcome.Error)
                assert isinstance(result.error, trio_pool.BrokenWorkerError)


@pytest.mark.parametrize("seed", range(PROGRAMS))
async def test_random_program(backend: str, seed: int, tmp_path: Path) -> None:
    record = tmp_path / "record"
    rng = random.Random(seed)
    kill_on_cancel = rng.random() < 0.5
    host = trio_pool.RayHost(
        kill_on_cancel=kill_on_cancel,
        calls_in_flight=1 if kill_on_cancel else rng.choice([1, 3]),
        grace_period=TIMEOUT,
    )
    async with trio_pool.Pool(Tagged, str(record), workers=rng.randint(1, 3), host=host) as pool:
        program = Program(seed, pool, host)
        async with anyio.create_task_group() as tg:
            for _ in range(rng.randint(2, 4)):
                tg.start_soon(program.client)
    stats = pool.statistics()
    lines = record.read_text().splitlines()
    loads = [line.split()[1] for line in lines if line.startswith("load")]
    exits = [line.split()[1] for line in lines if line.startswith("exit")]
    assert len(exits) == len(set(exits))  # each hook once
    assert set(exits) <= set(loads)  # in the actor that loaded
    assert len(loads) == len(exits) + stats.workers_died == stats.workers_started
    assert stats.workers == 0
    assert stats.submitted == stats.completed + stats.failed + stats.cancelled
