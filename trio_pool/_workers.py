"""The worker set: ids, starting, loading, stopping and joining, and whom to stop."""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import anyio
import outcome

from ._backend import Backend, Event, wait_through_cancellation
from ._exceptions import BrokenWorkerError, add_note, raise_combined
from ._handoff import Handoff, Phase
from ._hosts._base import HostFactory, LoopHost
from ._in_worker import WorkerInfo
from ._instruments import Instruments
from ._interface import Operations
from ._job import JobRecord, LoopCall, cancelled_outcome, describe
from ._os_names import short_name
from ._statistics import Counters, WorkerStatistics
from ._worker import Worker

logger = logging.getLogger("trio_pool")

#: Load errors of autoscaling's or a replacement's workers kept to raise at the exit.
MAX_KEPT = 10


#: Workers started in place of others that may die in a row as they load (their
#: process or actor killed, say) and be started again; the next one's error stands.
LOAD_RETRIES = 3


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
        route: Callable[[JobRecord, LoopCall], None],
        on_loaded: Callable[[list[Worker]], None],
        complete: Callable[[JobRecord, outcome.Outcome[Any]], None],
        instruments: Instruments,
        max_jobs: int | None = None,
        abandon: bool = False,
        none_left: Callable[[BaseException], None] = lambda error: None,
    ) -> None:
        """``route`` serves the workers' from_loop() calls; ``on_loaded`` is offered the
        workers free for a lease once new ones have loaded; ``abandon``: a second
        Ctrl-C at the exit may leave thread workers behind (see :meth:`_run`)."""
        self._name = name
        self._make_host = make_host
        self._handoff = handoff
        self._backend = backend
        self._counters = counters
        self._operations = operations
        self._start_soon = start_soon
        self._route = route
        self._on_loaded = on_loaded
        self._max_jobs = max_jobs
        self._abandon = abandon
        self._complete = complete
        self._instruments = instruments
        self._none_left = none_left  # no worker serves, and its successor failed to load
        self._workers: dict[int, Worker] = {}
        self._ids = itertools.count()
        self._deaths_loading = 0  # in a row, of workers started in place of others
        # The pool's own limiter: its threads never count against anyio's default one.
        self._limiter = anyio.CapacityLimiter(max(1, initial))
        # By worker id: stopped by a resize, which collects their hook errors;
        # started by autoscaling, whose load errors are kept here for the exit;
        # started by add_workers and not yet kept (not to be leased meanwhile).
        self._owned: set[int] = set()
        self._unclaimed_loads: set[int] = set()
        self._provisional: set[int] = set()
        # The scope of each worker's task (see _run).
        self._thread_scopes: dict[int, anyio.CancelScope] = {}
        # Workers a second Ctrl-C found still running, by id: warned about, and
        # (if the pool abandons) no longer waited for.
        self._warned: set[int] = set()
        self._left: set[int] = set()
        # Workers due in place of renewed or dead ones, that serve_successors() has
        # not started yet
        # (they count as serving meanwhile, so the pool's size holds).
        self._successors = 0
        self._successor_posted = backend.event()
        self._errors: list[BaseException] = []
        # The first load error kept for the exit; later ones become its notes.
        self._load_error: BaseException | None = None
        self._load_notes = 0
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
        """Workers loading or serving (not those asked to stop), and successors to start."""
        # A worker that died, or stops to be renewed, counts until its successor
        # is due (the loop hears of it a moment later than the thread knows).
        workers = self._workers.values()
        due = 0 if self._closing else sum(w.leaving and not w.replaced for w in workers)
        return sum(w.slot.serving for w in workers) + due + self._successors

    def start(self, count: int, *, claimed: bool = True, provisional: bool = False) -> list[Worker]:
        """Start ``count`` workers.

        ``claimed``: the caller collects their load errors (else they are kept
        for the exit). ``provisional``: nobody may lease them until
        :meth:`keep` (they may still be stopped again).
        """
        if self._closing:
            raise RuntimeError("no worker starts once the pool is stopping its workers")
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
                on_renew=self.renewing,
                on_served=self._served,
                route=self._route,
                os_name=short_name(self._name, worker_id),
                max_jobs=self._max_jobs,
                instruments=self._instruments,
                new_event=self._backend.event,
            )
            self._workers[worker_id] = worker
            self._thread_scopes[worker_id] = anyio.CancelScope(shield=self._abandon)
            try:
                self._start_soon(self._run, worker, name=info.name)
            except BaseException:  # Ctrl-C, say: it never starts, so nobody waits for it
                del self._workers[worker_id], self._thread_scopes[worker_id]
                raise
            self._counters.worker_started()
            if not claimed:
                self._unclaimed_loads.add(worker_id)
            if provisional:
                self._provisional.add(worker_id)
            if self._limiter.total_tokens < len(self._workers):
                self._limiter.total_tokens = len(self._workers)
            started.append(worker)
        return started

    def keep(self, workers: list[Worker]) -> None:
        """Provisional workers are the pool's for good: they may be leased."""
        self._provisional.difference_update(w.id for w in workers)
        self._on_loaded(self.free_for_lease())

    async def _run(self, worker: Worker) -> None:
        # The thread reports its own load and end; this task only lends it a
        # thread, in a scope of its own. By default the pool cancels that scope
        # when it stops on an error, and the pool's own cancellation reaches it:
        # the thread goes on (to_thread waits for it), but what its jobs run on
        # the loop through trio.from_thread or anyio.from_thread is cancelled.
        # A pool that abandons lends the thread abandonably, in a shielded scope
        # that only leave_behind() cancels (a second Ctrl-C at the exit); trio
        # then runs a job's trio.from_thread calls in its system nursery.
        # A loop-driven worker is this task itself, shielded: like a thread, its
        # job and hook end through the handoff and its host, never by a cancellation.
        error: BaseException | None = None
        try:
            with self._thread_scopes[worker.id]:  # cancelled before the thread starts: absorbed
                if isinstance(worker.host, LoopHost):
                    await anyio.lowlevel.checkpoint_if_cancelled()
                    with anyio.CancelScope(shield=True):
                        await worker.run_on_loop()
                else:
                    await anyio.to_thread.run_sync(
                        worker.main, limiter=self._limiter, abandon_on_cancel=self._abandon
                    )
        except BaseException as exc:
            error = exc
        if not worker.started:  # no thread ever ran: report its error as a loader's
            self._never_started(worker, error)
        elif error is not None and not isinstance(error, anyio.get_cancelled_exc_class()):
            raise error
        # A dead worker's replacement, due since its thread's last report: start
        # it now rather than a step later in serve_successors().
        self._start_successors()
        # Native asyncio cancellation (asyncio.run shutting down) can end this
        # task while the thread runs; the thread still reports when it is done.

    def renewing(self, worker: Worker) -> None:
        """``worker`` stops to be renewed: a new worker is to start in its place.

        Posted by the worker's thread (or called as its lease ends); the
        successor starts in :meth:`serve_successors`, as anyio cannot start a
        task from a loop callback, and counts as serving from now on, so the
        pool's size holds. The renewed worker's hook runs with no exception;
        its error, or the new loader's, is kept for the exit.
        """
        self._counters.worker_renewed()
        logger.info("worker %s: renewed, as %s", worker.info.name, worker.renewal)
        self._successor_due(worker)

    def _successor_due(self, worker: Worker) -> None:
        """A worker is to start in place of ``worker``, renewed or dead (none while closing)."""
        worker.replaced = True
        if not self._closing:
            self._successors += 1
            self._successor_posted.set()

    async def serve_successors(self) -> None:
        """The pool's task that starts the workers due in place of others, until it closes."""
        while not self._closing:
            await self._successor_posted.wait()
            self._successor_posted = self._backend.event()
            self._start_successors()

    def _start_successors(self) -> None:
        """Start the workers due in place of others (in a task: anyio starts none elsewhere)."""
        count, self._successors = self._successors, 0
        if count and not self._closing:
            self._start_soon(self._wait_replacements, self.start(count, claimed=False))

    def restore(self) -> None:
        """A job is queued while no worker serves (a fixed pool lost them all): start one."""
        if self.serving == 0 and not self._closing:
            logger.warning(
                "pool %s: no worker is left; starting one for the queued jobs", self._name
            )
            self._start_soon(self._wait_replacements, self.start(1, claimed=False))

    async def _wait_replacements(self, workers: list[Worker]) -> None:
        """Wait for the workers started in place of others; if none is left, say so."""
        if await self.wait_loaded(workers, claimed=False):
            for worker in workers:  # their ends decide whether others start (see _retried)
                await worker.exited.wait()
            self.lost(workers)

    def lost(self, workers: list[Worker]) -> None:
        """``workers`` failed to load (or were stopped again): if no worker is left,
        nothing queued would ever run, and it fails with their first loader's error.

        Whoever's workers fail last decides: a replacement's, or add_workers'
        (a replacement that failed first saw the added worker still loading).
        """
        errors = [w.load_error for w in workers if w.load_error is not None]
        if errors and not self._closing and self.serving == 0:
            self._none_left(errors[0])

    def _never_started(self, worker: Worker, exc: BaseException | None) -> None:
        """The worker's thread could not start, or the pool stopped it first.

        A thread that could not start is a loader's error; a worker cancelled
        before its thread started (the pool stopping) just never loaded.
        """
        if exc is not None and not isinstance(exc, anyio.get_cancelled_exc_class()):
            logger.debug("worker %s: its thread did not start: %r", worker.info.name, exc)
            worker.load_error = exc
        self._handoff.loaded(worker.slot, ok=False)
        worker.loaded.set()
        self._on_exit(worker)

    def interrupt(self, workers: Iterable[Worker] | None = None) -> None:
        """Pass on to the hosts of ``workers`` (or all) that their loads and jobs should stop.

        Only a host whose load can wait a long time heeds it for a load (a
        Ray actor waiting for the cluster's resources); a thread's loader
        runs on. A host that can reach a running job at once does (a
        subinterpreter's); the others relay the job's cancel request
        themselves.
        """
        for worker in list(self._workers.values()) if workers is None else workers:
            worker.host.interrupt()

    def cancel_loop_calls(self) -> None:
        """Cancel what the workers' jobs run on the loop through from_thread (an error exit).

        Not in a pool that abandons: there this would abandon the threads.
        """
        if not self._abandon:
            for scope in self._thread_scopes.values():
                scope.cancel()

    def kill_running(self, why: str) -> None:
        """Kill the far side of every worker still running a job (an error exit's grace is over)."""
        for worker in list(self._workers.values()):
            job = worker.slot.job
            if job is not None and worker.host.kill():
                logger.warning(
                    "worker %s: its job %s did not stop within %s; its %s was killed",
                    worker.info.name,
                    describe(job),
                    why,
                    worker.host.where().kind,
                )

    def leave_behind(self) -> None:
        """A second Ctrl-C at the exit: stop waiting for the workers that still run.

        A process or an actor is killed (its thread then ends soon). A thread
        cannot be stopped: it is named in a WARNING and, in a pool that
        abandons, left running and no longer waited for (on trio it is a
        daemon thread of trio's cache; anyio's on asyncio are not daemons,
        and Python waits for them at its exit); otherwise the exit waits on.
        """
        for worker in list(self._workers.values()):
            if worker.id in self._warned or worker.host.kill():
                continue
            self._warned.add(worker.id)
            job = worker.slot.job
            doing = "its exit hook, or its loader" if job is None else f"the job {describe(job)}"
            if self._abandon:
                self._left.add(worker.id)
                self._thread_scopes[worker.id].cancel()
                logger.warning(
                    "worker %s: left running %s after a second Ctrl-C (a thread cannot be "
                    "stopped; on trio the program ends without it, on asyncio or in a "
                    "subinterpreter when it returns)",
                    worker.info.name,
                    doing,
                )
            else:
                logger.warning(
                    "worker %s: still running %s after a second Ctrl-C; a thread cannot be "
                    "stopped, so the exit waits for it (a pool made with "
                    "abandon_on_cancel=True would leave it behind)",
                    worker.info.name,
                    doing,
                )
        self._check_all_stopped()

    def _check_all_stopped(self) -> None:
        if self._closing and self._workers.keys() <= self._left:
            self.all_stopped.set()

    def _served(self, worker: Worker) -> None:
        """A worker's interface has loaded (posted by its thread, before its end)."""
        self._deaths_loading = 0
        if self._instruments.worker_started:
            self._instruments.call("worker_started", self._record(worker))

    def _on_exit(self, worker: Worker) -> None:
        """A worker thread's last report: its hook has run and it is leaving."""
        self._handoff.flush()  # deliver the outcomes it left behind
        for job in self._handoff.take_direct(worker.slot):  # it never served them
            self._complete(job, _gone(worker) if worker.died else cancelled_outcome())
        if self._instruments.worker_stopped and worker.served:
            self._instruments.call("worker_stopped", self._record(worker), worker.stop_reason)
        del self._workers[worker.id], self._thread_scopes[worker.id]
        self._left.discard(worker.id)
        self._warned.discard(worker.id)
        if worker.died and not self._closing:  # in the same step: the pool's size holds
            logger.warning("worker %s: starting a replacement", worker.info.name)
            self._successor_due(worker)
        self._counters.worker_stopped(hook_failed=worker.hook_error is not None, died=worker.died)
        if worker.hook_error is not None and worker.id not in self._owned:
            self._keep_for_exit(worker, "exit hook", worker.hook_error)
        error = worker.load_error
        if error is not None and worker.id in self._unclaimed_loads and not self._retried(worker):
            self._keep_for_exit(worker, "loader", error)
        for ids in (self._owned, self._unclaimed_loads, self._provisional):
            ids.discard(worker.id)
        self._check_all_stopped()
        worker.exited.set()

    def _retried(self, worker: Worker) -> bool:
        """A worker started in place of another died as it loaded: start one again.

        Only for a death (BrokenWorkerError: its far side is gone), not for a
        loader's own error, and :data:`LOAD_RETRIES` times in a row at most.
        """
        error = worker.load_error
        if (
            self._closing
            or not isinstance(error, BrokenWorkerError)
            or self._deaths_loading >= LOAD_RETRIES
        ):
            return False
        self._deaths_loading += 1
        logger.warning("%s; starting another worker in its place", error)
        self._successor_due(worker)
        return True

    async def wait_loaded(
        self, workers: list[Worker], *, claimed: bool = True
    ) -> list[BaseException]:
        """Wait until ``workers`` have loaded; return the loaders' errors.

        Cancellation: it waits anyway, then, for workers started ``claimed``,
        raises the cancellation (after the errors, which it leaves to the
        caller); for the others it returns as usual.
        """
        cancelled: BaseException | None = None
        try:
            for worker in workers:
                await worker.loaded.wait()
        except anyio.get_cancelled_exc_class() as exc:
            cancelled = exc
            self.interrupt(workers)  # the loads that can stop, stop
        cancelled = await _wait_all(self._backend, (w.loaded for w in workers)) or cancelled
        for worker in workers:
            if worker.load_error is None:
                self._operations.learn(worker.host.operations)
        self._on_loaded(self.free_for_lease())
        errors = [w.load_error for w in workers if w.load_error is not None]
        if cancelled is not None and claimed:
            raise_combined([cancelled, *errors])
        return errors

    async def stop_and_join(self, workers: list[Worker]) -> list[BaseException]:
        """Stop ``workers`` once their jobs are done and wait for their threads.

        Returns what their hooks raised, after the cancellation that arrived
        meanwhile, if one did: the change always completes.
        """
        # Not one stopping already (autoscaling retired it meanwhile): its hook's
        # error is someone else's to raise.
        mine = [w for w in workers if w.slot.serving]
        for worker in mine:
            self._owned.add(worker.id)
            self._handoff.stop_worker(worker.slot)
        cancelled = await _wait_all(self._backend, (w.exited for w in workers))
        errors = [w.hook_error for w in mine if w.hook_error is not None]
        return [cancelled, *errors] if cancelled is not None else errors

    def choose_to_stop(self, count: int, least: int) -> list[Worker]:
        """The ``count`` workers to stop: idle first, then busy, then loading.

        Raises:
            ValueError: if fewer than ``least`` would remain (or remain loaded), or too
                many are leased.
        """
        serving = self.serving
        if serving - count < least:
            raise ValueError(f"cannot stop {count} of {serving} workers: {least} must remain")
        # Not a worker add_workers may still stop again itself: it would be stopped twice.
        free = [
            w
            for w in self._workers.values()
            if w.slot.serving and not w.slot.leased and w.id not in self._provisional
        ]
        if len(free) < count:
            raise ValueError(
                f"only {len(free)} workers are neither leased nor being added; cannot stop {count}"
            )
        # The youngest first among equals; loading ones last, as they may still
        # fail, unless stopping loaded ones would leave too few (a renewed
        # worker's successor still loading, say).
        free.sort(key=lambda w: (w.slot.phase is Phase.LOADING, w.slot.job is not None, -w.id))
        chosen = free[:count]
        if self._loaded_left(chosen) < least:
            free.sort(key=lambda w: w.slot.phase is not Phase.LOADING)  # (stable)
            chosen = free[:count]
        if self._loaded_left(chosen) < least:
            raise ValueError(
                f"cannot stop {count} of {serving} workers now: {least} loaded ones must "
                "remain, and some of the others are still loading or being added"
            )
        return chosen

    def _loaded_left(self, chosen: list[Worker]) -> int:
        """Loaded, kept workers that stay if ``chosen`` stop (a loading one may still fail,
        and add_workers may still take back the ones it started)."""
        return sum(
            w.slot.serving and w.slot.phase is Phase.SERVING and w.id not in self._provisional
            for w in self._workers.values()
            if w not in chosen
        )

    def free_for_lease(self) -> list[Worker]:
        """Loaded, serving, unleased workers, idle ones first (a loading one might fail)."""
        free = [
            w
            for w in self._workers.values()
            if w.slot.phase is Phase.SERVING
            and w.slot.serving
            and not w.slot.leased
            and w.id not in self._provisional
        ]
        free.sort(key=lambda w: (w.slot.job is not None, w.id))
        return free

    def _keep_for_exit(self, worker: Worker, what: str, error: BaseException) -> None:
        """An error nobody receives now (autoscaling, a replacement): raised at the exit.

        Until the pool closes that may be long, so it is logged now (WARNING,
        once). Load errors repeat while autoscaling retries a failing loader:
        the first is raised as itself, the next MAX_KEPT are notes on it, the
        others are only logged.
        """
        first = self._load_error if what == "loader" else None
        kept = first is None or self._load_notes < MAX_KEPT
        if not self._closing:
            fate = "raised at the pool's exit" if kept else f"not kept: {MAX_KEPT} already are"
            logger.warning("worker %s: its %s raised %r (%s)", worker.info.name, what, error, fate)
        if first is None:
            self._errors.append(error)
            if what == "loader":
                self._load_error = error
        elif kept:
            note_load_error(first, worker, error)
            self._load_notes += 1

    def take_errors(self) -> list[BaseException]:
        errors, self._errors = self._errors, []
        self._load_error, self._load_notes = None, 0
        return errors

    def outstanding(self) -> list[JobRecord]:
        """The jobs accepted and not finished: queued, for one worker, or running."""
        return self._handoff.outstanding(w.slot for w in self._workers.values())

    def close(self) -> None:
        """The workers stop: ``all_stopped`` is set once no worker is left."""
        self._closing = True
        self._successors = 0
        self._successor_posted.set()
        self._check_all_stopped()

    def statistics(self) -> tuple[int, list[WorkerStatistics]]:
        """The queued jobs and each worker's record, in one look under the lock."""
        with self._handoff.lock:
            return self._handoff.queued, [self._record(w) for w in self._workers.values()]

    @staticmethod
    def _record(w: Worker) -> WorkerStatistics:
        return WorkerStatistics(
            w.id,
            w.info.name,
            "busy" if w.slot.job is not None else _STATES[w.slot.phase],
            w.slot.jobs_done,
            w.slot.leased,
            *w.host.where()[1:],
        )


#: A worker's state as its statistics say (a serving worker with a job is "busy").
_STATES = {
    Phase.LOADING: "starting",
    Phase.SERVING: "idle",
    Phase.STOPPING: "stopping",
    Phase.STOPPED: "stopped",
}


def first_load_error(workers: list[Worker]) -> BaseException | None:
    """The error of the first of ``workers`` whose loader failed, as itself.

    However many workers' loaders fail, the pool raises one loader error, so
    that ``except OSError:`` catches it with one worker as with many (a
    loader usually fails the same way in every worker): the others are
    notes on it.
    """
    failed = [w for w in workers if w.load_error is not None]
    if not failed:
        return None
    first = failed[0].load_error
    assert first is not None
    for worker in failed[1:]:
        assert worker.load_error is not None
        note_load_error(first, worker, worker.load_error)
    return first


def note_load_error(first: BaseException, worker: Worker, error: BaseException) -> None:
    """Note on ``first`` that ``worker``'s loader failed too, with ``error``."""
    same = type(error) is type(first) and error.args == first.args
    note = f"the loader of worker {worker.info.name} failed too"
    add_note(first, note if same else f"{note}: {error!r}")


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


def _gone(worker: Worker) -> outcome.Outcome[Any]:
    """For a job aimed at a worker whose process died first (a lease's, a broadcast's)."""
    return outcome.Error(
        BrokenWorkerError(f"worker {worker.info.name} died before it ran this job")
    )
