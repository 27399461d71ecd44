"""The Pool: its lifetime, the submission of work, and its statistics."""

from __future__ import annotations

import contextlib
import contextvars
import functools
import inspect
import itertools
import logging
import os
import sys
from collections import deque
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any, Concatenate, Literal, ParamSpec, TypeVar, final, overload

import anyio
import outcome

from ._backend import Backend, Event, current_backend, wait_through, wait_through_cancellation
from ._channel import Channel, Delivery
from ._exceptions import PoolClosedError, QueueFull
from ._host import ThreadHost
from ._job import Job, cancelled_outcome, is_cancellation
from ._statistics import PoolStatistics, WorkerStatistics
from ._worker import Worker

if sys.version_info < (3, 11):
    from exceptiongroup import BaseExceptionGroup

P = ParamSpec("P")
R = TypeVar("R")

logger = logging.getLogger("trio_pool")
_pool_numbers = itertools.count(1)


def _positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, not {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be at least 1, not {value}")
    return value


def _check_sync_callable(fn: object) -> None:
    if not callable(fn):
        raise TypeError(f"expected a callable or an operation name, not {fn!r}")
    if inspect.iscoroutinefunction(fn):
        raise TypeError(
            f"{fn!r} is an async function: the pool runs sync functions in worker "
            "threads; await async ones on the event loop instead"
        )


def _check_target(fn_or_op: object) -> None:
    if not isinstance(fn_or_op, str):
        _check_sync_callable(fn_or_op)


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


@final
class _Interface:
    """``pool.interface``: each operation as an awaitable method."""

    __slots__ = ("_pool",)

    def __init__(self, pool: Pool) -> None:
        self._pool = pool

    def __getattr__(self, name: str) -> Callable[..., Any]:
        if name.startswith("_") or name not in self._pool._operations:
            raise AttributeError(f"the pool's interface has no operation {name!r}")
        return functools.partial(self._pool._run_operation, name)

    def __dir__(self) -> list[str]:
        return sorted(self._pool._operations)


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
        queue_size: How many accepted jobs may wait for a worker; callers
            wait for room beyond that. Default ``max(64, 4 * workers)``.
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
        if workers is None:
            workers = min(32, (os.cpu_count() or 1) + 4)
        self._size = _positive_int("workers", workers)
        self._queue_size = _positive_int(
            "queue_size", max(64, 4 * self._size) if queue_size is None else queue_size
        )
        if not isinstance(abandon_on_cancel, bool):
            raise TypeError(f"abandon_on_cancel must be a bool, not {abandon_on_cancel!r}")
        if name is not None and not isinstance(name, str):
            raise TypeError(f"name must be a str, not {name!r}")
        self.name: str = name if name is not None else f"trio_pool-{next(_pool_numbers)}"
        self._interface: object = interface
        self._args = args
        self._abandon_on_cancel = abandon_on_cancel
        self._state: Literal["new", "open", "closing", "closed"] = "new"
        self._operations: frozenset[str] = frozenset()
        self._workers: dict[int, Worker] = {}
        self._worker_ids = itertools.count()
        self._errors: list[BaseException] = []  # loaders' and hooks', in order
        self._loading = 0
        self._threads = 0
        self._room_waiters: deque[Event] = deque()
        self._reserved = 0  # room promised to woken waiters
        self._submitted = self._completed = self._failed = self._cancelled = 0

    def __repr__(self) -> str:
        return f"<trio_pool.Pool {self.name!r} {self._state} workers={len(self._workers)}>"

    # --- lifetime ---------------------------------------------------------

    async def __aenter__(self) -> Pool:
        if self._state != "new":
            raise RuntimeError("a Pool can be entered only once; make a new one")
        self._backend: Backend = current_backend()
        self._channel = Channel(self._backend.post, self._deliver)
        self._started = self._backend.event()
        self._stopped = self._backend.event()
        self._limiter = anyio.CapacityLimiter(self._size)
        self._task_group = anyio.create_task_group()
        await self._task_group.__aenter__()
        self._state = "open"
        for _ in range(self._size):
            self._start_worker()
        try:
            await self._started.wait()
        except BaseException as exc:
            error = await self._exit(exc)
            if error is not None and error is not exc:
                raise error from None
            raise
        if self._errors:  # a loader failed
            error = await self._exit(self._errors[0])
            assert error is not None
            raise error
        logger.debug("pool %s started %d workers", self.name, self._size)
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
        error = _combine(await self._stop(None))
        if error is not None:
            raise error

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
        (the block's exit and ``aclose()``); the first reason given wins, and
        each errors is returned to one caller only.
        """
        if self._state == "open":
            self._state = "closing"
            self._let_in_waiters()  # they find the pool closed
            self._channel.stop(self._workers.values())
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

    def _start_worker(self) -> None:
        worker_id = next(self._worker_ids)
        worker = Worker(
            worker_id,
            f"{self.name}-worker-{worker_id}",
            ThreadHost(self._interface, self._args),
            self._channel,
            loaded=self._loaded,
            exited=self._exited,
        )
        self._workers[worker_id] = worker
        self._loading += 1
        self._threads += 1
        self._task_group.start_soon(self._run_worker, worker, name=worker.info.name)

    async def _run_worker(self, worker: Worker) -> None:
        # The thread reports its own end (``_exited``); this task only lends it
        # a thread. A shield keeps scope cancellation out; native asyncio
        # cancellation (asyncio.run shutting down) ends this task, and the
        # thread still reports when it is done.
        with contextlib.suppress(anyio.get_cancelled_exc_class()):
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(worker.main, limiter=self._limiter)

    def _loaded(self, worker: Worker, error: BaseException | None) -> None:
        self._loading -= 1
        if error is not None:
            self._errors.append(error)
            self._started.set()
        elif not self._operations:
            self._operations = worker.host.operations
        if self._loading == 0:
            self._started.set()

    def _exited(self, worker: Worker, hook_error: BaseException | None) -> None:
        self._channel.flush()  # deliver the outcomes the thread left behind
        del self._workers[worker.id]
        if hook_error is not None:
            self._errors.append(hook_error)
        self._threads -= 1
        if self._threads == 0:
            self._stopped.set()

    # --- jobs ---------------------------------------------------------------

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
        with_interface: bool,
    ) -> Job[Any]:
        self._check_open()
        job: Job[Any] = Job(
            fn,
            args,
            kwargs,
            event=self._backend.event(),
            canceller=self._cancel_job,
            with_interface=with_interface,
            context=contextvars.copy_context(),
        )
        self._channel.put(job)
        self._submitted += 1
        return job

    async def _submit(
        self,
        fn: Callable[..., Any] | str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        *,
        with_interface: bool = False,
    ) -> Job[Any]:
        self._check_open()
        await self._backend.cancellation_point()
        if not self._has_room():
            await self._wait_for_room()
        return self._accept(fn, args, kwargs, with_interface=with_interface)

    async def _outcome_of(self, job: Job[Any]) -> outcome.Outcome[Any]:
        """Wait for a job as its caller, applying the cancellation rules."""
        try:
            await job._event.wait()
        except BaseException as exc:
            if job._outcome is None and not self._cancel_job(job):  # it runs
                if self._abandon_on_cancel or not isinstance(exc, anyio.get_cancelled_exc_class()):
                    job._abandoned = True
                    self._cancelled += 1
                else:
                    await wait_through_cancellation(job._event)
            raise
        assert job._outcome is not None
        return job._outcome

    def _cancel_job(self, job: Job[Any]) -> bool:
        if not self._channel.cancel(job):
            return False
        self._record(job, cancelled_outcome())
        self._let_in_waiters()
        return True

    def _deliver(self, batch: Delivery) -> None:
        for job, result in batch:
            self._record(job, result)
        if self._room_waiters:
            self._let_in_waiters()

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
        _check_sync_callable(fn)
        job = await self._submit(fn, args, kwargs)
        result: R = (await self._outcome_of(job)).unwrap()
        return result

    async def call(self, op: str, /, *args: Any, **kwargs: Any) -> outcome.Outcome[Any]:
        """Run the interface operation ``op`` in a worker and return its Outcome.

        Errors of the operation, an unknown one included
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
        _check_sync_callable(method)
        job = await self._submit(method, args, kwargs, with_interface=True)
        result: R = (await self._outcome_of(job)).unwrap()
        return result

    async def _run_operation(self, op: str, /, *args: Any, **kwargs: Any) -> Any:
        return (await self.call(op, *args, **kwargs)).unwrap()

    @property
    def interface(self) -> Any:
        """The interface's operations as awaitable methods.

        ``await pool.interface.query(sql)`` runs ``query`` in a worker and
        returns its value or raises its error. An unknown operation raises
        :class:`AttributeError` at attribute access.
        """
        return _Interface(self)

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
        self._check_open()
        await self._backend.checkpoint()  # nothing may raise once the job is accepted
        if not self._has_room():
            await self._wait_for_room()
        return self._accept(fn, args, kwargs, with_interface=False)

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
        return self._accept(fn, args, kwargs, with_interface=False)

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
                        WorkerStatistics(worker.id, worker.info.name, state, worker.jobs_done)
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
            worker_states=tuple(sorted(workers, key=lambda w: w.id)),
        )
