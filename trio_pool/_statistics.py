"""The immutable records that ``Pool.statistics()`` returns."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class WorkerStatistics:
    """One worker, as :meth:`Pool.statistics` saw it.

    Attributes:
        id: The worker's id.
        name: Its thread's name.
        state: ``"starting"`` (loading its interface), ``"idle"``,
            ``"busy"``, ``"stopping"`` (running its exit hook) or ``"stopped"``.
        jobs_done: Jobs this worker has finished.
        leased: Whether a :meth:`Pool.lease` holds it.
    """

    id: int
    name: str
    state: str
    jobs_done: int
    leased: bool


@dataclasses.dataclass(frozen=True)
class PoolStatistics:
    """A snapshot of a pool, from :meth:`Pool.statistics`.

    Attributes:
        workers: Worker threads alive (starting, serving or stopping).
        busy: Workers running a job.
        idle: Workers waiting for a job.
        queued: Jobs accepted and not yet started.
        submitted: Jobs accepted since the pool opened.
        completed: Jobs that returned a value.
        failed: Jobs whose Outcome is an error other than a cancellation.
        cancelled: Jobs removed before they started, jobs abandoned by their
            caller (``abandon_on_cancel``), and jobs that ended by raising
            :class:`JobCancelled`.
        workers_started: Workers started since the pool opened.
        workers_stopped: Workers whose threads have ended.
        hook_errors: Exit hooks that raised.
        scaled_up: Workers autoscaling started.
        scaled_down: Workers autoscaling retired.
        worker_states: One record per live worker, in id order.

    Once every accepted job has finished, ``submitted == completed + failed +
    cancelled``.
    """

    workers: int
    busy: int
    idle: int
    queued: int
    submitted: int
    completed: int
    failed: int
    cancelled: int
    workers_started: int
    workers_stopped: int
    hook_errors: int
    scaled_up: int
    scaled_down: int
    worker_states: tuple[WorkerStatistics, ...]
