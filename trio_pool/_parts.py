"""The parts of an open pool, built together for the running loop, and wired."""

from __future__ import annotations

import logging
import math

import anyio
import anyio.abc

from ._admission import Admission, Shedder
from ._autoscale import Autoscaler, FixedSize, Pressure
from ._backend import Backend, current_backend, ki_protected, wait_through
from ._calls import Calls
from ._completion import Completion
from ._handoff import Handoff
from ._instruments import Instruments
from ._intake import Intake
from ._interface import Operations
from ._job import describe
from ._lease import LeaseQueue, Leases
from ._options import Options
from ._statistics import Counters
from ._workers import WorkerSet, first_load_error

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
        self._initial = options.initial
        self._host = options.host
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

        line = LeaseQueue(
            handoff,
            backend.event,
            lessee_waits,
            pressure.poke,
            options.name,
            options.max_wait,
            renewing=lambda worker: workers.renewing(worker),
        )
        self.workers = workers = WorkerSet(
            options.name,
            options.initial,
            options.host.worker_hosts(options.interface, options.args),
            handoff,
            backend,
            counters,
            operations,
            start_soon=start_soon,
            route=self.calls.route,
            on_loaded=line.offer,
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
                counters,
                backend,
                pressure,
                lessees=lambda: line.waiting,
                none_left=self._none_left,
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
        self.leases = Leases(line, workers, intake, self.calls, operations, backend)

    def _watch_the_exit(self, patience: float) -> None:
        """Once the exit has waited ``patience`` seconds, log the jobs that still run."""
        self._exit_watch = anyio.CancelScope(shield=True)  # a cancelled exit still says it
        deadline = self.backend.current_time() + patience
        self.task_group.start_soon(
            self._warn_of_a_slow_exit, deadline, patience, name=f"{self._name}-exit"
        )

    async def _warn_of_a_slow_exit(self, deadline: float, patience: float) -> None:
        with self._exit_watch:
            await anyio.sleep_until(deadline)
            jobs = [(w, job) for w in self.workers for job in w.slot.running]
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
        self.leases.line.fail_waiters(error)

    def start(self) -> None:
        """Start the pool's own tasks (once its task group is entered)."""
        start_soon, name = self.task_group.start_soon, self._name
        start_soon(self.calls.serve_pool_scope, name=f"{name}-from_loop")
        start_soon(self.workers.serve_successors, name=f"{name}-successors")
        if self.shedder is not None:
            start_soon(self.shedder.run, name=f"{name}-shedder")

    async def start_workers(self) -> None:
        """Start the first workers; return once they have loaded, or raise a loader's error."""
        workers = self.workers.start(self._initial)
        self.autoscaler.started(workers)
        if await self.workers.wait_loaded(workers):
            error = first_load_error(workers)  # one raised as itself, the others as its notes
            assert error is not None
            raise error
        self.autoscaler.loaded(workers)
        self.autoscaler.start(start_soon=self.task_group.start_soon)

    @ki_protected
    def close(self, patience: float) -> None:
        """Accept no more work; leases end; autoscaling only finishes the queue.

        Once the exit has waited ``patience`` seconds, the jobs that still run are logged.
        """
        self.leases.end_all()  # their resets go first, before their workers take shared jobs
        self.intake.close()
        if self.shedder is not None:
            self.shedder.close()
        self.autoscaler.close()
        self.admission.close()  # waiters find the pool closed
        self.leases.line.close()  # they too
        self.handoff.end_leases(w.slot for w in self.workers)
        self._watch_the_exit(patience)

    @ki_protected  # a Ctrl-C comes at an await, where the steps below expect it
    async def stop(self, reason: BaseException | None) -> list[BaseException]:
        """Stop the workers and wait for their threads; return the errors to raise.

        With no ``reason`` the queue is finished first, unless that wait is
        interrupted; with one, queued jobs are cancelled, running jobs told
        to stop, and each hook receives the reason. Several tasks may call it
        (the block's exit and ``aclose()``); each error is returned to one
        caller only.
        """
        errors: list[BaseException] = []
        if reason is None:
            try:
                await self.drained()  # every accepted job finishes before the first hook runs
            except BaseException as exc:  # cancelled, or Ctrl-C, while finishing jobs
                reason = exc
        if reason is not None:
            errors.append(reason)
            # Cancel first: no queued job may start, and a worker that finishes
            # its job now closes with the reason, not as if nothing happened.
            self._cancel_everything(reason)
        self._stop_workers()
        # From here what comes (a cancellation, a Ctrl-C) changes nothing the
        # hooks are told, and the first interruption is raised once the workers
        # have ended; but a second one (the exit's own reason, a Ctrl-C or a
        # cancellation, being the first) stops waiting for what still runs.
        interruptions = await self._join(reason)
        if not errors:
            if not interruptions:  # on trio, the shield held a cancellation back: look now
                try:
                    await self.backend.cancellation_point()
                except BaseException as exc:
                    interruptions.append(exc)
            errors.extend(interruptions[:1])
        return errors + [e for e in self.workers.take_errors() if e is not reason]

    async def _join(self, reason: BaseException | None) -> list[BaseException]:
        """Wait for every worker to end; return what interrupted the wait meanwhile.

        Interrupted a second time (a second Ctrl-C, typically: on asyncio the
        runner turns it into a cancellation of every task), it stops waiting
        for the workers that still run (:meth:`WorkerSet.leave_behind`).
        """
        workers = self.workers
        stopped = workers.all_stopped
        interrupted = reason is not None and not isinstance(reason, Exception)  # Ctrl-C, cancel
        # Not a normal exit: a running job gets the host's grace to stop, then is killed.
        grace = None if reason is None else self._host.kill_grace()
        kill_at = math.inf if grace is None else self.backend.current_time() + grace
        interruptions: list[BaseException] = []
        while not stopped.is_set():
            got = await wait_through(stopped, BaseException, once=True, deadline=kill_at)
            interruptions += got
            if got and interrupted:
                workers.leave_behind()
            interrupted = interrupted or bool(got)
            if self.backend.current_time() >= kill_at:
                workers.kill_running(f"grace_period={grace}")
                kill_at = math.inf
        return interruptions

    def closed(self) -> None:
        """Every worker has ended (or was left behind): the pool's own tasks end."""
        self._exit_watch.cancel()
        self.calls.close()

    async def drained(self) -> None:
        """Wait until every accepted job has finished.

        Cancellation: as for the job's wait; the pool then cancels what is left.
        """
        while jobs := self.workers.outstanding():
            for job in jobs:
                await job.finished().wait()

    @ki_protected
    def _stop_workers(self) -> None:
        """Let every worker stop, once it has no work left (idempotent)."""
        self.autoscaler.stop()
        self.handoff.stop(w.slot for w in self.workers)
        self.workers.close()

    @ki_protected
    def _cancel_everything(self, reason: BaseException) -> None:
        """Cancel the queued jobs; ask running ones, their loop calls and loads to stop."""
        exc_info = (type(reason), reason, reason.__traceback__)
        self.intake.cancel_all([w.slot for w in self.workers], exc_info)
        self.calls.cancel_pool_scope()
        self.workers.cancel_loop_calls()
        self.workers.interrupt()
