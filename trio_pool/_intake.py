"""Jobs in, Outcomes out: making a job, putting it in the handoff, delivering, cancelling.

Loop thread only. A job for any worker first takes a place in the queue
(:mod:`._admission`); a job for one worker (a lease, a broadcast) waits for
that worker instead. Finished jobs come back from the handoff in batches,
are counted, and then room and autoscaling hear of them.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable
from typing import Any

from outcome import Error

from ._admission import Admission, Shedder
from ._autoscale import Autoscaler, FixedSize
from ._backend import Backend, ki_protected
from ._calls import Calls
from ._completion import Completion
from ._exceptions import PoolClosedError
from ._handoff import Delivery, Handoff, Slot
from ._hosts._base import ExcInfo
from ._instruments import Instruments
from ._interface import Operations
from ._job import JobRecord, cancelled_outcome, not_started_outcome
from ._statistics import Counters
from ._workers import WorkerSet


class Intake:
    def __init__(
        self,
        name: str,
        handoff: Handoff,
        admission: Admission,
        workers: WorkerSet,
        autoscaler: Autoscaler | FixedSize,
        calls: Calls,
        counters: Counters,
        operations: Operations,
        backend: Backend,
        max_wait: float | None,
        shedder: Shedder | None,
        completion: Completion,
        instruments: Instruments,
    ) -> None:
        """``shedder`` (with ``max_wait``) takes out jobs no worker took in time."""
        self._name = name
        self._max_wait = max_wait
        self._shedder = shedder
        self._completion = completion
        self._instruments = instruments
        self._handoff = handoff
        self._admission = admission
        self._workers = workers
        self._autoscaler = autoscaler
        self._calls = calls
        self._counters = counters
        self._operations = operations
        self._backend = backend
        self._open = True
        #: A new event of the loop (for the jobs, whose owner this is).
        self.event = backend.event

    def check_loop(self) -> None:
        """Raise RuntimeError unless called in the loop's thread, under its run."""
        if not self._backend.is_current():
            raise RuntimeError(
                f"the pool {self._name!r} belongs to the event loop that entered it; "
                "use it and its jobs only from that loop's thread and run. From another "
                "thread, hand the call to that loop: trio.from_thread.run(pool.run, fn, "
                "trio_token=token) or anyio.from_thread.run(pool.run, fn); from a job of "
                "the pool, trio_pool.from_loop(pool.run, fn)"
            )

    def close(self) -> None:
        """Accept nothing from now on (the pool is closing)."""
        self._open = False

    @ki_protected
    def accept(
        self,
        fn: Callable[..., Any] | str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        with_interface: bool = False,
        *,
        slot: Slot | None = None,
        closing: bool = False,
    ) -> JobRecord:
        """Make the job and put it in the handoff, for any worker or for ``slot``'s.

        A job for any worker must have taken its place in the queue first.
        ``closing``: accept it even if the pool is closing (a lease's reset).
        """
        if not self._open and not closing:
            raise PoolClosedError(f"the pool {self._name!r} is closed")
        job: JobRecord = JobRecord(
            self._operations.resolve(fn) if type(fn) is str else fn,
            args,
            kwargs,
            with_interface,
            contextvars.copy_context(),
            self,
        )
        self._counters.accepted()
        self._handoff.put(job, slot)
        if slot is None:
            self._autoscaler.job_queued()
        if self._instruments.job_submitted:
            self._instruments.call("job_submitted", job.job)
        return job

    @ki_protected
    def accept_nowait(
        self, fn: Callable[..., Any] | str, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> JobRecord:
        """:meth:`accept` for any worker, or :class:`QueueFull` if the queue is full."""
        if not self._open:
            raise PoolClosedError(f"the pool {self._name!r} is closed")
        self._admission.acquire_nowait()
        return self.accept(fn, args, kwargs)

    async def submit(
        self,
        fn: Callable[..., Any] | str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        *,
        with_interface: bool = False,
        waited: bool = True,
        shed: bool = True,
    ) -> JobRecord:
        """:meth:`accept` for any worker, once the queue has room.

        With ``max_wait`` (and ``shed``) it waits at most that long for room;
        the job of a caller that waits for it (``waited``: ``run``, ``call``)
        is also taken out unrun if no worker has taken it ``max_wait`` after
        the call began, and its caller raises :class:`NotStarted`.
        """
        if waited:  # the caller's wait that follows is the schedule point
            await self._backend.cancellation_point()
        else:  # for submit(): nothing may raise once the job is accepted
            await self._backend.checkpoint()
        max_wait = self._max_wait if shed else None
        deadline = None if max_wait is None else self._backend.current_time() + max_wait
        if not self._admission.has_room():
            await self._admission.acquire(max_wait)
        job = self.accept(fn, args, kwargs, with_interface)
        if deadline is not None and waited and self._shedder is not None:
            self._shedder.watch(job, deadline)
        return job

    @ki_protected
    def shed(self, job: JobRecord) -> None:
        """No worker took ``job`` within ``max_wait``: take it out, unrun, if it is queued."""
        if self._handoff.take_back_unserved(job):
            assert self._max_wait is not None
            self._completion.complete(job, not_started_outcome(self._max_wait))
            self._admission.release()

    @ki_protected
    def deliver(self, batch: Delivery) -> None:
        """The handoff's finished jobs."""
        self._autoscaler.delivered(batch)
        self._completion.complete_all(batch)
        self._admission.release()

    @ki_protected
    def cancel(self, job: JobRecord) -> bool:
        """:meth:`Job.cancel`: take it out if it is queued, else ask it to stop."""
        if self._handoff.cancel(job):
            self._completion.complete(job, cancelled_outcome())
            self._admission.release()
            return True
        if job.outcome is None and job.worker_id is not None:
            self._calls.cancel_job_calls(job)
            worker = self._workers.get(job.worker_id)
            if worker is not None:
                worker.host.interrupt()
        return False

    @ki_protected
    def fail_queued(self, error: BaseException) -> None:
        """No worker is left to serve the queue: every queued job fails with ``error``."""
        # An Outcome each: each is unwrapped by its own caller.
        self._completion.complete_all((job, Error(error)) for job in self._handoff.take_queued())
        self._admission.release()

    @ki_protected
    def cancel_all(self, slots: list[Slot], exc_info: ExcInfo) -> None:
        """Take every queued job out as cancelled and ask the running ones to stop."""
        self._completion.complete_all(
            (job, cancelled_outcome()) for job in self._handoff.stop(slots, cancel=exc_info)
        )
