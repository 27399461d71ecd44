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
    """

    id: int
    name: str
    state: str
    jobs_done: int


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
    worker_states: tuple[WorkerStatistics, ...]
