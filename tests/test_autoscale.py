"""Autoscaling: growing on pressure, retiring idle workers, never below min_workers."""

from __future__ import annotations

import itertools
import threading

import anyio
import pytest
import trio
import trio.testing

import trio_pool

from helpers import (
    TIMEOUT,
    Gate,
    poll_until,
)


@pytest.mark.trio
async def test_autoscaling_grows_and_retires_on_the_loops_clock(
    mock_clock: trio.testing.MockClock,
) -> None:
    gate = Gate()
    async with trio_pool.Pool(min_workers=1, max_workers=4, idle_timeout=10) as pool:
        assert pool.worker_count == 1
        jobs = [await pool.submit(gate.enter, i) for i in range(6)]
        await gate.wait_arrivals(4)  # grown to 4: four jobs run at once
        stats = pool.statistics()
        assert (stats.workers, stats.busy, stats.queued) == (4, 4, 2)
        assert stats.scaled_up == 3
        gate.open()
        for job in jobs:
            await job.wait()
        await trio.testing.wait_all_tasks_blocked()
        assert pool.worker_count == 4  # not idle long enough yet
        mock_clock.jump(9)
        await trio.testing.wait_all_tasks_blocked()
        assert pool.worker_count == 4
        mock_clock.jump(2)
        await poll_until(lambda: pool.statistics().workers == 1)
        stats = pool.statistics()
        assert (stats.scaled_down, stats.workers_stopped) == (3, 3)
        assert pool.worker_count == 1  # never below min_workers


@pytest.mark.trio
async def test_a_worker_idle_while_the_rest_of_its_step_loads_retires_on_time(
    mock_clock: trio.testing.MockClock,
) -> None:
    gates = {1: threading.Event(), 2: threading.Event()}

    class Iface:
        def __init__(self) -> None:
            gate = gates.get(trio_pool.current_worker().id)
            if gate is not None:
                assert gate.wait(TIMEOUT)

    def states() -> dict[int, str]:
        return {w.id: w.state for w in pool.statistics().worker_states}

    async with trio_pool.Pool(Iface, min_workers=1, max_workers=4, idle_timeout=1) as pool:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(pool.add_workers, 2)
            await poll_until(lambda: states() == {0: "idle", 1: "starting", 2: "starting"})
            await pool.run(int)  # a delivery: the autoscaler looks, and times worker 0
            gates[1].set()
            await poll_until(lambda: states()[1] == "idle")  # idle since it started, at 0
            mock_clock.jump(1.5)
            # Both idle workers retire now; worker 2 is still loading.
            await poll_until(lambda: pool.statistics().scaled_down == 2)
            gates[2].set()


@pytest.mark.trio
async def test_a_worker_that_served_while_its_step_loaded_retires_on_time(
    mock_clock: trio.testing.MockClock,
) -> None:
    second_loader = threading.Event()

    class SlowSecond:
        count = itertools.count()

        def __init__(self) -> None:
            if next(self.count) == 1:  # the second worker of the step loads late
                assert second_loader.wait(TIMEOUT)

    async with trio_pool.Pool(SlowSecond, min_workers=0, max_workers=2, idle_timeout=10) as pool:
        jobs = [pool.submit_nowait(int) for _ in range(2)]  # one step of two workers
        for job in jobs:
            await job.wait()  # both served by the first worker, idle from time 0
        mock_clock.jump(5)
        second_loader.set()
        await poll_until(lambda: pool.statistics().idle == 2)  # the step has loaded
        await trio.testing.wait_all_tasks_blocked()
        assert pool.worker_count == 2
        mock_clock.jump(5.5)  # the first worker has been idle 10.5, the second 5.5
        await poll_until(lambda: pool.statistics().workers == 1)
        assert pool.statistics().scaled_down == 1


async def test_autoscaling_grows_for_a_burst_while_workers_are_idle(backend: str) -> None:
    # Eight idle workers, a burst of sixteen jobs that all block: the pool must
    # grow to sixteen, though the burst first found idle workers.
    async with trio_pool.Pool(min_workers=8, max_workers=16, idle_timeout=600) as pool:
        await poll_until(lambda: pool.statistics().idle == 8)
        await anyio.wait_all_tasks_blocked()  # the autoscaler too: it waits for news
        gate = Gate()
        jobs = [pool.submit_nowait(gate.enter) for _ in range(16)]
        await gate.wait_arrivals(16)  # sixteen jobs running at once: sixteen workers
        gate.open()
        for job in jobs:
            await job.wait()
        assert pool.statistics().scaled_up == 8


async def test_autoscaling_from_zero(backend: str) -> None:
    async with trio_pool.Pool(min_workers=0, max_workers=2, idle_timeout=0.01) as pool:
        assert pool.worker_count == 0
        assert await pool.run(str, 5) == "5"  # the first job starts a worker
        assert pool.statistics().scaled_up == 1
        await poll_until(lambda: pool.statistics().workers == 0)  # then it retires
        assert await pool.run(str, 6) == "6"
        assert pool.statistics().scaled_up == 2


async def test_autoscaling_logs_its_decisions(
    backend: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO", logger="trio_pool")
    async with trio_pool.Pool(min_workers=0, max_workers=1, idle_timeout=0.01) as pool:
        await pool.run(int)
        await poll_until(lambda: pool.statistics().workers == 0)
    text = caplog.text
    assert "autoscaling: 1 jobs wait and no worker is free: starting 1" in text
    assert "autoscaling: retiring 1 workers" in text
