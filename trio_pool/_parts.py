"""The parts of an open pool, built together for the running loop, and wired."""

from __future__ import annotations

import logging

import anyio
import anyio.abc

from ._admission import Admission, Shedder
from ._autoscale import Autoscaler, FixedSize, Pressure
from ._backend import Backend, current_backend, ki_protected
from ._calls import Calls
from ._completion import Completion
from ._handoff import Handoff
from ._instruments import Instruments
from ._intake import Intake
from ._interface import Operations
from ._job import describe
from ._lease import LeaseQueue
from ._options import Options
from ._statistics import Counters
from ._workers import WorkerSet

logger = logging.getLogger("trio_pool")


class Parts:
    """Who owns what in an open pool (see docs/how-it-works.rst)."""

    def __init__(
        self,
        options: Options,
        counters: Counters,
        operations: Operations,
        instruments: Instruments,
    ) -> None:
        backend: Backend = current_backend()
        self.backend = backend
        self._name = options.name
        self._exit_watch = anyio.CancelScope()
        self.task_group: anyio.abc.TaskGroup = anyio.create_task_group()
        start_soon = self.task_group.start_soon
        completion = Completion(counters, instruments)
        # The handoff delivers to the intake, built last, as it uses the others.
        self.handoff = handoff = Handoff(backend.post, lambda batch: intake.deliver(batch))
        self.admission = Admission(options.queue_size, handoff, backend.event)
        #: With max_wait: takes out the waiting callers' jobs no worker took in time.
        self.shedder: Shedder | None = None
        if options.max_wait is not None:
            self.shedder = Shedder(backend.event, lambda job: intake.shed(job))
        self.calls = Calls(
            backend, counters, start_soon, abandon_on_cancel=options.abandon_on_cancel
        )
        pressure = Pressure(backend)

        def lessee_waits() -> None:
            pressure.demand()  # autoscaling may start a worker
            self.autoscaler.job_queued()  # a fixed pool with none left starts one

        self.leases = LeaseQueue(
            handoff,
            backend.event,
            lessee_waits,
            pressure.poke,
            options.name,
            options.max_wait,
            renewing=lambda worker: self.workers.renewing(worker),
        )
        self.workers = WorkerSet(
            options.name,
            options.initial,
            options.host._factory(options.interface, options.args),
            handoff,
            backend,
            counters,
            operations,
            start_soon=start_soon,
            route=self.calls.route,
            on_loaded=self.leases.offer,
            complete=completion.complete,
            instruments=instruments,
            max_jobs=options.max_jobs_per_worker,
            abandon=options.abandon_on_cancel,
            none_left=self._none_left,
        )
        self.autoscaler: Autoscaler | FixedSize = FixedSize(self.workers)
        if options.autoscaling:
            self.autoscaler = Autoscaler(
                options,
                self.workers,
                handoff,
                self.admission,
                self.leases,
                counters,
                backend,
                pressure,
                lambda error: intake.fail_queued(error),
            )
        self.intake = intake = Intake(
            options.name,
            handoff,
            self.admission,
            self.workers,
            self.autoscaler,
            self.calls,
            counters,
            operations,
            backend,
            options.max_wait,
            self.shedder,
            completion,
            instruments,
        )

    def watch_the_exit(self, patience: float) -> None:
        """Once the exit has waited ``patience`` seconds, log the jobs that still run."""
        self._exit_watch = anyio.CancelScope(shield=True)  # a cancelled exit still says it
        deadline = self.backend.current_time() + patience
        self.task_group.start_soon(
            self._warn_of_a_slow_exit, deadline, patience, name=f"{self._name}-exit"
        )

    def stop_watching_the_exit(self) -> None:
        self._exit_watch.cancel()

    async def _warn_of_a_slow_exit(self, deadline: float, patience: float) -> None:
        with self._exit_watch:
            await anyio.sleep_until(deadline)
            jobs = [(w, w.slot.job) for w in self.workers if w.slot.job is not None]
            if jobs:
                logger.warning(
                    "pool %s: its exit has waited %g s for %d running jobs: %s (a job "
                    "in a thread ends only when it returns, or notices check_cancelled())",
                    self._name,
                    patience,
                    len(jobs),
                    "; ".join(f"{describe(job)} on {w.info.name}" for w, job in jobs),
                )

    def _none_left(self, error: BaseException) -> None:
        """No worker serves, and the one started in place of the last failed to load:
        queued jobs and the tasks waiting for a lease fail with its error, rather than
        wait for ever (autoscaling does the same when it cannot grow)."""
        self.intake.fail_queued(error)
        self.leases.fail_waiters(error)

    def start(self) -> None:
        """Start the pool's own tasks (once its task group is entered)."""
        start_soon, name = self.task_group.start_soon, self._name
        start_soon(self.calls.serve_pool_scope, name=f"{name}-from_loop")
        start_soon(self.workers.serve_successors, name=f"{name}-successors")
        if self.shedder is not None:
            start_soon(self.shedder.run, name=f"{name}-shedder")

    @ki_protected
    def close(self) -> None:
        """Accept no more work; leases end; autoscaling only finishes the queue."""
        self.intake.close()
        if self.shedder is not None:
            self.shedder.close()
        self.autoscaler.close()
        self.admission.close()  # waiters find the pool closed
        self.leases.close()  # they too
        self.handoff.end_leases(w.slot for w in self.workers)

    async def drained(self) -> None:
        """Wait until every accepted job has finished.

        Cancellation: as for the job's wait; the pool then cancels what is left.
        """
        while jobs := self.workers.outstanding():
            for job in jobs:
                await job._get_event().wait()

    @ki_protected
    def stop_workers(self) -> None:
        """Let every worker stop, once it has no work left (idempotent)."""
        self.autoscaler.stop()
        self.handoff.stop(w.slot for w in self.workers)
        self.workers.close()

    @ki_protected
    def cancel_everything(self, reason: BaseException) -> None:
        """Cancel the queued jobs; ask running ones, their loop calls and loads to stop."""
        exc_info = (type(reason), reason, reason.__traceback__)
        self.intake.cancel_all([w.slot for w in self.workers], exc_info)
        self.calls.cancel_pool_scope()
        self.workers.cancel_loop_calls()
        self.workers.interrupt()
