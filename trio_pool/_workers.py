"""The worker set: ids, starting, loading, stopping and joining, and whom to stop."""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import anyio

from ._backend import Backend, Event, wait_through_cancellation
from ._exceptions import raise_combined
from ._handoff import Handoff, Phase
from ._hosts._base import HostFactory
from ._in_worker import WorkerInfo
from ._interface import Operations
from ._job import Job, LoopCall, cancelled_outcome
from ._statistics import Counters, WorkerStatistics
from ._worker import Worker


class WorkerSet:
    """The pool's live workers; loop thread only.

    Each worker is a thread lent by a task of the pool's task group; the
    thread reports its load and its end to the loop itself. Errors that
    nobody else collects (the hooks of workers stopped by the pool's exit or
    by autoscaling, loaders that failed while autoscaling) are kept until
    the exit takes them.
    """

    def __init__(
        self,
        name: str,
        initial: int,
        make_host: HostFactory,
        handoff: Handoff,
        backend: Backend,
        counters: Counters,
        operations: Operations,
        *,
        start_soon: Callable[..., object],
        route: Callable[[Job[Any], LoopCall], None],
        on_loaded: Callable[[], None],
    ) -> None:
        """``route`` serves the workers' from_loop() calls; ``on_loaded`` hears of new workers."""
        self._name = name
        self._make_host = make_host
        self._handoff = handoff
        self._backend = backend
        self._counters = counters
        self._operations = operations
        self._start_soon = start_soon
        self._route = route
        self._on_loaded = on_loaded
        self._workers: dict[int, Worker] = {}
        self._ids = itertools.count()
        # The pool's own limiter: its threads never count against anyio's default one.
        self._limiter = anyio.CapacityLimiter(max(1, initial))
        self._owned: set[int] = set()  # stopped by a resize, which collects their hook errors
        self._errors: list[BaseException] = []
        self._closing = False
        #: Set once the pool is closing and every worker thread has ended.
        self.all_stopped: Event = backend.event()

    def __iter__(self) -> Iterator[Worker]:
        return iter(self._workers.values())

    def __len__(self) -> int:
        return len(self._workers)

    def get(self, worker_id: int) -> Worker | None:
        return self._workers.get(worker_id)

    @property
    def serving(self) -> int:
        """Workers loading or serving (not those asked to stop)."""
        return sum(w.slot.serving for w in self._workers.values())

    def start(self, count: int) -> list[Worker]:
        started: list[Worker] = []
        for _ in range(count):
            worker_id = next(self._ids)
            info = WorkerInfo(worker_id, f"{self._name}-worker-{worker_id}")
            worker = Worker(
                info,
                self._make_host(),
                self._handoff,
                post=self._backend.post,
                loaded=self._backend.event(),
                exited=self._backend.event(),
                on_exit=self._on_exit,
                route=self._route,
            )
            self._workers[worker_id] = worker
            self._counters.worker_started()
            if self._limiter.total_tokens < len(self._workers):
                self._limiter.total_tokens = len(self._workers)
            self._start_soon(self._run, worker, name=info.name)
            started.append(worker)
        return started

    async def _run(self, worker: Worker) -> None:
        # The thread reports its own load and end; this task only lends it a
        # thread. A shield keeps scope cancellation out; native asyncio
        # cancellation (asyncio.run shutting down) ends this task, and the
        # thread still reports when it is done.
        with contextlib.suppress(anyio.get_cancelled_exc_class()):
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(worker.main, limiter=self._limiter)

    def _on_exit(self, worker: Worker) -> None:
        """A worker thread's last report: its hook has run and it is leaving."""
        self._handoff.flush()  # deliver the outcomes it left behind
        for job in self._handoff.take_direct(worker.slot):  # it never served them
            self._counters.record(job, cancelled_outcome())
        del self._workers[worker.id]
        self._counters.worker_stopped(hook_failed=worker.hook_error is not None)
        if worker.hook_error is not None and worker.id not in self._owned:
            self._errors.append(worker.hook_error)
        self._owned.discard(worker.id)
        if self._closing and not self._workers:
            self.all_stopped.set()
        worker.exited.set()

    async def wait_loaded(self, workers: list[Worker]) -> list[BaseException]:
        """Wait until ``workers`` have loaded; return the loaders' errors.

        Cancellation: it waits anyway, then raises the cancellation (after
        the errors, which it leaves to the caller).
        """
        cancelled = await _wait_all(self._backend, (w.loaded for w in workers))
        for worker in workers:
            if worker.load_error is None:
                self._operations.learn(worker.host.operations)
        self._on_loaded()
        errors = [w.load_error for w in workers if w.load_error is not None]
        if cancelled is not None:
            raise_combined([cancelled, *errors])
        return errors

    async def stop_and_join(self, workers: list[Worker]) -> list[BaseException]:
        """Stop ``workers`` once their jobs are done and wait for their threads.

        Returns what their hooks raised, after the cancellation that arrived
        meanwhile, if one did: the change always completes.
        """
        for worker in workers:
            self._owned.add(worker.id)
            self._handoff.stop_worker(worker.slot)
        cancelled = await _wait_all(self._backend, (w.exited for w in workers))
        errors = [w.hook_error for w in workers if w.hook_error is not None]
        return [cancelled, *errors] if cancelled is not None else errors

    def choose_to_stop(self, count: int, least: int) -> list[Worker]:
        """The ``count`` workers to stop: idle first, then busy, then loading.

        Raises:
            ValueError: if fewer than ``least`` would remain, or too many are leased.
        """
        serving = self.serving
        if serving - count < least:
            raise ValueError(f"cannot stop {count} of {serving} workers: {least} must remain")
        free = [w for w in self._workers.values() if w.slot.serving and not w.slot.leased]
        if len(free) < count:
            raise ValueError(f"only {len(free)} workers are not leased; cannot stop {count}")
        # The youngest first among equals.
        free.sort(key=lambda w: (w.slot.phase is Phase.LOADING, w.slot.job is not None, -w.id))
        return free[:count]

    def free_for_lease(self) -> list[Worker]:
        """Loaded, serving, unleased workers, idle ones first (a loading one might fail)."""
        free = [
            w
            for w in self._workers.values()
            if w.slot.phase is Phase.SERVING and w.slot.serving and not w.slot.leased
        ]
        free.sort(key=lambda w: (w.slot.job is not None, w.id))
        return free

    def report(self, errors: list[BaseException], *, first: bool = False) -> None:
        """Errors to raise at the pool's exit (``first``: before those already kept)."""
        if first:
            self._errors[:0] = errors
        else:
            self._errors.extend(errors)

    def take_errors(self) -> list[BaseException]:
        errors, self._errors = self._errors, []
        return errors

    def close(self) -> None:
        """The pool is closing: ``all_stopped`` is set once no worker is left."""
        self._closing = True
        if not self._workers:
            self.all_stopped.set()

    def statistics(self) -> tuple[int, list[WorkerStatistics]]:
        """The queued jobs and each worker's record, in one look under the lock."""
        with self._handoff.lock:
            return self._handoff.queued, [
                WorkerStatistics(
                    w.id,
                    w.info.name,
                    "busy" if w.slot.job is not None else w.slot.phase.value,
                    w.slot.jobs_done,
                    w.slot.leased,
                )
                for w in self._workers.values()
            ]


async def _wait_all(backend: Backend, events: Iterable[Event]) -> BaseException | None:
    """Wait for every event, whatever comes; return the cancellation that came."""
    cancelled: BaseException | None = None
    for event in events:
        cancelled = await wait_through_cancellation(event) or cancelled
    if cancelled is None:  # on trio, a shield held it back: look now
        try:
            await backend.cancellation_point()
        except anyio.get_cancelled_exc_class() as exc:
            cancelled = exc
    return cancelled
