"""The immutable records that ``Pool.statistics()`` returns, and the counts behind them."""

from __future__ import annotations

import dataclasses
from typing import Any

import outcome

from ._job import JobRecord, is_cancellation, is_not_started


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
        pid: The id of the process that holds its interface: the pool's own
            on a :class:`ThreadHost`, the child's on a :class:`ProcessHost`,
            the actor's (on its node) on a :class:`RayHost` (None while it
            has none).
        actor_id: Its Ray actor's id, in hex, on a :class:`RayHost` (else None).
        node_id: The id of the Ray node its actor runs on, in hex (else None).
    """

    id: int
    name: str
    state: str
    jobs_done: int
    leased: bool
    pid: int | None = None
    actor_id: str | None = None
    node_id: str | None = None


@dataclasses.dataclass(frozen=True)
class PoolStatistics:
    """A snapshot of a pool, from :meth:`Pool.statistics`.

    Attributes:
        workers: Worker threads alive (starting, serving or stopping).
        busy: Workers running a job.
        idle: Workers waiting for a job.
        queued: Jobs accepted and not yet started.
        waiting_for_room: Tasks waiting for room in the queue (their jobs are
            not accepted yet, so not in ``queued``).
        waiting_for_lease: Tasks waiting for a worker to lease.
        submitted: Jobs accepted since the pool opened.
        completed: Jobs that returned a value.
        failed: Jobs whose Outcome is an error other than a cancellation.
        cancelled: Jobs removed before they started, jobs abandoned by their
            caller (``abandon_on_cancel``), and jobs that ended by raising
            :class:`JobCancelled`.
        workers_started: Workers started since the pool opened.
        workers_stopped: Workers whose threads have ended.
        hook_errors: Exit hooks that raised.
        workers_died: Workers whose process died under a job (or was killed
            for ``kill_on_cancel``); each was replaced unless the pool was
            closing.
        workers_renewed: Workers renewed (``max_jobs_per_worker``, or
            ``max_memory`` on a process host): each stopped, its hook
            running with no exception, and a new one started in its place.
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
    waiting_for_room: int
    waiting_for_lease: int
    submitted: int
    completed: int
    failed: int
    cancelled: int
    workers_started: int
    workers_stopped: int
    hook_errors: int
    workers_died: int
    workers_renewed: int
    scaled_up: int
    scaled_down: int
    worker_states: tuple[WorkerStatistics, ...]


class Counters:
    """The counts behind :meth:`Pool.statistics`; written in the loop thread only."""

    __slots__ = (
        "cancelled",
        "completed",
        "failed",
        "hook_errors",
        "scaled_down",
        "scaled_up",
        "submitted",
        "workers_died",
        "workers_renewed",
        "workers_started",
        "workers_stopped",
    )

    def __init__(self) -> None:
        self.submitted = self.completed = self.failed = self.cancelled = 0
        self.workers_started = self.workers_stopped = self.hook_errors = 0
        self.workers_died = self.workers_renewed = 0
        self.scaled_up = self.scaled_down = 0

    def count(self, job: JobRecord, result: outcome.Outcome[Any]) -> None:
        """Count how ``job`` ended (with ``result``)."""
        if job.abandoned:
            pass  # counted as cancelled when its caller left
        elif isinstance(result, outcome.Value):
            self.completed += 1
        elif is_cancellation(result) or is_not_started(result):
            self.cancelled += 1
        else:
            self.failed += 1

    def accepted(self) -> None:
        self.submitted += 1

    def worker_started(self) -> None:
        self.workers_started += 1

    def worker_stopped(self, *, hook_failed: bool, died: bool) -> None:
        self.workers_stopped += 1
        self.hook_errors += hook_failed
        self.workers_died += died

    def worker_renewed(self) -> None:
        self.workers_renewed += 1

    def scaled(self, *, up: int = 0, down: int = 0) -> None:
        self.scaled_up += up
        self.scaled_down += down

    def abandoned(self) -> None:
        """A running job's caller left without it (its Outcome will not be counted)."""
        self.cancelled += 1

    def snapshot(
        self,
        queued: int,
        workers: list[WorkerStatistics],
        waiting_for_room: int = 0,
        waiting_for_lease: int = 0,
    ) -> PoolStatistics:
        return PoolStatistics(
            workers=len(workers),
            busy=sum(w.state == "busy" for w in workers),
            idle=sum(w.state == "idle" for w in workers),
            queued=queued,
            waiting_for_room=waiting_for_room,
            waiting_for_lease=waiting_for_lease,
            submitted=self.submitted,
            completed=self.completed,
            failed=self.failed,
            cancelled=self.cancelled,
            workers_started=self.workers_started,
            workers_stopped=self.workers_stopped,
            hook_errors=self.hook_errors,
            workers_died=self.workers_died,
            workers_renewed=self.workers_renewed,
            scaled_up=self.scaled_up,
            scaled_down=self.scaled_down,
            worker_states=tuple(sorted(workers, key=lambda w: w.id)),
        )
