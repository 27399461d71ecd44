"""The Pool: its lifetime, the submission of work, its workers and statistics."""

from __future__ import annotations

import contextlib
import contextvars
import itertools
import logging
import math
import os
import sys
from collections import deque
from collections.abc import AsyncIterable, Awaitable, Callable, Hashable, Iterable, Mapping
from types import TracebackType
from typing import Any, Concatenate, Literal, ParamSpec, TypeVar, cast, final, overload

import anyio
import outcome

from ._backend import Backend, Event, current_backend, wait_through, wait_through_cancellation
from ._channel import Channel, Delivery
from ._exceptions import JobCancelled, PoolClosedError, QueueFull
from ._host import ThreadHost, check_sync_callable, operations_of
from ._interface import InterfaceProxy, unwrapping_operation
from ._job import Job, LoopCall, cancelled_outcome, is_cancellation
from ._lease import Lease, WorkerLease
from ._map import MapResults
from ._statistics import PoolStatistics, WorkerStatistics
from ._worker import Worker

if sys.version_info < (3, 11):
    from exceptiongroup import BaseExceptionGroup

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")

logger = logging.getLogger("trio_pool")
_pool_numbers = itertools.count(1)


def _count(name: str, value: object, *, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, not {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, not {value}")
    return value


def _default_workers() -> int:
    return min(32, (os.cpu_count() or 1) + 4)


def _check_target(fn_or_op: object) -> None:
    if not isinstance(fn_or_op, str):
        check_sync_callable(fn_or_op)


def _combine(errors: list[BaseException]) -> BaseException | None:
    """One error as itself, several as a group, none as None.

    A cancellation is not an error: beside real errors it is left out (they
    are raised while it is handled, so it stays their ``__context__``).
    """
    cancelled = anyio.get_cancelled_exc_class()
    real = [e for e in errors if not isinstance(e, cancelled)]
    if real:
        errors = real
    if not errors:
        return None
    if len(errors) == 1:
        return errors[0]
    return BaseExceptionGroup("several errors in a trio_pool.Pool", errors)


def _raise_combined(errors: list[BaseException]) -> None:
    error = _combine(errors)
    if error is not None:
        raise error


@final
class Pool:
    """A nursery of worker threads, each with its own interface object.

    Args:
        interface: What each worker loads, in its own thread: a class or
            factory called as ``interface(*args)``, a mapping of operation
            name to function, or None for a pool that only runs functions.
            If the loaded object has ``__enter__``, its return value is the
            interface; if it has ``__exit__`` (or the mapping an
            ``"__exit__"`` entry), that is called once, in the same thread,
            when the worker stops, as a context manager's would be.
        *args: Arguments for ``interface``.
        workers: The number of worker threads. The default follows
            :class:`concurrent.futures.ThreadPoolExecutor`:
            ``min(32, os.cpu_count() + 4)``.
        min_workers: With ``max_workers`` and ``idle_timeout``, instead of
            ``workers``: autoscaling. The pool starts ``min_workers`` (default
            0; the first job then starts a worker), grows while jobs wait and
            every worker is busy, and retires workers idle for longer than
            ``idle_timeout`` seconds (default 60), never below ``min_workers``.
        max_workers: The most workers autoscaling starts (default as for
            ``workers``).
        idle_timeout: Seconds of idleness, on the event loop's clock, before
            autoscaling retires a worker.
        queue_size: How many accepted jobs may wait for a worker; callers
            wait for room beyond that. Default ``max(64, 4 * workers)`` (with
            autoscaling, ``4 * max_workers``). Jobs for one worker (a lease,
            a broadcast) do not count.
        abandon_on_cancel: If True, a caller cancelled while its job runs
            returns at once and the job's result is discarded; if False (the
            default) the caller waits for the job, like
            :func:`trio.to_thread.run_sync`.
        name: The pool's name, used for its worker threads' names.

    Use it as an async context manager::

        async with trio_pool.Pool(Db, "app.db", workers=4) as pool:
            rows = await pool.interface.query("select 1")

    Entering returns once every worker has loaded its interface. Leaving
    waits for every accepted job, stops the workers (their hooks run) and
    joins their threads. If the block raises or is cancelled instead, queued
    jobs never start, running jobs are told to stop
    (:func:`check_cancelled`) and waited for, and the hooks are called with
    that exception. An error of a loader or a hook is raised at the latest
    when the block exits; several errors are raised together as an
    :class:`ExceptionGroup`.
    """

    def __init__(
        self,
        interface: object = None,
        /,
        *args: Any,
        workers: int | None = None,
        min_workers: int | None = None,
        max_workers: int | None = None,
        idle_timeout: float | None = None,
        queue_size: int | None = None,
        abandon_on_cancel: bool = False,
        name: str | None = None,
    ) -> None:
        if interface is None or isinstance(interface, Mapping):
            if args:
                raise TypeError("arguments are only accepted for a class or factory interface")
            if isinstance(interface, Mapping):
                items: Mapping[object, object] = interface  # pyright: ignore[reportUnknownVariableType]
                for key, fn in items.items():
                    if not isinstance(key, str) or not callable(fn):
                        raise TypeError(
                            f"an interface mapping maps names to functions, not {key!r} to {fn!r}"
                        )
        elif not callable(interface):
            raise TypeError(
                "interface must be a class or factory, a mapping of names to functions, "
                f"or None, not {interface!r}"
            )
        self._max: int | None
        self._autoscaling = not (
            min_workers is None and max_workers is None and idle_timeout is None
        )
        if self._autoscaling:
            if workers is not None:
                raise TypeError("give workers=N, or min_workers/max_workers/idle_timeout, not both")
            self._min = 0 if min_workers is None else _count("min_workers", min_workers, minimum=0)
            self._max = (
                _default_workers() if max_workers is None else _count("max_workers", max_workers)
            )
            if self._min > self._max:
                raise ValueError(f"min_workers ({self._min}) is above max_workers ({self._max})")
            if idle_timeout is None:
                idle_timeout = 60.0
            if isinstance(idle_timeout, bool) or not isinstance(idle_timeout, (int, float)):
                raise TypeError(f"idle_timeout must be a number of seconds, not {idle_timeout!r}")
            if not idle_timeout > 0:
                raise ValueError(f"idle_timeout must be positive, not {idle_timeout}")
            self._idle_timeout = float(idle_timeout)
            initial = self._min
        else:
            initial = _count("workers", _default_workers() if workers is None else workers)
            self._min, self._max, self._idle_timeout = 1, None, math.inf
        self._initial = initial
        default_queue = 4 * self._max if self._max is not None else max(64, 4 * initial)
        self._queue_size = _count("queue_size", default_queue if queue_size is None else queue_size)
        if not isinstance(abandon_on_cancel, bool):
            raise TypeError(f"abandon_on_cancel must be a bool, not {abandon_on_cancel!r}")
        if name is not None and not isinstance(name, str):
            raise TypeError(f"name must be a str, not {name!r}")
        #: The pool's name (the ``name`` argument, or ``"trio_pool-<n>"``). Its
        #: worker threads are named ``"<name>-worker-<id>"``.
        self.name: str = name if name is not None else f"trio_pool-{next(_pool_numbers)}"
        self._interface: object = interface
        self._args = args
        self._abandon_on_cancel = abandon_on_cancel
        self._state: Literal["new", "open", "closing", "closed"] = "new"
        self._operations: frozenset[str] = frozenset()  # as the first loaded worker has them
        # Known before any worker loads (a class's methods, a mapping's keys),
        # so that define() can refuse them even with min_workers=0.
        self._static_operations: frozenset[str] = frozenset()
        if isinstance(interface, (type, Mapping)):
            self._static_operations = operations_of(cast(object, interface))
        self._definitions: dict[str, Callable[..., Any]] = {}
        self._workers: dict[int, Worker] = {}
        self._worker_ids = itertools.count()
        self._errors: list[BaseException] = []  # to raise at exit: loaders', hooks'
        self._room_waiters: deque[Event] = deque()
        self._reserved = 0  # room promised to woken waiters
        self._lease_waiters: deque[Event] = deque()
        self._loop_calls: set[anyio.CancelScope] = set()
        self._autoscale_deadline = math.inf
        self._growth_failed = False
        self._submitted = self._completed = self._failed = self._cancelled = 0
        self._started_count = self._stopped_count = self._hook_errors = 0
        self._scaled_up = self._scaled_down = 0

    def __repr__(self) -> str:
        return f"<trio_pool.Pool {self.name!r} {self._state} workers={len(self._workers)}>"

    # --- lifetime ---------------------------------------------------------

    async def __aenter__(self) -> Pool:
        if self._state != "new":
            raise RuntimeError("a Pool can be entered only once; make a new one")
        self._backend: Backend = current_backend()
        self._channel = Channel(self._backend.post, self._deliver)
        self._stopped = self._backend.event()
        self._pressure = self._backend.event()
        self._autoscaler = anyio.CancelScope()
        self._limiter = anyio.CapacityLimiter(max(1, self._initial))
        self._task_group = anyio.create_task_group()
        await self._task_group.__aenter__()
        self._state = "open"
        try:
            load_errors = await self._loaded(self._start_workers(self._initial))
        except BaseException as exc:
            error = await self._exit(exc)
            if error is not None and error is not exc:
                raise error from None
            raise
        if load_errors:
            self._errors[:0] = load_errors
            error = await self._exit(load_errors[0])
            assert error is not None
            raise error
        if self._autoscaling:
            self._task_group.start_soon(self._autoscale, name=f"{self.name}-autoscaler")
        logger.debug("pool %s started %d workers", self.name, self._initial)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        error = await self._exit(exc)
        if error is not None and error is not exc:
            raise error
        return False

    async def aclose(self) -> None:
        """Stop accepting jobs, finish the accepted ones, and stop the workers.

        Returns once every worker's hook has run and its thread has ended. It
        is idempotent: later calls return at once. The block's exit calls it.

        Raises:
            BaseException: what a hook raised (several as a group).

        Cancellation: if cancelled while jobs are being finished, queued jobs
        are cancelled, running ones are told to stop, and it still returns
        only once every thread has ended.
        """
        if self._state == "new":
            self._state = "closed"
        if self._state == "closed":
            await anyio.lowlevel.checkpoint()
            return
        _raise_combined(await self._stop(None))

    async def _exit(self, reason: BaseException | None) -> BaseException | None:
        """Stop, leave the task group; return what the block should raise."""
        error = _combine(await self._stop(reason))
        try:
            # Every thread has ended, so this only closes the group; on asyncio
            # it can still raise the enclosing scope's cancellation, which must
            # not replace the error we have.
            await self._task_group.__aexit__(None, None, None)
        except anyio.get_cancelled_exc_class():
            if error is None:
                raise
        return error

    async def _stop(self, reason: BaseException | None) -> list[BaseException]:
        """Stop the workers and wait for their threads; return the errors to raise.

        With no ``reason`` the queue is finished first, unless that wait is
        interrupted; with one, queued jobs are cancelled, running jobs told
        to stop, and each hook receives the reason. Several tasks may call it
        (the block's exit and ``aclose()``); each error is returned to one
        caller only.
        """
        if self._state == "open":
            self._state = "closing"
            self._autoscaler.cancel()
            self._let_in_waiters()  # they find the pool closed
            self._let_in_lessees()  # they too
            self._channel.stop(self._workers.values())
            if not self._workers:
                self._stopped.set()
        errors: list[BaseException] = []
        if reason is None:
            try:
                await self._stopped.wait()
            except BaseException as exc:  # cancelled, or Ctrl-C, while finishing jobs
                reason = exc
                errors.append(exc)
        else:
            errors.append(reason)
        if reason is not None:
            self._cancel_everything(reason)
            # Join the threads whatever happens meanwhile; a second Ctrl-C
            # included. Once they are joined, the first interruption is raised.
            interruptions = await wait_through(self._stopped, BaseException)
            errors.extend(interruptions[:1] if not errors else [])
        if self._state != "closed":
            self._state = "closed"
            logger.debug("pool %s stopped", self.name)
        errors.extend(e for e in self._take_errors() if e is not reason)
        return errors

    def _take_errors(self) -> list[BaseException]:
        errors, self._errors = self._errors, []
        return errors

    def _cancel_everything(self, reason: BaseException) -> None:
        exit_info = (type(reason), reason, reason.__traceback__)
        for job in self._channel.stop(self._workers.values(), cancel=exit_info):
            self._record(job, cancelled_outcome())
        for scope in self._loop_calls:
            scope.cancel()

    # --- workers ------------------------------------------------------------

    def _start_workers(self, count: int) -> list[Worker]:
        started: list[Worker] = []
        for _ in range(count):
            worker_id = next(self._worker_ids)
            worker = Worker(
                worker_id,
                f"{self.name}-worker-{worker_id}",
                ThreadHost(self._interface, self._args),
                self._channel,
                loaded=self._backend.event(),
                exited=self._backend.event(),
                on_exit=self._on_exit,
                report=self._backend.post,
                from_loop=self._from_loop,
            )
            worker.idle_since = self._backend.current_time()
            self._workers[worker_id] = worker
            self._started_count += 1
            if self._limiter.total_tokens < len(self._workers):
                self._limiter.total_tokens = len(self._workers)
            self._task_group.start_soon(self._run_worker, worker, name=worker.info.name)
            started.append(worker)
        return started

    async def _run_worker(self, worker: Worker) -> None:
        # The thread reports its own load and end; this task only lends it a
        # thread. A shield keeps scope cancellation out; native asyncio
        # cancellation (asyncio.run shutting down) ends this task, and the
        # thread still reports when it is done.
        with contextlib.suppress(anyio.get_cancelled_exc_class()):
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(worker.main, limiter=self._limiter)

    def _on_exit(self, worker: Worker) -> None:
        """A worker thread's last report: its hook has run and it is leaving."""
        self._channel.flush()  # deliver the outcomes it left behind
        for job in self._channel.take_direct(worker):  # it failed to load: they never ran
            self._record(job, cancelled_outcome())
        del self._workers[worker.id]
        self._stopped_count += 1
        if worker.hook_error is not None:
            self._hook_errors += 1
            if not worker.stop_owned:
                self._errors.append(worker.hook_error)
        if not self._workers and self._state != "open":
            self._stopped.set()
        worker.exited.set()

    async def _loaded(self, workers: list[Worker]) -> list[BaseException]:
        """Wait until ``workers`` have loaded; return the loaders' errors.

        Cancellation: it waits anyway, then raises the cancellation (after
        the errors, which it leaves to the caller).
        """
        cancelled = await self._wait_all(w.loaded for w in workers)
        now = self._backend.current_time()
        for worker in workers:
            if not worker.jobs_done:  # idle from now on, not from when it started loading
                worker.idle_since = now
            if worker.load_error is None and not self._operations:
                self._operations = worker.host.operations
        self._let_in_lessees()
        errors = [w.load_error for w in workers if w.load_error is not None]
        if cancelled is not None:
            _raise_combined([cancelled, *errors])
        return errors

    async def _wait_all(self, events: Iterable[Event]) -> BaseException | None:
        """Wait for every event, whatever comes; return the cancellation that came."""
        cancelled: BaseException | None = None
        for event in events:
            cancelled = await wait_through_cancellation(event) or cancelled
        if cancelled is None:  # on trio, a shield held it back: look now
            try:
                await self._backend.cancellation_point()
            except anyio.get_cancelled_exc_class() as exc:
                cancelled = exc
        return cancelled

    async def _stop_and_join(self, workers: list[Worker]) -> list[BaseException]:
        """Stop ``workers`` once their jobs are done and wait for their threads.

        Returns what their hooks raised, after the cancellation that arrived
        meanwhile, if one did: the change always completes.
        """
        for worker in workers:
            worker.stop_owned = True
            self._channel.stop_worker(worker)
        cancelled = await self._wait_all(w.exited for w in workers)
        errors = [w.hook_error for w in workers if w.hook_error is not None]
        return [cancelled, *errors] if cancelled is not None else errors

    @property
    def worker_count(self) -> int:
        """Workers loading or serving (not those asked to stop)."""
        return sum(w.serving for w in self._workers.values())

    async def add_workers(self, count: int) -> None:
        """Start ``count`` more workers; return once they have loaded.

        If a new worker's loader fails, the others started with it are
        stopped again and the error is raised: the pool keeps the workers it
        had.

        Cancellation: the change completes (new workers finish loading), then
        the cancellation is raised.
        """
        count = _count("count", count)
        self._check_open()
        await self._backend.cancellation_point()  # first: on asyncio, other tasks run here
        self._check_open()
        if self._max is not None and self.worker_count + count > self._max:
            raise ValueError(f"{count} more workers would exceed max_workers={self._max}")
        logger.info("pool %s: adding %d workers to %d", self.name, count, self.worker_count)
        workers = self._start_workers(count)
        try:
            errors = await self._loaded(workers)
        except BaseException:
            self._let_in_lessees()
            raise
        if errors:  # all or nothing: stop the new workers that did load
            loaded = [w for w in workers if w.load_error is None]
            _raise_combined(errors + await self._stop_and_join(loaded))

    async def stop_workers(self, count: int) -> None:
        """Stop ``count`` workers, idle ones first; return once their threads have ended.

        A stopping worker finishes its current job (and any job sent to it
        alone), runs its hook in its own thread, and exits. At least one
        worker (and ``min_workers``) remains, and leased workers are never
        chosen.

        Raises:
            ValueError: if that would leave no worker, or if too many workers
                are leased.
            BaseException: what the stopped workers' hooks raised.

        Cancellation: the change completes (the chosen workers finish their
        jobs and hooks), then the cancellation is raised.
        """
        count = _count("count", count)
        self._check_open()
        await self._backend.cancellation_point()  # first: on asyncio, other tasks run here
        self._check_open()
        least = max(1, self._min)
        if self.worker_count - count < least:
            raise ValueError(
                f"cannot stop {count} of {self.worker_count} workers: {least} must remain"
            )
        free = [w for w in self._workers.values() if w.serving and not w.leased]
        if len(free) < count:
            raise ValueError(f"only {len(free)} workers are not leased; cannot stop {count}")
        # Idle first, then busy, then loading; the youngest first among equals.
        free.sort(key=lambda w: (w.state == "starting", w.job is not None, -w.id))
        logger.info("pool %s: stopping %d of %d workers", self.name, count, self.worker_count)
        _raise_combined(await self._stop_and_join(free[:count]))

    async def resize(self, workers: int) -> None:
        """Start or stop workers until there are ``workers``; return once done.

        See :meth:`add_workers` and :meth:`stop_workers`.
        """
        workers = _count("workers", workers)
        difference = workers - self.worker_count
        if difference > 0:
            await self.add_workers(difference)
        elif difference < 0:
            await self.stop_workers(-difference)
        else:
            await anyio.lowlevel.checkpoint()

    async def ensure(self, *, at_least: int | None = None, at_most: int | None = None) -> None:
        """Start or stop workers so that ``at_least <= worker_count <= at_most``."""
        low = 1 if at_least is None else _count("at_least", at_least)
        high = None if at_most is None else _count("at_most", at_most)
        if high is not None and low > high:
            raise ValueError(f"at_least ({low}) is above at_most ({high})")
        count = self.worker_count
        await self.resize(max(low, count) if high is None else min(max(low, count), high))

    async def _autoscale(self) -> None:
        """Grow while jobs wait and no worker is free; retire workers idle too long."""
        assert self._max is not None
        with self._autoscaler:
            while True:
                self._pressure = self._backend.event()
                step = self._growth_step()
                if step:
                    logger.info(
                        "pool %s autoscaling: %d jobs wait and no worker is free: starting %d",
                        self.name,
                        self._channel.queued,
                        step,
                    )
                    self._scaled_up += step
                    errors = await self._loaded(self._start_workers(step))
                    self._scaled_up -= len(errors)  # count the workers that did start
                    if errors:
                        self._growth_failed_on(errors)
                    continue
                self._autoscale_deadline = self._retire_idle()
                with anyio.move_on_after(self._autoscale_deadline - self._backend.current_time()):
                    await self._pressure.wait()

    def _growth_failed_on(self, errors: list[BaseException]) -> None:
        """A loader failed while autoscaling: raise it at exit, retry on the next job.

        With no worker left to run them, the queued jobs fail with that error
        rather than wait for ever.
        """
        self._errors.extend(errors)
        self._growth_failed = True
        logger.error("pool %s autoscaling: a loader failed; retrying on the next job", self.name)
        if self.worker_count == 0:
            for job in self._channel.take_queued():
                self._record(job, outcome.Error(errors[0]))
            self._let_in_waiters()

    def _growth_step(self) -> int:
        """How many workers to start now: one per job no free worker will take."""
        assert self._max is not None
        if self._growth_failed or any(w.state == "starting" for w in self._workers.values()):
            return 0
        free = sum(w.serving and w.job is None and not w.leased for w in self._workers.values())
        wanted = self._channel.queued + len(self._lease_waiters)
        return max(0, min(self._max - self.worker_count, wanted - free))

    def _retire_idle(self) -> float:
        """Stop workers idle for too long; return when to look again."""
        now = self._backend.current_time()
        if self._channel.queued:
            return math.inf  # work is waiting: nobody is idle for long
        idle = sorted(
            (
                w
                for w in self._workers.values()
                if w.serving and w.state == "idle" and w.job is None and not w.leased
            ),
            key=lambda w: w.idle_since,
        )
        surplus = self.worker_count - self._min
        retired = [w for w in idle if now - w.idle_since >= self._idle_timeout][: max(0, surplus)]
        for worker in retired:
            self._channel.stop_worker(worker)
        if retired:
            self._scaled_down += len(retired)
            logger.info(
                "pool %s autoscaling: retiring %d workers idle for %g s or more",
                self.name,
                len(retired),
                self._idle_timeout,
            )
        waiting = [w.idle_since + self._idle_timeout for w in idle if w not in retired]
        return min(waiting) if waiting and surplus > len(retired) else math.inf

    # --- jobs ---------------------------------------------------------------

    def _resolve(self, fn: Callable[..., Any] | str) -> Callable[..., Any] | str:
        """A defined operation's function as defined now (whatever comes later)."""
        if isinstance(fn, str):
            return self._definitions.get(fn, fn)
        return fn

    def _check_open(self) -> None:
        if self._state == "open":
            return
        if self._state == "new":
            raise RuntimeError("enter the pool first: `async with Pool(...) as pool:`")
        raise PoolClosedError(f"the pool {self.name!r} is closed")

    def _has_room(self) -> bool:
        return not self._room_waiters and self._channel.queued + self._reserved < self._queue_size

    def _let_in_waiters(self) -> None:
        waiters = self._room_waiters
        while waiters and (
            self._state != "open" or self._channel.queued + self._reserved < self._queue_size
        ):
            self._reserved += 1
            waiters.popleft().set()
        self._channel.room_wanted = bool(waiters)

    async def _wait_for_room(self) -> None:
        event = self._backend.event()
        self._room_waiters.append(event)
        self._channel.room_wanted = True
        # A worker may have taken a job before it could see room_wanted: look again.
        self._let_in_waiters()
        try:
            await event.wait()
        except BaseException:
            if event.is_set():  # pass the room on
                self._reserved -= 1
                self._let_in_waiters()
            else:
                self._room_waiters.remove(event)
                self._channel.room_wanted = bool(self._room_waiters)
            raise
        self._reserved -= 1

    def _accept(
        self,
        fn: Callable[..., Any] | str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        *,
        with_interface: bool = False,
        worker: Worker | None = None,
    ) -> Job[Any]:
        self._check_open()
        job: Job[Any] = Job(
            self._resolve(fn),
            args,
            kwargs,
            new_event=self._backend.event,
            canceller=self._cancel_job,
            with_interface=with_interface,
            context=contextvars.copy_context(),
        )
        self._channel.put(job, worker)
        self._submitted += 1
        if self._autoscaling and worker is None and self._channel.unserved:
            self._growth_failed = False  # a new job: growing may work now
            self._pressure.set()
        return job

    async def _submit(
        self,
        fn: Callable[..., Any] | str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        *,
        with_interface: bool = False,
        full_checkpoint: bool = False,
    ) -> Job[Any]:
        self._check_open()
        if full_checkpoint:  # for submit(): nothing may raise once the job is accepted
            await self._backend.checkpoint()
        else:  # the caller's wait that follows is the schedule point
            await self._backend.cancellation_point()
        if not self._has_room():
            await self._wait_for_room()
        return self._accept(fn, args, kwargs, with_interface=with_interface)

    async def _outcome_of(self, job: Job[Any]) -> outcome.Outcome[Any]:
        """:meth:`_outcomes_of` for one job: the hot path of run() and call()."""
        job._served_by_caller = True
        try:
            while job._outcome is None:
                if job._requests:
                    job._event = None  # re-armed: a call made from now on sets a new one
                    await self._serve_loop_calls(job)
                else:
                    await job._get_event().wait()
        except BaseException as exc:
            await self._caller_left((job,), exc)
            raise
        job._served_by_caller = False
        return job._outcome

    async def _outcomes_of(self, jobs: Iterable[Job[Any]]) -> list[outcome.Outcome[Any]]:
        """Wait for jobs as their caller, applying the cancellation rules.

        Meanwhile, run their ``from_loop()`` calls in this task, whichever job
        makes them: the jobs of a broadcast share one event, set when any of
        them finishes or calls.
        """
        jobs = list(jobs)
        for job in jobs:
            job._served_by_caller = True
        try:
            while True:
                # Look, then re-arm, then wait: nothing can happen in between,
                # as the loop runs only this task until the next await.
                pending = [job for job in jobs if job._outcome is None]
                if any(job._requests for job in jobs):
                    self._share_event(pending, self._backend.event())  # re-armed first
                    for job in jobs:
                        await self._serve_loop_calls(job)
                    continue
                if not pending:
                    break
                event = pending[0]._get_event()
                if len(pending) > 1 or event.is_set():  # set earlier, and seen to already
                    event = self._backend.event()
                    self._share_event(pending, event)
                await event.wait()
        except BaseException as exc:
            await self._caller_left(jobs, exc)
            raise
        for job in jobs:
            job._served_by_caller = False
        return [job._outcome for job in jobs if job._outcome is not None]

    async def _caller_left(self, jobs: Iterable[Job[Any]], exc: BaseException) -> None:
        """The caller of ``jobs`` stops waiting, because of ``exc``: apply the rules.

        Queued jobs are removed; running ones are abandoned, or, when ``exc``
        is a cancellation and the pool does not abandon, waited for.
        """
        running: list[Job[Any]] = []
        for job in jobs:
            job._served_by_caller = False
            for call in job._requests or ():
                call.answer(outcome.Error(JobCancelled("the caller of this job is gone")))
            job._requests = None
            if job._outcome is None and not self._cancel_job(job):
                running.append(job)
        if self._abandon_on_cancel or not isinstance(exc, anyio.get_cancelled_exc_class()):
            for job in running:
                job._abandoned = True
                self._cancelled += 1
        else:
            for job in running:
                while job._outcome is None:
                    if job._get_event().is_set():  # by a from_loop() call; nobody serves it now
                        job._event = self._backend.event()
                    await wait_through_cancellation(job._get_event())

    @staticmethod
    def _share_event(jobs: list[Job[Any]], event: Event) -> None:
        for job in jobs:
            job._event = event

    async def _serve_loop_calls(self, job: Job[Any]) -> None:
        calls, job._requests = job._requests or [], None
        cancelled = anyio.get_cancelled_exc_class()
        for index, call in enumerate(calls):
            result = await outcome.acapture(call.async_fn, *call.args)
            if isinstance(result, outcome.Error) and isinstance(result.error, cancelled):
                # The rest are answered as cancelled by the caller's handler.
                job._requests = calls[index:] + (job._requests or [])
                raise result.error
            call.answer(result)

    def _from_loop(self, job: Job[Any], call: LoopCall) -> None:
        """A job asks to run ``call`` on the loop (loop thread)."""
        if job._cancel_requested or self._state == "closed":
            call.answer(outcome.Error(JobCancelled("the caller of this job is gone")))
        elif job._served_by_caller:
            if job._requests is None:
                job._requests = []
            job._requests.append(call)
            job._get_event().set()  # wake the caller
        else:
            scope = anyio.CancelScope()  # registered now, so a stop now cancels it
            self._loop_calls.add(scope)
            self._task_group.start_soon(self._serve_loop_call_in_pool, call, scope)

    async def _serve_loop_call_in_pool(self, call: LoopCall, scope: anyio.CancelScope) -> None:
        result: outcome.Outcome[Any] = outcome.Error(JobCancelled("the pool is stopping"))
        with scope:
            try:
                result = await outcome.acapture(call.async_fn, *call.args)
            finally:
                self._loop_calls.discard(scope)
        if isinstance(result, outcome.Error) and isinstance(
            result.error, anyio.get_cancelled_exc_class()
        ):
            result = outcome.Error(JobCancelled("the pool is stopping"))
        call.answer(result)

    def _cancel_job(self, job: Job[Any]) -> bool:
        if not self._channel.cancel(job):
            return False
        self._record(job, cancelled_outcome())
        self._let_in_waiters()
        return True

    def _deliver(self, batch: Delivery) -> None:
        now = self._backend.current_time() if self._autoscaling else 0.0
        for job, result in batch:
            if job._worker is not None:
                job._worker.idle_since = now
            self._record(job, result)
        if self._room_waiters:
            self._let_in_waiters()
        if self._autoscaling and self._autoscale_deadline == math.inf:
            self._pressure.set()  # a worker may have become idle: time its retirement

    def _record(self, job: Job[Any], result: outcome.Outcome[Any]) -> None:
        if job._abandoned:
            pass  # counted as cancelled when its caller left
        elif isinstance(result, outcome.Value):
            self._completed += 1
        elif is_cancellation(result):
            self._cancelled += 1
        else:
            self._failed += 1
        job._finish(result)

    # --- calling work -----------------------------------------------------

    async def run(self, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R:
        """Run ``fn(*args, **kwargs)`` in a worker and return its value.

        The job runs in a copy of the caller's :mod:`contextvars` context.

        Raises:
            BaseException: whatever ``fn`` raised, with its worker-side traceback.
            PoolClosedError: if the pool is closed.
            TypeError: if ``fn`` is not a sync callable.

        Cancellation: while the job waits in the queue, cancelling the caller
        removes it (it never runs). Once it runs, the caller waits for it to
        finish and then raises the cancellation, while the job can notice with
        :func:`check_cancelled`; with ``abandon_on_cancel=True`` the caller
        returns at once and the result is discarded.
        """
        check_sync_callable(fn)
        job = await self._submit(fn, args, kwargs)
        result: R = (await self._outcome_of(job)).unwrap()
        return result

    async def call(self, op: str, /, *args: Any, **kwargs: Any) -> outcome.Outcome[Any]:
        """Run the operation ``op`` in a worker and return its Outcome.

        ``op`` names a method of the interface, or an operation added with
        :meth:`define`. Errors of the operation, an unknown one included
        (:class:`AttributeError`), come back inside the Outcome. Names that
        start with ``_`` are not operations.

        Cancellation: as for :meth:`run`.
        """
        if not isinstance(op, str):
            raise TypeError(f"op must be the name of an operation, not {op!r}")
        job = await self._submit(op, args, kwargs)
        return await self._outcome_of(job)

    async def call_method(
        self, method: Callable[Concatenate[Any, P], R], /, *args: P.args, **kwargs: P.kwargs
    ) -> R:
        """Call ``method(interface, *args, **kwargs)`` in a worker; return its value.

        The typed spelling of an interface call: ``await
        pool.call_method(Db.query, "select 1")`` is ``pool.interface.query("select
        1")`` with the argument and result types that mypy and pyright infer
        from ``Db.query``.

        Cancellation: as for :meth:`run`.
        """
        check_sync_callable(method)
        job = await self._submit(method, args, kwargs, with_interface=True)
        result: R = (await self._outcome_of(job)).unwrap()
        return result

    @property
    def interface(self) -> Any:
        """The interface's operations (and defined ones) as awaitable methods.

        ``await pool.interface.query(sql)`` runs ``query`` in a worker and
        returns its value or raises its error. An unknown operation raises
        :class:`AttributeError` at attribute access.
        """
        return InterfaceProxy(self.call, self._operation_names())

    def _operation_names(self) -> frozenset[str]:
        return self._operations | self._definitions.keys()

    @overload
    async def submit(self, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> Job[R]: ...
    @overload
    async def submit(self, fn: str, /, *args: Any, **kwargs: Any) -> Job[Any]: ...
    async def submit(self, fn: Callable[..., Any] | str, /, *args: Any, **kwargs: Any) -> Job[Any]:
        """Start a function or an operation now; collect its Outcome later.

        Waits for room in the queue if it is full.

        Returns:
            The :class:`Job`; ``await job.wait()`` returns its Outcome.

        Cancellation: cancelling this call while it waits for room submits
        nothing. Once it returns, the job is the caller's to wait for or to
        cancel with :meth:`Job.cancel`; when the pool's block exits normally
        it waits for the job.
        """
        _check_target(fn)
        return await self._submit(fn, args, kwargs, full_checkpoint=True)

    @overload
    def submit_nowait(self, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> Job[R]: ...
    @overload
    def submit_nowait(self, fn: str, /, *args: Any, **kwargs: Any) -> Job[Any]: ...
    def submit_nowait(self, fn: Callable[..., Any] | str, /, *args: Any, **kwargs: Any) -> Job[Any]:
        """Like :meth:`submit`, but never waits.

        Raises:
            trio.WouldBlock: if the queue is full; it is also an
                :class:`anyio.WouldBlock`.
            PoolClosedError: if the pool is closed.
        """
        _check_target(fn)
        self._check_open()
        if not self._has_room():
            raise QueueFull
        return self._accept(fn, args, kwargs)

    async def broadcast(
        self, fn: Callable[..., Any] | str, /, *args: Any, **kwargs: Any
    ) -> list[outcome.Outcome[Any]]:
        """Run a function or operation once on every worker; Outcomes in worker order.

        Every worker loading or serving runs it, leased ones included
        (between the lease's calls), after the jobs it has already started.
        These jobs wait for their worker, not for room in the queue.

        Cancellation: as for :meth:`run`, job by job: queued ones are removed,
        running ones waited for (or abandoned with ``abandon_on_cancel``).
        """
        _check_target(fn)
        self._check_open()
        await self._backend.cancellation_point()
        workers = sorted((w for w in self._workers.values() if w.serving), key=lambda w: w.id)
        jobs = [self._accept(fn, args, kwargs, worker=w) for w in workers]
        return await self._outcomes_of(jobs)

    @overload
    def map(
        self,
        fn: Callable[[T], R],
        items: Iterable[T] | AsyncIterable[T],
        /,
        *,
        ordered: bool = ...,
        chunksize: int = ...,
        outcomes: Literal[False] = ...,
    ) -> MapResults[R]: ...
    @overload
    def map(
        self,
        fn: Callable[[T], R],
        items: Iterable[T] | AsyncIterable[T],
        /,
        *,
        ordered: bool = ...,
        chunksize: int = ...,
        outcomes: Literal[True],
    ) -> MapResults[outcome.Outcome[R]]: ...
    @overload
    def map(
        self,
        fn: str,
        items: Iterable[Any] | AsyncIterable[Any],
        /,
        *,
        ordered: bool = ...,
        chunksize: int = ...,
        outcomes: bool = ...,
    ) -> MapResults[Any]: ...
    def map(
        self,
        fn: Callable[[Any], Any] | str,
        items: Iterable[Any] | AsyncIterable[Any],
        /,
        *,
        ordered: bool = True,
        chunksize: int = 1,
        outcomes: bool = False,
    ) -> MapResults[Any]:
        """Run ``fn(item)`` for every item, streaming the results::

            async with pool.map(parse, lines, chunksize=100) as results:
                async for record in results:
                    ...

        The items (a sync or async iterable) are read lazily, as room
        appears: at most ``queue_size`` chunks of ``chunksize`` items are in
        flight (sent and not yet consumed), so memory stays bounded however
        long the input and however slow the consumer. ``results.done`` counts
        the results yielded; ``results.total`` is ``len(items)`` if there is
        one (for a progress bar).

        Args:
            fn: A sync function of one item, or the name of an operation.
            items: The inputs.
            ordered: Yield results in input order (the default), or as they
                complete.
            chunksize: Items per job. Tiny items go much faster in chunks of
                tens or hundreds; a job's cancellation is checked between items.
            outcomes: Yield an :class:`outcome.Outcome` per item, so that
                failures do not stop the batch. By default the first error is
                raised, and what is left is cancelled.

        Leaving the ``async with`` block early (``break``, an error, a
        cancellation) stops reading the items, cancels the chunks not yet
        started, asks running ones to stop (:func:`check_cancelled`) and
        waits for them; the pool stays usable.
        """
        _check_target(fn)
        fn = self._resolve(fn)
        chunksize = _count("chunksize", chunksize)
        if not isinstance(items, (Iterable, AsyncIterable)):
            raise TypeError(f"items must be an iterable or async iterable, not {items!r}")
        self._check_open()
        return MapResults(
            self,
            fn,
            items,
            ordered=bool(ordered),
            chunksize=chunksize,
            outcomes=bool(outcomes),
            window=self._queue_size,
        )

    def lease(self) -> contextlib.AbstractAsyncContextManager[WorkerLease]:
        """Exclusive use of one worker: ``async with pool.lease() as worker:``.

        The :class:`WorkerLease` has the pool's ``run``, ``call``,
        ``call_method`` and ``interface``, all served by that one worker
        (a transaction on a thread-bound connection), while other tasks use
        the rest of the pool. An idle worker is preferred; if every worker is
        leased, entering waits for one. Leaving the block, even by an error
        or a cancellation, returns the worker to the pool.
        """
        return Lease(
            self._acquire_worker, self._release_worker, self._call_on, self._operation_names
        )

    async def _acquire_worker(self) -> Worker:
        await self._backend.cancellation_point()
        while True:
            self._check_open()
            # Loaded workers only: a loading one might fail to load.
            free = [
                w
                for w in self._workers.values()
                if w.state == "idle" and w.serving and not w.leased
            ]
            if free:
                worker = min(free, key=lambda w: (w.job is not None, w.id))
                self._channel.lease(worker)
                return worker
            event = self._backend.event()
            self._lease_waiters.append(event)
            if self._autoscaling:
                self._pressure.set()  # a lessee waits: autoscaling may start a worker
            try:
                await event.wait()
            finally:
                with contextlib.suppress(ValueError):
                    self._lease_waiters.remove(event)

    def _release_worker(self, worker: Worker) -> None:
        self._channel.unlease(worker)
        self._let_in_lessees()
        if self._autoscaling:
            self._pressure.set()  # time the released worker's retirement

    def _let_in_lessees(self) -> None:
        """Wake every task waiting for a lease, to look for a free worker again."""
        for event in self._lease_waiters:
            event.set()

    async def _call_on(
        self,
        worker: Worker,
        fn: Callable[..., Any] | str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        with_interface: bool,
    ) -> outcome.Outcome[Any]:
        self._check_open()
        await self._backend.cancellation_point()
        job = self._accept(fn, args, kwargs, with_interface=with_interface, worker=worker)
        return await self._outcome_of(job)

    def define(self, name: str, fn: Callable[P, R]) -> Callable[P, Awaitable[R]]:
        """Make ``fn`` the operation ``name`` on every worker, now and later.

        ``pool.call(name, ...)``, ``pool.interface.<name>(...)`` and
        ``pool.submit(name, ...)`` then run ``fn(...)`` in a worker, where
        :func:`current_interface` gives the worker's interface. A call
        accepted before :meth:`undefine` (or a new ``define`` of the name)
        runs the function it was accepted with.

        Returns:
            An async function that runs the operation and returns its value.

        Raises:
            ValueError: if ``name`` starts with ``_`` or is one of the
                interface's own operations.
            TypeError: if ``fn`` is not a sync callable.
        """
        if not isinstance(name, str):
            raise TypeError(f"an operation's name is a str, not {name!r}")
        if name.startswith("_"):
            raise ValueError(
                f"{name!r} cannot be an operation: names starting with '_' are private"
            )
        if name in self._operations or name in self._static_operations:
            raise ValueError(f"the interface already has an operation {name!r}")
        check_sync_callable(fn)
        self._check_open()
        self._definitions[name] = fn
        return unwrapping_operation(self.call, name)

    def undefine(self, name: str) -> None:
        """Remove an operation added with :meth:`define`.

        Calls accepted before still run it; later ones get
        :class:`AttributeError` (inside the Outcome for :meth:`call`).

        Raises:
            LookupError: if no operation ``name`` was defined.
        """
        try:
            del self._definitions[name]
        except KeyError:
            raise LookupError(f"no operation {name!r} was defined on this pool") from None

    def notify(self, worker_id: int, event: Hashable, /, *values: Any) -> None:
        """Wake the job of worker ``worker_id`` that waits in :func:`trio_pool.wait`.

        ``wait(event)`` returns ``values`` as a tuple. A notify with no job
        waiting yet is kept until a job of that worker waits for ``event``.

        Raises:
            LookupError: if the pool has no worker ``worker_id``.
        """
        worker = self._workers.get(worker_id) if self._state != "new" else None
        if worker is None or worker.state in ("stopping", "stopped"):
            raise LookupError(f"the pool has no worker {worker_id!r} (or it is stopping)")
        self._channel.notify(worker, event, values)

    # --- looking at it ----------------------------------------------------

    def statistics(self) -> PoolStatistics:
        """A snapshot of the pool's workers and job counts."""
        workers: list[WorkerStatistics] = []
        queued = 0
        if self._state != "new":
            with self._channel.lock:
                queued = self._channel.queued
                for worker in self._workers.values():
                    state = "busy" if worker.job is not None else worker.state
                    workers.append(
                        WorkerStatistics(
                            worker.id, worker.info.name, state, worker.jobs_done, worker.leased
                        )
                    )
        return PoolStatistics(
            workers=len(workers),
            busy=sum(w.state == "busy" for w in workers),
            idle=sum(w.state == "idle" for w in workers),
            queued=queued,
            submitted=self._submitted,
            completed=self._completed,
            failed=self._failed,
            cancelled=self._cancelled,
            workers_started=self._started_count,
            workers_stopped=self._stopped_count,
            hook_errors=self._hook_errors,
            scaled_up=self._scaled_up,
            scaled_down=self._scaled_down,
            worker_states=tuple(sorted(workers, key=lambda w: w.id)),
        )
