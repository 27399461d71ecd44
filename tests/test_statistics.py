"""Pool.statistics(): the counts and each worker's record."""

from __future__ import annotations

import dataclasses

import pytest

import trio_pool

from helpers import (
    Gate,
)


async def test_statistics(backend: str) -> None:
    gate = Gate()
    async with trio_pool.Pool(workers=2, queue_size=10) as pool:
        stats = pool.statistics()
        assert (stats.workers, stats.idle, stats.busy, stats.queued) == (2, 2, 0, 0)
        with pytest.raises(dataclasses.FrozenInstanceError):
            stats.workers = 3  # type: ignore[misc]
        blocked = [await pool.submit(gate.enter) for _ in range(2)]
        await gate.wait_arrivals(2)
        queued = pool.submit_nowait(int)
        await pool.submit(int)
        queued.cancel()
        stats = pool.statistics()
        assert stats.queued == 1
        assert stats.busy + stats.idle == 2
        gate.open()
        for job in blocked:
            await job.wait()
        await pool.run(int)
        with pytest.raises(ZeroDivisionError):
            await pool.run(lambda: 1 / 0)
        stats = pool.statistics()
        assert (stats.submitted, stats.completed, stats.failed, stats.cancelled) == (6, 4, 1, 1)
        assert stats.submitted == stats.completed + stats.failed + stats.cancelled
        assert sum(w.jobs_done for w in stats.worker_states) == 5
        assert {w.state for w in stats.worker_states} == {"idle"}
    assert pool.statistics().workers == 0
