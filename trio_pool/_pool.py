"""The Pool: the face over the parts that each own their state.

It checks its arguments into a frozen :class:`~._options.Options`, builds
the parts when it is entered, orchestrates entering and leaving, and
delegates every public method. What it owns itself is its lifetime state and
how they are wired together. See docs/how-it-works.rst.
"""

from __future__ import annotations

import contextlib
import enum
import logging
from collections.abc import AsyncIterable, Awaitable, Callable, Hashable, Iterable, Mapping
from types import TracebackType
from typing import Any, Concatenate, Generic, Literal, ParamSpec, Protocol, final, overload

import anyio
import outcome
from typing_extensions import TypeVar, TypeVarTuple, Unpack

from ._backend import ki_protected
from ._checks import check_count, check_sync_callable, check_target
from ._exceptions import PoolClosedError, combine, raise_combined
from ._handoff import Phase
from ._instruments import Instrument, Instruments
from ._interface import InterfaceProxy, Operations, unwrapping_operation
from ._job import Job, JobRecord, is_not_started, value_of
from ._lease import Lease, WorkerLease
from ._map import MapResults, check_map_arguments
from ._options import PoolOptions, build_options
from ._parts import Parts
from ._statistics import Counters, PoolStatistics
from ._workers import first_load_error

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")
T2 = TypeVar("T2")
# The interface: what each worker loaded. A bare ``Pool`` annotation is a Pool[Any].
I = TypeVar("I", covariant=True, default=Any)  # noqa: E741
Ts = TypeVarTuple("Ts")  # the loader's arguments


class SupportsEnter(Protocol[I]):
    """What a loader may return: the interface is what ``__enter__`` returns."""

    def __enter__(self) -> I: ...


logger = logging.getLogger("trio_pool")

#: Seconds an exit waits for running jobs before it logs which (at WARNING).
EXIT_PATIENCE = 10.0


class _State(enum.Enum):
    NEW = "new"
    OPEN = "open"
    CLOSING = "closing"
    CLOSED = "closed"


_NEXT = {
    _State.NEW: (_State.OPEN, _State.CLOSED),  # entered, or closed before it was
    _State.OPEN: (_State.CLOSING,),
    _State.CLOSING: (_State.CLOSED,),
    _State.CLOSED: (),
}


def _nothing() -> None:
    pass


@final
class Pool(Generic[I]):
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
        max_wait: Seconds a caller may wait for a worker, on the event
            loop's clock: ``run``, ``call``, ``call_method`` and
            ``interface.<op>`` raise :exc:`trio.WouldBlock` (also an
            :exc:`anyio.WouldBlock`) if no worker has taken their job that
            long after the call began (waiting for room included); the job
            is taken out and never runs, so a service sheds load (answers
            503) instead of queueing without end. A job a worker has taken
            is never shed. ``submit`` and entering a lease raise it if they
            wait that long for room or for a worker to lease. ``0``: run now
            on a free worker, or shed. ``map`` is never shed. Default None:
            wait as long as it takes.
        abandon_on_cancel: If True, a caller cancelled while its job runs
            returns at once and the job's result is discarded, and a second
            Ctrl-C at the exit leaves thread workers still running behind;
            if False (the default) the caller waits for the job, like
            :func:`trio.to_thread.run_sync`, and the exit for every thread
            (see "A second Ctrl-C" in the semantics page).
        name: The pool's name, used for its worker threads' names.
        host: Where each worker's interface lives: :class:`ThreadHost` (the
            default: in the worker thread), :class:`ProcessHost` (in a
            child process driven by the worker thread),
            :class:`InterpreterHost` (in a subinterpreter the worker thread
            runs, CPython 3.13+) or :class:`RayHost` (in a Ray actor driven
            by the worker thread).
        instruments: :class:`Instrument` objects whose methods the pool
            calls as jobs and workers come and go (metrics, tracing); see
            :meth:`add_instrument`.
        max_jobs_per_worker: Renew a worker once it has run that many jobs:
            its hook runs (with no exception), it stops, and a new worker
            loads in its place; the pool's size holds, and no queued job is
            lost. A leased worker is renewed when its lease ends. Default
            None: workers live as long as the pool.

    Use it as an async context manager::

        async with trio_pool.Pool(Db, "app.db", workers=4) as pool:
            rows = await pool.call_method(Db.query, "select 1")  # typed
            rows = await pool.interface.query("select 1")  # the same, untyped

    ``Pool(Db, "app.db")`` is a ``Pool[Db]``: type checkers check the
    loader's arguments against ``Db`` and the methods given to
    :meth:`call_method`, :meth:`broadcast_method` and a lease's
    ``call_method`` against ``Db``.

    Entering returns once every worker has loaded its interface. Leaving
    waits for every accepted job, stops the workers (their hooks run) and
    joins their threads. If the block raises or is cancelled instead, queued
    jobs never start, running jobs are told to stop
    (:func:`check_cancelled`) and waited for, and the hooks are called with
    that exception. An error of a loader or a hook is raised at the latest
    when the block exits; several errors are raised together as an
    :class:`ExceptionGroup`.
    """

    # The overloads type the pool by what its workers load, and check the
    # loader's arguments: Pool(Db, "app.db") is a Pool[Db].
    @overload
    def __init__(
        self: Pool[None],
        interface: None = None,
        /,
        **options: Unpack[PoolOptions],
    ) -> None: ...
    @overload
    def __init__(
        self: Pool[Mapping[str, Callable[..., Any]]],
        interface: Mapping[str, Callable[..., Any]],
        /,
        **options: Unpack[PoolOptions],
    ) -> None: ...
    @overload
    def __init__(
        self,
        interface: Callable[[Unpack[Ts]], SupportsEnter[I]],
        /,
        *args: Unpack[Ts],
        **options: Unpack[PoolOptions],
    ) -> None: ...
    @overload
    def __init__(
        self,
        interface: Callable[[Unpack[Ts]], I],
        /,
        *args: Unpack[Ts],
        **options: Unpack[PoolOptions],
    ) -> None: ...
    def __init__(  # type: ignore[misc]  # a mypy bug: *args: Any is refused beside Unpack[Ts]
        self, interface: object = None, /, *args: Any, **options: Unpack[PoolOptions]
    ) -> None:
        self._options = build_options(interface, args, options)
        #: The pool's name (the ``name`` argument, or ``"trio_pool-<n>"``). Its
        #: worker threads are named ``"<name>-worker-<id>"``.
        self.name: str = self._options.name
        self._operations = Operations(interface)
        self._counters = Counters()
        self._instruments = Instruments(self._options.instruments)
        self._state = _State.NEW
        self._parts: Parts | None = None  # built on entry, for the running loop
        self._unwatch_signals: Callable[[], None] = _nothing

    def __repr__(self) -> str:
        workers = 0 if self._parts is None else len(self._parts.workers)
        return f"<trio_pool.Pool {self.name!r} {self._state.value} workers={workers}>"

    def _move_to(self, state: _State) -> None:
        """The one transition function of the pool's state."""
        assert state in _NEXT[self._state], f"a pool cannot go from {self._state} to {state}"
        self._state = state

    # --- lifetime ---------------------------------------------------------

    async def __aenter__(self) -> Pool[I]:
        if self._state is not _State.NEW:
            raise RuntimeError("a Pool can be entered only once; make a new one")
        parts = self._parts = Parts(
            self._options, self._counters, self._operations, self._instruments
        )
        self._unwatch_signals = parts.backend.watch_signals()
        await parts.task_group.__aenter__()
        parts.start()
        self._move_to(_State.OPEN)
        try:
            await parts.start_workers()
        except BaseException as exc:
            error = await self._exit(exc)
            if error is not None and error is not exc:
                raise error from None
            raise
        logger.debug("pool %s started %d workers", self.name, self._options.initial)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Never swallows the block's exception (type checkers see that too)."""
        assert self._parts is not None
        self._parts.intake.check_loop()
        error = await self._exit(exc)
        if error is not None and error is not exc:
            raise error

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
        if self._state is _State.NEW:
            self._move_to(_State.CLOSED)
        if self._state is _State.CLOSED:
            await anyio.lowlevel.checkpoint()
            return
        assert self._parts is not None
        self._parts.intake.check_loop()
        raise_combined(await self._stop(None))

    async def _exit(self, reason: BaseException | None) -> BaseException | None:
        """Stop, leave the task group; return what the block should raise."""
        error = combine(await self._stop(reason))
        assert self._parts is not None
        try:
            # Every thread has ended, so this only closes the group; on asyncio
            # it can still raise the enclosing scope's cancellation, which must
            # not replace the error we have.
            await self._parts.task_group.__aexit__(None, None, None)
        except anyio.get_cancelled_exc_class():
            if error is None:
                raise
        return error

    @ki_protected  # a Ctrl-C comes at an await, where the steps below expect it
    async def _stop(self, reason: BaseException | None) -> list[BaseException]:
        """Stop the workers and wait for their threads; return the errors to raise."""
        parts = self._parts
        assert parts is not None
        if self._state is _State.OPEN:
            self._move_to(_State.CLOSING)
            parts.close(EXIT_PATIENCE)
        errors = await parts.stop(reason)
        if self._state is not _State.CLOSED:
            self._move_to(_State.CLOSED)
            parts.closed()
            self._unwatch_signals()
            logger.debug("pool %s stopped", self.name)
        return errors

    def _live(self) -> Parts:
        """The parts of the open pool; RuntimeError or PoolClosedError if it is not."""
        if self._state is _State.OPEN:
            parts = self._parts
            assert parts is not None
            if parts.backend.is_current():
                return parts
            parts.intake.check_loop()
        if self._state is _State.NEW:
            raise RuntimeError("enter the pool first: `async with Pool(...) as pool:`")
        raise PoolClosedError(f"the pool {self.name!r} is closed")

    # --- workers ------------------------------------------------------------

    @property
    def worker_count(self) -> int:
        """Workers loading or serving (not those asked to stop)."""
        return 0 if self._parts is None else self._parts.workers.serving

    async def add_workers(self, count: int) -> None:
        """Start ``count`` more workers; return once they have loaded.

        If a new worker's loader fails, the others started with it are
        stopped again and the error is raised: the pool keeps the workers it
        had.

        Cancellation: the change completes (new workers finish loading), then
        the cancellation is raised.
        """
        count = check_count("count", count)
        parts = self._live()
        await parts.backend.cancellation_point()  # first: on asyncio, other tasks run here
        self._live()
        high = self._options.max_workers
        if high is not None and self.worker_count + count > high:
            raise ValueError(f"{count} more workers would exceed max_workers={high}")
        logger.info("pool %s: adding %d workers to %d", self.name, count, self.worker_count)
        # Provisional until all have loaded: nobody may lease one that may be stopped again.
        workers = parts.workers.start(count, provisional=True)
        parts.autoscaler.started(workers)
        try:
            errors = await parts.workers.wait_loaded(workers)
        except BaseException:
            parts.workers.keep(workers)
            parts.workers.lost(workers)  # cancelled, and they were the last to fail
            raise
        finally:
            parts.autoscaler.loaded(workers)
        if errors:  # all or nothing: stop the new workers that did load
            loaded = [w for w in workers if w.load_error is None]
            first = first_load_error(workers)
            assert first is not None
            stopped = await parts.workers.stop_and_join(loaded)
            parts.workers.lost(workers)  # no worker left: the queued jobs fail, not wait
            raise_combined([first, *stopped])
        parts.workers.keep(workers)

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
        count = check_count("count", count)
        parts = self._live()
        await parts.backend.cancellation_point()  # first: on asyncio, other tasks run here
        self._live()
        chosen = parts.workers.choose_to_stop(count, max(1, self._options.min_workers))
        logger.info("pool %s: stopping %d of %d workers", self.name, count, self.worker_count)
        raise_combined(await parts.workers.stop_and_join(chosen))

    async def resize(self, workers: int) -> None:
        """Start or stop workers until there are ``workers``; return once done.

        See :meth:`add_workers` and :meth:`stop_workers`.
        """
        workers = check_count("workers", workers)
        self._live()  # even when there is nothing to change
        difference = workers - self.worker_count
        if difference > 0:
            await self.add_workers(difference)
        elif difference < 0:
            await self.stop_workers(-difference)
        else:
            await anyio.lowlevel.checkpoint()

    async def ensure(self, *, at_least: int | None = None, at_most: int | None = None) -> None:
        """Start or stop workers so that ``at_least <= worker_count <= at_most``."""
        low = 1 if at_least is None else check_count("at_least", at_least)
        high = None if at_most is None else check_count("at_most", at_most)
        if high is not None and low > high:
            raise ValueError(f"at_least ({low}) is above at_most ({high})")
        current = self.worker_count
        await self.resize(max(low, current) if high is None else min(max(low, current), high))

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
        finish, while the job can notice with :func:`check_cancelled`, then
        gets its result and raises the cancellation at its next checkpoint,
        like :func:`trio.to_thread.run_sync` (if the job ended by
        :class:`JobCancelled`, or on a native asyncio ``Task.cancel()``, the
        caller raises the cancellation at once). With
        ``abandon_on_cancel=True`` the caller returns at once and the result
        is discarded.
        """
        check_sync_callable(fn)
        parts = self._live()
        job = await parts.intake.submit(fn, args, kwargs)
        result: R = value_of(await parts.calls.outcome_of(job))
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
        parts = self._live()
        job = await parts.intake.submit(op, args, kwargs)
        result = await parts.calls.outcome_of(job)
        if is_not_started(result):  # max_wait: shed, as the call says, not the operation
            value_of(result)
        return result

    async def call_method(
        self, method: Callable[Concatenate[I, P], R], /, *args: P.args, **kwargs: P.kwargs
    ) -> R:
        """Call ``method(interface, *args, **kwargs)`` in a worker; return its value.

        The typed spelling of an interface call: ``await
        pool.call_method(Db.query, "select 1")`` is ``pool.interface.query("select
        1")`` with the argument and result types that mypy and pyright infer
        from ``Db.query``, and a method of another class is a type error.

        Cancellation: as for :meth:`run`.
        """
        check_sync_callable(method)
        self._operations.check_method(method)
        parts = self._live()
        job = await parts.intake.submit(method, args, kwargs, with_interface=True)
        result: R = value_of(await parts.calls.outcome_of(job))
        return result

    @property
    def interface(self) -> Any:
        """The interface's operations (and defined ones) as awaitable methods.

        ``await pool.interface.query(sql)`` runs ``query`` in a worker and
        returns its value or raises its error. An unknown operation raises
        :class:`AttributeError` at attribute access. It is untyped (``Any``):
        ``await pool.call_method(Db.query, sql)`` is the same call, checked by
        type checkers.
        """
        return InterfaceProxy(self.call, self._operations.names())

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
        check_target(fn)
        parts = self._live()
        return (await parts.intake.submit(fn, args, kwargs, waited=False)).job

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
        check_target(fn)
        parts = self._live()
        return parts.intake.accept_nowait(fn, args, kwargs).job

    @overload
    async def broadcast(
        self, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs
    ) -> list[outcome.Outcome[R]]: ...
    @overload
    async def broadcast(
        self, fn: str, /, *args: Any, **kwargs: Any
    ) -> list[outcome.Outcome[Any]]: ...
    async def broadcast(
        self, fn: Callable[..., Any] | str, /, *args: Any, **kwargs: Any
    ) -> list[outcome.Outcome[Any]]:
        """Run a function or operation once on every worker; Outcomes in worker order.

        Every worker loading or serving runs it, leased ones included
        (between the lease's calls), after the jobs it has already started.
        These jobs wait for their worker, not for room in the queue. To run
        a method of the interface, give its name or use
        :meth:`broadcast_method`.

        Cancellation: as for :meth:`run`, job by job: queued ones are removed,
        running ones waited for (or abandoned with ``abandon_on_cancel``).
        """
        check_target(fn)
        return await self._broadcast(fn, args, kwargs, with_interface=False)

    async def broadcast_method(
        self, method: Callable[Concatenate[I, P], R], /, *args: P.args, **kwargs: P.kwargs
    ) -> list[outcome.Outcome[R]]:
        """:meth:`broadcast` of ``method(interface, *args, **kwargs)``, as :meth:`call_method`.

        ``await pool.broadcast_method(Db.reload, "config.toml")`` calls
        ``reload`` on every worker's own interface.
        """
        check_sync_callable(method)
        self._operations.check_method(method)
        return await self._broadcast(method, args, kwargs, with_interface=True)

    async def _broadcast(
        self,
        fn: Callable[..., Any] | str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        *,
        with_interface: bool,
    ) -> list[outcome.Outcome[Any]]:
        parts = self._live()
        await parts.backend.cancellation_point()
        workers = sorted((w for w in parts.workers if w.slot.serving), key=lambda w: w.id)
        jobs = [
            parts.intake.accept(fn, args, kwargs, with_interface=with_interface, slot=w.slot)
            for w in workers
        ]
        return await parts.calls.outcomes_of(jobs)

    @overload
    def map(
        self,
        fn: Callable[[T], R],
        items: Iterable[T] | AsyncIterable[T],
        /,
        *,
        ordered: bool = ...,
        chunksize: int | None = ...,
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
        chunksize: int | None = ...,
        outcomes: Literal[True],
    ) -> MapResults[outcome.Outcome[R]]: ...
    @overload
    def map(
        self,
        fn: Callable[[T, T2], R],
        items: Iterable[T] | AsyncIterable[T],
        items2: Iterable[T2] | AsyncIterable[T2],
        /,
        *,
        ordered: bool = ...,
        chunksize: int | None = ...,
        outcomes: Literal[False] = ...,
    ) -> MapResults[R]: ...
    @overload
    def map(
        self,
        fn: Callable[[T, T2], R],
        items: Iterable[T] | AsyncIterable[T],
        items2: Iterable[T2] | AsyncIterable[T2],
        /,
        *,
        ordered: bool = ...,
        chunksize: int | None = ...,
        outcomes: Literal[True],
    ) -> MapResults[outcome.Outcome[R]]: ...
    @overload
    def map(
        self,
        fn: str,
        items: Iterable[Any] | AsyncIterable[Any],
        /,
        *more: Iterable[Any] | AsyncIterable[Any],
        ordered: bool = ...,
        chunksize: int | None = ...,
        outcomes: bool = ...,
    ) -> MapResults[Any]: ...
    @overload
    def map(
        self,
        fn: Callable[..., Any],
        items: Iterable[Any] | AsyncIterable[Any],
        items2: Iterable[Any] | AsyncIterable[Any],
        items3: Iterable[Any] | AsyncIterable[Any],
        /,
        *more: Iterable[Any] | AsyncIterable[Any],
        ordered: bool = ...,
        chunksize: int | None = ...,
        outcomes: bool = ...,
    ) -> MapResults[Any]: ...
    def map(
        self,
        fn: Callable[..., Any] | str,
        items: Iterable[Any] | AsyncIterable[Any],
        /,
        *more: Iterable[Any] | AsyncIterable[Any],
        ordered: bool = True,
        chunksize: int | None = None,
        outcomes: bool = False,
    ) -> MapResults[Any]:
        """Run ``fn(item)`` for every item (``fn(a, b)`` over several iterables), streaming::

            async with pool.map(parse, lines) as results:
                async for record in results:
                    ...

        or a chunk at a time, for tiny items (see :meth:`MapResults.batches`)::

            async with pool.map(parse, lines, chunksize=1000) as results:
                async for records in results.batches():
                    ...

        The items (a sync or async iterable) are read lazily, as room
        appears: at most ``queue_size`` chunks, and at most ``queue_size *
        chunksize`` items (``queue_size * 64`` with the adaptive size), are
        in flight (sent and not yet consumed), so memory stays bounded
        however long the input and however slow the consumer.
        ``results.done`` counts the results yielded; ``results.total`` is
        ``len(items)`` if there is one (for a progress bar).

        Args:
            fn: A sync function of one item (of one item of each iterable),
                or the name of an operation.
            items: The inputs.
            *more: More inputs, as :meth:`concurrent.futures.Executor.map`
                takes them: ``fn`` gets one item of each, zipped, stopping at
                the shortest. Sync and async iterables may be mixed.
            ordered: Yield results in input order (the default), or as they
                complete.
            chunksize: Items per job. By default (None) it adapts: the first
                chunk has one item, and each next one is sized from how long
                the last took, towards about a millisecond of work per chunk
                (at most doubling per step, shrinking at once for slow
                items; at most ``queue_size * 8`` items, and 4096). Give a
                number to fix it. A job's
                cancellation is checked between items.
            outcomes: Yield an :class:`outcome.Outcome` per item, so that
                failures do not stop the batch. By default the first error is
                raised, and what is left is cancelled.

        Leaving the ``async with`` block early (``break``, an error, a
        cancellation) stops reading the items, cancels the chunks not yet
        started, asks running ones to stop (:func:`check_cancelled`) and
        waits for them; the pool stays usable.
        """
        check_target(fn)
        fn = self._operations.resolve(fn)
        chunksize = check_map_arguments(chunksize, (items, *more))  # before the pool's state
        return MapResults(
            self._submit_unshed,
            self._live().backend.event,
            fn,
            (items, *more),
            ordered=bool(ordered),
            chunksize=chunksize,
            outcomes=bool(outcomes),
            window=self._options.queue_size,
        )

    async def _submit_unshed(self, fn: Callable[..., Any], /, *args: Any) -> JobRecord:
        """:meth:`submit` for ``map``, which waits for room however long (never sheds)."""
        parts = self._live()
        return await parts.intake.submit(fn, args, {}, waited=False, shed=False)

    def lease(
        self, *, reset: Callable[[I], object] | None = None
    ) -> contextlib.AbstractAsyncContextManager[WorkerLease[I]]:
        """Exclusive use of one worker: ``async with pool.lease() as worker:``.

        The :class:`WorkerLease` has the pool's ``run``, ``call``,
        ``call_method`` and ``interface``, all served by that one worker
        (a transaction on a thread-bound connection), while other tasks use
        the rest of the pool. An idle worker is preferred; if every worker is
        leased, entering waits for one (at most ``max_wait``); a busy one is
        leased once its job ends (another, if its process dies under that
        job). Leaving the block, even by an error or a cancellation, returns
        the worker to the pool.

        Args:
            reset: Called as ``reset(interface)`` in the worker's thread when
                the lease ends, however it ends, before any other task can
                use the worker: ``pool.lease(reset=Db.rollback)`` ends a
                transaction the block left open. It runs shielded from
                cancellation, once, and also when the pool starts closing
                while the lease is held; leaving the block waits for it and
                raises its error. If the pool stops because of an error
                first, the worker's exit hook runs instead.
        """
        return Lease[I](lambda: self._live().leases, self._operations.names, reset)

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
        self._operations.check_new(name, fn)
        self._live()
        self._operations.define(name, fn)
        return unwrapping_operation(self.call, name)

    def undefine(self, name: str) -> None:
        """Remove an operation added with :meth:`define`.

        Calls accepted before still run it; later ones get
        :class:`AttributeError` (inside the Outcome for :meth:`call`).

        Raises:
            LookupError: if no operation ``name`` was defined.
            RuntimeError: if called from another thread or event loop than the pool's.
        """
        if self._parts is not None:
            self._parts.intake.check_loop()
        self._operations.undefine(name)

    def notify(self, worker_id: int, event: Hashable, /, *values: Any) -> None:
        """Wake the job of worker ``worker_id`` that waits in :func:`trio_pool.wait`.

        ``wait(event)`` returns ``values`` as a tuple. A notify with no job
        waiting yet is kept until a job of that worker waits for ``event``.

        Raises:
            LookupError: if the pool has no worker ``worker_id``.
        """
        if self._parts is not None:
            self._parts.intake.check_loop()
        worker = None if self._parts is None else self._parts.workers.get(worker_id)
        if worker is None or worker.slot.phase in (Phase.STOPPING, Phase.STOPPED):
            raise LookupError(f"the pool has no worker {worker_id!r} (or it is stopping)")
        assert self._parts is not None
        self._parts.handoff.notify(worker.slot, event, values)

    # --- looking at it ----------------------------------------------------

    def add_instrument(self, instrument: Instrument) -> None:
        """Start calling ``instrument``'s methods (nothing if it is already active).

        It can be added before the pool is entered, or while it is open.

        Raises:
            TypeError: if ``instrument`` is not an :class:`Instrument`.
            RuntimeError: if called from another thread or event loop than the pool's.
        """
        if self._parts is not None:
            self._parts.intake.check_loop()
        self._instruments.add(instrument)

    def remove_instrument(self, instrument: Instrument) -> None:
        """Stop calling ``instrument``.

        Raises:
            KeyError: if it is not active (as ``trio.lowlevel.remove_instrument``).
            RuntimeError: if called from another thread or event loop than the pool's.
        """
        if self._parts is not None:
            self._parts.intake.check_loop()
        self._instruments.remove(instrument)

    def statistics(self) -> PoolStatistics:
        """A snapshot of the pool's workers and job counts."""
        parts = self._parts
        if parts is None:
            return self._counters.snapshot(0, [])
        queued, workers = parts.workers.statistics()
        return self._counters.snapshot(
            queued, workers, parts.admission.waiting, parts.leases.line.waiting
        )
