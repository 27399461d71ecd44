"""Prometheus metrics for a pool, from an Instrument: jobs by outcome, time in the queue
and running, and workers by state.

Needs prometheus_client (``python -m pip install '.[prometheus]'`` in a checkout).
A service serves them with ``prometheus_client.start_http_server(port)``; this
example prints a few lines of what a scrape would read.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import outcome
import trio
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

import trio_pool


class PoolMetrics(trio_pool.Instrument):
    """Counts and times every job of a pool (called in the event loop's thread)."""

    def __init__(self, registry: CollectorRegistry, pool: str) -> None:
        self.jobs = Counter(
            "trio_pool_jobs", "Jobs finished, by outcome", ["pool", "outcome"], registry=registry
        )
        self.queued = Histogram(
            "trio_pool_queue_seconds", "Time from submission to start", ["pool"], registry=registry
        )
        self.running = Histogram(
            "trio_pool_run_seconds", "Time from start to finish", ["pool"], registry=registry
        )
        self.stopped = Counter(
            "trio_pool_workers_stopped",
            "Workers stopped, by reason",
            ["pool", "reason"],
            registry=registry,
        )
        self.pool = pool

    def job_finished(self, job: trio_pool.Job[Any]) -> None:
        result = job.outcome
        name = type(result.error).__name__ if isinstance(result, outcome.Error) else "value"
        self.jobs.labels(self.pool, name).inc()
        if job.started_at is not None and job.finished_at is not None:
            self.queued.labels(self.pool).observe(job.started_at - job.submitted_at)
            self.running.labels(self.pool).observe(job.finished_at - job.started_at)

    def worker_stopped(self, worker: trio_pool.WorkerStatistics, reason: str) -> None:
        self.stopped.labels(self.pool, reason).inc()


class WorkersByState(Collector):
    """Workers by state, read at each scrape (statistics() may be read from any thread)."""

    def __init__(self, pool: trio_pool.Pool[Any]) -> None:
        self.pool = pool

    def collect(self) -> Iterator[GaugeMetricFamily]:
        gauge = GaugeMetricFamily(
            "trio_pool_workers", "Workers, by state", labels=["pool", "state"]
        )
        states = [w.state for w in self.pool.statistics().worker_states]
        for state in ("starting", "idle", "busy", "stopping"):
            gauge.add_metric([self.pool.name, state], states.count(state))
        yield gauge


def score(n: int) -> int:
    if n < 0:
        raise ValueError(f"no score for {n}")
    return n * n


async def main() -> None:
    registry = CollectorRegistry()
    metrics = PoolMetrics(registry, "scores")
    async with trio_pool.Pool(
        workers=1, name="scores", instruments=[metrics], max_jobs_per_worker=15
    ) as pool:
        registry.register(WorkersByState(pool))
        async with pool.map(score, range(19), chunksize=1) as results:  # a job per item
            async for _ in results:
                pass
        with contextlib.suppress(ValueError):
            await pool.run(score, -1)
        scrape = generate_latest(registry).decode()
    wanted = (
        "trio_pool_jobs_total",
        "trio_pool_queue_seconds_count",
        "trio_pool_run_seconds_count",
        "trio_pool_workers_stopped_total",
        'trio_pool_workers{pool="scores",state="idle"}',
    )
    for line in scrape.splitlines():
        if line.startswith(wanted):
            print(line)


if __name__ == "__main__":
    trio.run(main)
