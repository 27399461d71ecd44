"""Autoscaling: grow while jobs wait and no worker is free, retire workers idle too long.

A pool with a fixed number of workers has :class:`FixedSize`, which does
nothing, so the pool never asks whether it autoscales.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable

import anyio

from ._admission import Admission
from ._backend import Backend
from ._handoff import Delivery, Handoff, Phase
from ._options import Options
from ._statistics import Counters
from ._worker import Worker
from ._workers import WorkerSet

logger = logging.getLogger("trio_pool")


class Pressure:
    """A wake-up for the autoscaler: poked by anyone, waited for by the autoscaler."""

    def __init__(self, backend: Backend) -> None:
        self._new_event = backend.event
        self._event = backend.event()
        self._demand = False

    def poke(self) -> None:
        self._event.set()

    def demand(self) -> None:
        """Poke, for new work (a job, a lessee): growing is worth trying again."""
        self._demand = True
        self._event.set()

    def take_demand(self) -> bool:
        demand, self._demand = self._demand, False
        return demand

    async def wait(self) -> None:
        await self._event.wait()

    def rearm(self) -> None:
        self._event = self._new_event()


class FixedSize:
    """The autoscaler of a pool with a fixed number of workers.

    It keeps one promise: a job queued while no worker is left (the one
    started in place of the last failed to load) starts one again, so the
    job runs, or fails with the loader's error, instead of waiting for ever.
    """

    def __init__(self, workers: WorkerSet | None = None) -> None:
        self._workers = workers

    def start(self, start_soon: Callable[..., object]) -> None:
        pass

    def job_queued(self) -> None:
        if self._workers is not None:
            self._workers.restore()

    def delivered(self, batch: Delivery) -> None:
        pass

    def started(self, workers: list[Worker]) -> None:
        pass

    def loaded(self, workers: list[Worker]) -> None:
        pass

    def close(self) -> None:
        pass

    def stop(self) -> None:
        pass


class Autoscaler:
    """Decides in a task of its own when to start and to retire workers; loop thread only.

    Growing: when the queued jobs plus the tasks waiting for a lease
    outnumber the free workers, it starts the difference (up to
    ``max_workers``) as one step, and waits for the step to load before it
    looks again. Retiring: workers idle for ``idle_timeout`` on the loop's
    clock, from their last finished job or their load, never below
    ``min_workers`` and never while jobs wait. It looks on a new job, a
    delivered batch, a lease ending, and the next retirement deadline. After
    a growth step failed it grows again only for new work. While the pool
    closes it grows only to finish the queued jobs, and retires nobody.
    """

    def __init__(
        self,
        options: Options,
        workers: WorkerSet,
        handoff: Handoff,
        admission: Admission,
        counters: Counters,
        backend: Backend,
        pressure: Pressure,
        *,
        lessees: Callable[[], int],
        none_left: Callable[[BaseException], None],
    ) -> None:
        """``lessees()``: the tasks waiting for a lease; ``none_left(error)``: fail
        the queued jobs and those tasks (no worker can come)."""
        assert options.max_workers is not None
        self._name = options.name
        self._min = options.min_workers
        self._max = options.max_workers
        self._idle_timeout = options.idle_timeout
        self._workers = workers
        self._handoff = handoff
        self._admission = admission
        self._lessees = lessees
        self._counters = counters
        self._none_left = none_left
        self._backend = backend
        self._pressure = pressure
        self._scope = anyio.CancelScope()
        self._deadline = math.inf  # of the next retirement
        self._growth_failed = False
        self._closing = False
        self._idle_since: dict[int, float] = {}  # by worker id, on the loop's clock

    def start(self, start_soon: Callable[..., object]) -> None:
        start_soon(self._run, name=f"{self._name}-autoscaler")

    def job_queued(self) -> None:
        if self._handoff.unserved:
            self._pressure.demand()

    def delivered(self, batch: Delivery) -> None:
        now = self._backend.current_time()
        for job, _ in batch:
            if job.worker_id is not None:
                self._idle_since[job.worker_id] = now
        if self._deadline == math.inf:
            self._pressure.poke()  # a worker may have become idle: time its retirement

    def started(self, workers: list[Worker]) -> None:
        """Idle from now (a worker that loads before the rest of its step is idle meanwhile)."""
        now = self._backend.current_time()
        for worker in workers:
            self._idle_since[worker.id] = now

    def loaded(self, workers: list[Worker]) -> None:
        """Their step has loaded: idle from now on, unless they have served jobs already."""
        now = self._backend.current_time()
        for worker in workers:
            if not worker.slot.jobs_done:
                self._idle_since[worker.id] = now

    def close(self) -> None:
        """The pool closes: grow only to finish the queue, then end."""
        self._closing = True
        self._pressure.poke()

    def stop(self) -> None:
        """The workers stop: start no more."""
        self._scope.cancel()

    async def _run(self) -> None:
        with self._scope:
            while True:
                self._pressure.rearm()
                if self._pressure.take_demand():
                    self._growth_failed = False  # new work: growing may work now
                if self._closing and not self._handoff.queued:
                    return
                step = self._growth_step()
                if step:
                    logger.info(
                        "pool %s autoscaling: %d jobs wait and no worker is free: starting %d",
                        self._name,
                        self._handoff.queued,
                        step,
                    )
                    self._counters.scaled(up=step)
                    workers = self._workers.start(step, claimed=False)
                    self.started(workers)
                    errors = await self._workers.wait_loaded(workers, claimed=False)
                    if self._scope.cancel_called:
                        return  # the workers stop (their load errors are kept for the exit)
                    self.loaded(workers)
                    self._counters.scaled(up=-len(errors))  # count the workers that did start
                    if errors:
                        self._growth_failed_on(errors)
                    continue
                self._deadline = math.inf if self._closing else self._retire_idle()
                with anyio.move_on_after(self._deadline - self._backend.current_time()):
                    await self._pressure.wait()

    def _growth_failed_on(self, errors: list[BaseException]) -> None:
        """A loader failed (the worker set keeps the error for the exit): retry on new work.

        With no worker left to serve them, the queued jobs and the tasks
        waiting for a lease fail with that error rather than wait for ever.
        """
        self._growth_failed = True
        logger.info(
            "pool %s autoscaling: a loader failed (%r, raised at the exit); retrying on new work",
            self._name,
            errors[0],
        )
        if self._workers.serving == 0:
            self._none_left(errors[0])

    def _growth_step(self) -> int:
        """How many workers to start now: one per job no free worker will take."""
        if self._growth_failed or any(w.slot.phase is Phase.LOADING for w in self._workers):
            return 0
        free = sum(
            w.slot.serving and w.slot.job is None and not w.slot.leased for w in self._workers
        )
        wanted = self._handoff.queued + self._lessees()
        return max(0, min(self._max - self._workers.serving, wanted - free))

    def _retire_idle(self) -> float:
        """Stop workers idle for too long; return when to look again."""
        now = self._backend.current_time()
        if self._handoff.queued:
            return math.inf  # work is waiting: nobody is idle for long
        live = {w.id for w in self._workers}
        self._idle_since = {k: v for k, v in self._idle_since.items() if k in live}
        idle = sorted(
            (
                w
                for w in self._workers
                if w.slot.serving
                and w.slot.phase is Phase.SERVING
                and w.slot.job is None
                and not w.slot.leased
            ),
            key=self._since,
        )
        surplus = self._workers.serving - self._min
        retired = [w for w in idle if now - self._since(w) >= self._idle_timeout]
        retired = retired[: max(0, surplus)]
        for worker in retired:
            self._handoff.stop_worker(worker.slot)
        if retired:
            self._counters.scaled(down=len(retired))
            logger.info(
                "pool %s autoscaling: retiring %d workers idle for %g s or more",
                self._name,
                len(retired),
                self._idle_timeout,
            )
        waiting = [self._since(w) + self._idle_timeout for w in idle if w not in retired]
        return min(waiting) if waiting and surplus > len(retired) else math.inf

    def _since(self, worker: Worker) -> float:
        return self._idle_since.setdefault(worker.id, self._backend.current_time())
