"""One worker: a thread (or a task) that loads its host's interface, runs jobs, and closes it."""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Awaitable, Callable, Hashable
from time import perf_counter
from typing import Any

import anyio
import outcome
import sniffio

from ._backend import Event, LoopBell
from ._exceptions import JobCancelled
from ._handoff import Handoff, Phase, Slot
from ._hosts._base import Host, HostDied, LoadInterrupted, LoopHost
from ._in_worker import WorkerInfo
from ._instruments import Instruments, StopReason
from ._job import JobRecord, LoopCall, ask_loop
from ._os_names import rename_current_thread

logger = logging.getLogger("trio_pool")


class Worker:
    """One worker's body (a thread's, or a loop task's), and what the loop learns of it.

    The thread writes ``load_error`` before it sets ``loaded``, and
    ``hook_error`` before it sets ``exited`` (both posted to the loop); the
    loop reads them after. Its place in the handoff is ``slot``. While a job
    runs, the worker is that job's :class:`~trio_pool._in_worker.JobView`.
    """

    def __init__(
        self,
        info: WorkerInfo,
        host: Host | LoopHost,
        handoff: Handoff,
        *,
        post: Callable[[Callable[[], object]], None],
        loaded: Event,
        exited: Event,
        on_exit: Callable[[Worker], None],
        on_renew: Callable[[Worker], None],
        on_served: Callable[[Worker], None] = lambda worker: None,
        route: Callable[[JobRecord, LoopCall], None],
        os_name: str,
        max_jobs: int | None = None,
        instruments: Instruments | None = None,
        new_event: Callable[[], Event] | None = None,
    ) -> None:
        """``os_name``: the thread's name at the OS level while it is this worker.

        ``new_event`` makes the loop's events: a loop-driven host's worker
        (a task) waits on them for its jobs and its from_loop() calls.

        ``on_renew(worker)`` is posted once the worker stops to be renewed
        (after ``max_jobs`` jobs, or when its host asks); ``on_served(worker)``
        once its interface has loaded, before anything else it reports.
        """
        self.info = info
        self._os_name = os_name
        self.host = host
        self._new_event = new_event
        on_loop = isinstance(host, LoopHost)
        if on_loop and new_event is None:
            raise TypeError("a loop-driven host's worker needs new_event")
        bell = LoopBell(new_event) if on_loop and new_event is not None else None
        self.slot: Slot = handoff.new_slot(info.id, bell)
        self.loaded = loaded
        self.exited = exited
        self.load_error: BaseException | None = None
        self.hook_error: BaseException | None = None
        self._handoff = handoff
        self._post = post
        self._on_exit = on_exit
        self._on_renew = on_renew
        self._on_served = on_served
        self._max_jobs = max_jobs
        self._instruments = Instruments() if instruments is None else instruments
        self._route = route
        self._job: JobRecord | None = None  # the job its thread runs (thread-driven only)
        #: Calls its loop-driven host may have in flight at once (1: one job at a time).
        self.depth: int = (
            host.calls_in_flight if isinstance(host, LoopHost) and max_jobs is None else 1
        )
        self._taking: anyio.CancelScope | None = None  # the take under way (calls in flight)
        self._death: HostDied | None = None  # how its host died (set with ``died``)
        #: Set by the thread as it begins (read by the loop once the thread is done).
        self.started: bool = False
        #: Set by the thread once its interface has loaded (before it reports that).
        self.served: bool = False
        #: Set by the thread if its host died under a job (the pool replaces it),
        #: and whether it was killed on purpose (kill_on_cancel).
        self.died: bool = False
        self.killed: bool = False
        #: Why the worker is due for renewal, set by the thread (None: it is not).
        self.renewal: str | None = None
        #: Set by the loop once a successor is due in its place (see WorkerSet.serving).
        self.replaced: bool = False

    @property
    def leaving(self) -> bool:
        """It died, or stops to be renewed: a successor is to take its place."""
        return self.died or self.slot.renewing

    @property
    def id(self) -> int:
        return self.info.id

    def main(self) -> None:
        """The body of a thread-driven worker's thread.

        Reports to the loop once its interface has loaded (or failed to),
        and, as its last act, that it has ended (``on_exit``).
        """
        self.started = True
        thread = threading.current_thread()
        old_name, thread.name = thread.name, self.info.name
        restore_os_name = rename_current_thread(self._os_name)
        try:
            self.hook_error = self._serve()
        finally:
            thread.name = old_name
            restore_os_name()  # the thread goes back to trio's or anyio's cache
            self._post(functools.partial(self._on_exit, self))

    async def run_on_loop(self) -> None:
        """The body of a loop-driven worker's task: :meth:`main`, awaiting its host."""
        self.started = True
        try:
            self.hook_error = await self._serve_on_loop()
        except BaseException:  # (asyncio's own cancellation of the task): leave no child
            self.host.kill()
            raise
        finally:
            self._post(functools.partial(self._on_exit, self))

    def _serve(self) -> BaseException | None:
        host, handoff, slot = self.host, self._handoff, self.slot
        assert not isinstance(host, LoopHost)
        try:
            host.load(self.info)
        except BaseException as exc:
            self._not_loaded(exc)
            return None
        self._loaded()
        # The Outcome of the job just run, which take() hands back (emptying
        # the list): so this thread holds no result while it waits.
        done: list[outcome.Outcome[Any]] = []
        while (job := handoff.take(slot, done)) is not None:
            self._begin(job)
            self._job = job
            try:
                done.append(job.context.run(self._execute, job))
            except HostDied as exc:
                self._died(exc)
                return None
            self._end(job)
            job = None  # hold no job while waiting for the next
        error = host.close(handoff.closing(slot))
        return self._closed(error)

    async def _serve_on_loop(self) -> BaseException | None:
        host, handoff, slot = self.host, self._handoff, self.slot
        assert isinstance(host, LoopHost)
        try:
            await host.load(self.info)
        except BaseException as exc:
            self._not_loaded(exc)
            return None
        self._loaded()
        if self.depth > 1:
            turn = anyio.Lock()
            async with anyio.create_task_group() as lanes:
                for _ in range(self.depth):
                    lanes.start_soon(self._lane, host, turn)
            if self.died:
                handoff.closed(slot)
                return None
        else:
            done: list[outcome.Outcome[Any]] = []
            while (job := await handoff.take_on_loop(slot, done)) is not None:
                self._begin(job)
                try:
                    done.append(await self._execute_on_loop(host, job))
                except HostDied as exc:
                    self._died(exc)
                    return None
                self._end(job)
                job = None
        error = await host.close(handoff.closing(slot))
        return self._closed(error)

    async def _lane(self, host: LoopHost, turn: anyio.Lock) -> None:
        """One of the worker's calls in flight: take a job, send it, await its reply; again.

        One lane at a time waits for a job (the handoff knows one waiter per
        worker); the others wait for their replies, or for their turn. When
        the host dies, every lane's call fails, and the take under way stops.
        """
        handoff, slot = self._handoff, self.slot
        while True:
            job = None
            async with turn:
                if slot.phase is not Phase.SERVING or self.died:
                    return
                with anyio.CancelScope() as self._taking:
                    job = await handoff.take_on_loop(slot, [])
                self._taking = None
            if job is None:
                return
            self._begin(job)
            try:
                if self._death is not None:  # it died as this job was taken: never sent
                    raise self._death
                result = await self._execute_on_loop(host, job)
            except HostDied as exc:
                self._died(exc, job)
                return
            self._end(job)
            handoff.finish_on_loop(slot, job, result)

    def _execute_on_loop(self, host: LoopHost, job: JobRecord) -> Awaitable[outcome.Outcome[Any]]:
        assert job.fn is not None
        return host.execute(job.fn, job.args, job.kwargs, job.with_interface, _JobOnLoop(self, job))

    def _not_loaded(self, exc: BaseException) -> None:
        if isinstance(
            exc, LoadInterrupted
        ):  # the pool is stopping: it never loaded, and that is all
            logger.debug("worker %s: its load was interrupted", self.info.name)
        else:  # raised to the caller (entry, add_workers) or at the exit: not logged twice
            logger.debug("worker %s: the interface failed to load: %r", self.info.name, exc)
            self.load_error = exc
        self._handoff.loaded(self.slot, ok=False)
        self._post(self.loaded.set)

    def _loaded(self) -> None:
        logger.debug("worker %s started", self.info.name)
        self.served = True
        self._handoff.loaded(self.slot, ok=True)
        self._post(functools.partial(self._on_served, self))
        self._post(self.loaded.set)

    def _begin(self, job: JobRecord) -> None:
        job.started_at = perf_counter()
        if self._instruments.job_started:  # (told before its end, if the end comes first)
            self._post(functools.partial(self._instruments.started, job))

    def _died(self, exc: HostDied, job: JobRecord | None = None) -> None:
        """The host died under ``job`` (by default the one running): it gets ``exc.error``.

        The worker stops (with calls in flight, once each has failed).
        """
        handoff, slot = self._handoff, self.slot
        self._job = None
        if self._death is None:
            self._death = exc
            self.died = True
            self.killed = isinstance(exc.error, JobCancelled)
            logger.warning("%s", exc.error)
            handoff.leave(slot)
            if self._taking is not None:
                self._taking.cancel()
        handoff.finish(slot, outcome.Error(exc.error), job)
        if job is None:
            handoff.closed(slot)

    def _end(self, job: JobRecord) -> None:
        """``job`` has run (its Outcome is to be handed back): is the worker due for renewal?"""
        job.finished_at = perf_counter()
        self._job = None
        if self.renewal is None and (reason := self._renewal_due()) is not None:
            self.renewal = reason
            if self._handoff.renew(self.slot):  # else when its lease ends (or never: closing)
                self._post(functools.partial(self._on_renew, self))

    def _closed(self, error: BaseException | None) -> BaseException | None:
        """The exit hook has run and raised ``error`` (or nothing): the worker has stopped."""
        self._handoff.closed(self.slot)
        if error is not None:
            logger.debug("worker %s: the exit hook raised %r", self.info.name, error)
        logger.debug("worker %s stopped", self.info.name)
        return error

    @property
    def stop_reason(self) -> StopReason:
        """Why the worker stopped, as instruments are told (once its thread has ended)."""
        if self.died:
            return "killed" if self.killed else "died"
        return "renewed" if self.slot.renewing else "stopped"

    def _renewal_due(self) -> str | None:
        """Why this worker should be renewed after the job it ran, or None."""
        limit = self._max_jobs
        if limit is not None and self.slot.jobs_done + 1 >= limit:  # (that job not counted yet)
            return f"it ran {limit} jobs (max_jobs_per_worker)"
        return self.host.renewal_due()

    def _execute(self, job: JobRecord) -> outcome.Outcome[Any]:
        """In the job's context: which has no event loop in this thread (sniffio says so)."""
        if sniffio.current_async_library_cvar.get() is not None:  # anyio.run() sets it
            sniffio.current_async_library_cvar.set(None)
        assert job.fn is not None
        assert not isinstance(self.host, LoopHost)
        return self.host.execute(job.fn, job.args, job.kwargs, job.with_interface, self)

    # --- the running job's view (trio_pool.check_cancelled, wait, from_loop) ---

    def cancel_requested(self) -> bool:
        job = self._job
        return job is not None and job.cancel_requested

    def wait_for(self, key: Hashable, timeout: float | None) -> tuple[Any, ...]:
        assert self._job is not None
        return self._handoff.wait_for(self.slot, self._job, key, timeout)

    def call_loop(
        self, async_fn: Callable[..., Awaitable[Any]], args: tuple[Any, ...]
    ) -> outcome.Outcome[Any]:
        assert self._job is not None
        return ask_loop(self._post, self._route, self._job, async_fn, args)

    # --- the same, for a loop-driven worker's host (in the loop's thread) ---

    async def wait_on_loop(
        self,
        job: JobRecord,
        key: Hashable,
        timeout: float | None,  # noqa: ASYNC109 (the job's own, passed on)
    ) -> tuple[Any, ...]:
        return await self._handoff.wait_for_on_loop(self.slot, job, key, timeout)

    async def call_loop_for(
        self, job: JobRecord, async_fn: Callable[..., Awaitable[Any]], args: tuple[Any, ...]
    ) -> outcome.Outcome[Any]:
        assert self._new_event is not None
        done = self._new_event()
        call = LoopCall(async_fn, args, job.context.copy(), done)
        self._route(job, call)
        await done.wait()
        return call.result


class _JobOnLoop:
    """One job of a loop-driven worker, as its host serves the far side's requests."""

    __slots__ = ("_job", "_worker")

    def __init__(self, worker: Worker, job: JobRecord) -> None:
        self._worker = worker
        self._job = job

    def cancel_requested(self) -> bool:
        return self._job.cancel_requested

    async def wait_for_on_loop(
        self,
        key: Hashable,
        timeout: float | None,  # noqa: ASYNC109 (the job's own, passed on)
    ) -> tuple[Any, ...]:
        return await self._worker.wait_on_loop(self._job, key, timeout)

    async def call_on_loop(
        self, async_fn: Callable[..., Awaitable[Any]], args: tuple[Any, ...]
    ) -> outcome.Outcome[Any]:
        return await self._worker.call_loop_for(self._job, async_fn, args)
