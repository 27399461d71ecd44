"""A job's public face: what to run, its one Outcome, its callbacks, its cancel flag.

A leaf: it imports no worker and no pool. Fields written by other modules are
listed with their writer; each field has one.
"""

from __future__ import annotations

import contextvars
import functools
import logging
import threading
from collections.abc import Awaitable, Callable
from time import perf_counter
from typing import TYPE_CHECKING, Any, Generic, NoReturn, Protocol, TypeVar, final

import anyio
from outcome import Error, Outcome, Value

from ._exceptions import JobCancelled, NotStarted

if TYPE_CHECKING:
    from ._backend import Event, Waker

T = TypeVar("T")

_NO_KWARGS: dict[str, Any] = {}  # a done job's (never written to)


class Owner(Protocol):
    """What a job belongs to: its pool's intake (or a run_in_thread call)."""

    def event(self) -> Event:
        """A new event of the owning loop."""
        ...

    def cancel(self, job: Job[Any]) -> bool:
        """:meth:`Job.cancel`, in the owning loop's thread."""
        ...

    def check_loop(self) -> None:
        """Raise RuntimeError unless called in the owning loop's thread, under its run."""
        ...


@final
class _NoPublicConstructor(type):
    """``Job(...)`` raises TypeError: the pool makes jobs, with ``Job._create(...)``."""

    def __call__(cls, *args: object, **kwargs: object) -> NoReturn:
        raise TypeError(
            f"{cls.__module__.split('.')[0]}.{cls.__qualname__} has no public constructor: "
            "a pool makes jobs (pool.submit(...))"
        )


class Job(Generic[T], metaclass=_NoPublicConstructor):
    """Work accepted by a pool, collected later with :meth:`wait`.

    Returned by :meth:`Pool.submit` and :meth:`Pool.submit_nowait`; there is
    no public constructor (calling ``Job(...)`` raises :exc:`TypeError`).
    """

    __slots__ = (
        "__weakref__",  # (a shedding pool watches its callers' jobs, weakly)
        "_abandoned",
        "_args",
        "_callbacks",
        "_cancel_requested",
        "_context",
        "_event",
        "_fn",
        "_kwargs",
        "_outcome",
        "_owner",
        "_place",
        "_requests",
        "_slot",
        "_wake",
        "_with_interface",
        "finished_at",
        "started_at",
        "submitted_at",
        "worker_id",
    )

    # Written by _handoff, under its lock (the worker thread reads
    # _cancel_requested without it): where the job stands in the handoff (a
    # _handoff.Place, None until the job is put there), the worker slot it is
    # for or runs on, the cancel request and the id of the worker running it.
    _place: Any
    _slot: Any
    _cancel_requested: bool
    #: The id of the worker that ran the job, or None if none has (yet).
    worker_id: int | None
    # Written by _worker (the worker's thread), and by _finish for a job that never ran.
    #: When a worker started running the job, on :func:`time.perf_counter`'s
    #: clock; None until then, and for a job that never ran.
    started_at: float | None
    #: When the job finished running, on :func:`time.perf_counter`'s clock (for
    #: a job that never ran, when it got its Outcome); None until then.
    finished_at: float | None
    # Written by _calls, in the loop thread: the caller's wake-up while a
    # caller waits (None otherwise), its from_loop() requests, and whether
    # the caller abandoned the job.
    _wake: Waker | None
    _requests: list[Any] | None
    _abandoned: bool

    @classmethod
    def _create(
        cls,
        fn: Callable[..., Any] | str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        with_interface: bool,
        context: contextvars.Context,
        owner: Owner,
    ) -> Job[T]:
        """The pool's way to make a job (positional only, as it is made once per call)."""
        job: Job[T] = cls.__new__(cls)
        job.__init__(fn, args, kwargs, with_interface, context, owner)  # type: ignore[misc]
        return job

    def __init__(
        self,
        fn: Callable[..., Any] | str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        with_interface: bool,
        context: contextvars.Context,
        owner: Owner,
    ) -> None:
        # What to run; dropped once the job is done (the pool keeps nothing).
        self._fn: Callable[..., Any] | str | None = fn
        self._args: tuple[Any, ...] = args
        self._kwargs: dict[str, Any] = kwargs
        self._with_interface = with_interface
        self._context = context
        # Its end, in the owning loop's thread.
        self._owner = owner
        self._event: Event | None = None  # made when someone waits: queued jobs stay small
        self._outcome: Outcome[T] | None = None
        self._callbacks: list[Callable[[Outcome[T]], object]] | None = None
        self._place = self._slot = None
        self._cancel_requested = False
        self.worker_id = None
        self._wake = None
        self._requests = None
        self._abandoned = False
        #: When the pool accepted the job, on :func:`time.perf_counter`'s clock.
        self.submitted_at: float = perf_counter()
        self.started_at = self.finished_at = None

    def __repr__(self) -> str:
        if self._outcome is not None:
            state = "done"
        elif self.worker_id is not None:
            state = "running"
        else:
            state = "queued"
        return f"<trio_pool.Job {state} worker_id={self.worker_id}>"

    @property
    def done(self) -> bool:
        """True once the job has its Outcome."""
        return self._outcome is not None

    @property
    def outcome(self) -> Outcome[T] | None:
        """The job's Outcome, or None while it is queued or running.

        It is the same object that :meth:`wait` returns and that every
        done-callback receives, so unwrap it at most once.
        """
        return self._outcome

    async def wait(self) -> Outcome[T]:
        """Wait for the job to finish and return its Outcome.

        Cancellation: cancelling this wait leaves the job alone; it keeps its
        place in the queue, or keeps running. Use :meth:`cancel` to cancel the
        job itself.

        Raises:
            RuntimeError: if called from another thread or event loop than the
                pool's (nothing waits, and the pool's loop is not disturbed).
        """
        self._owner.check_loop()
        if self._outcome is None:
            await self._get_event().wait()
        else:
            await anyio.lowlevel.checkpoint()
        assert self._outcome is not None
        return self._outcome

    def cancel(self) -> bool:
        """Cancel the job (from the event-loop thread).

        A queued job is removed: it never runs, and its Outcome is an
        :class:`~outcome.Error` holding :class:`JobCancelled`. A running job is
        asked to stop: :func:`trio_pool.check_cancelled` raises inside it from
        now on. A finished job is left as it is.

        Returns:
            True if the job was removed before it started.

        Raises:
            RuntimeError: if called from another thread or event loop than the
                pool's; the job is left as it was.
        """
        self._owner.check_loop()
        return self._owner.cancel(self)

    def add_done_callback(self, callback: Callable[[Outcome[T]], object]) -> None:
        """Call ``callback(outcome)`` in the event-loop thread when the job is done.

        If the job is already done, the callback is called at once. An
        exception raised by a callback is logged on the ``trio_pool`` logger
        and does not stop the other callbacks.

        Raises:
            RuntimeError: if called from another thread or event loop than the pool's.
        """
        self._owner.check_loop()
        if self._outcome is None:
            if self._callbacks is None:
                self._callbacks = []
            self._callbacks.append(callback)
        else:
            _call_safely(callback, self._outcome)

    def _finish(self, result: Outcome[T]) -> None:
        """Store the Outcome, wake the waiters and run the callbacks (loop thread)."""
        self._outcome = result
        if self.finished_at is None:
            self.finished_at = perf_counter()
        self._fn = None
        self._args = ()
        self._kwargs = _NO_KWARGS
        if self._event is not None:
            self._event.set()
        if self._wake is not None:
            self._wake.set()
        callbacks, self._callbacks = self._callbacks, None
        for callback in callbacks or ():
            _call_safely(callback, result)

    def _get_event(self) -> Event:
        """The event set when the job finishes."""
        if self._event is None:
            self._event = self._owner.event()
            if self._outcome is not None:
                self._event.set()
        return self._event


def describe(job: Job[Any]) -> str:
    """What a running job runs, for a log line (loop thread)."""
    fn = job._fn
    return repr(fn) if isinstance(fn, str) else getattr(fn, "__qualname__", repr(fn))


def value_of(result: Outcome[T]) -> T:
    """``result.unwrap()`` for an Outcome that only the pool has seen (a run's): not marked used."""
    if isinstance(result, Value):
        value: T = result.value
        return value
    return result.unwrap()


def cancelled_outcome() -> Error:
    return Error(JobCancelled("the job was cancelled before it started"))


def is_cancellation(result: Outcome[Any]) -> bool:
    return isinstance(result, Error) and isinstance(result.error, JobCancelled)


def not_started_outcome(seconds: float) -> Error:
    return Error(NotStarted(f"no worker took the job within max_wait={seconds} s; it never ran"))


def is_not_started(result: Outcome[Any]) -> bool:
    return isinstance(result, Error) and isinstance(result.error, NotStarted)


def _call_safely(callback: Callable[[Any], object], result: Outcome[Any]) -> None:
    try:
        callback(result)
    except BaseException:  # raising into the loop's callback machinery would break it
        logging.getLogger("trio_pool").exception("a done-callback of a job raised")


@final
class LoopCall:
    """A job's request to run ``async_fn(*args)`` on the event loop (from_loop)."""

    __slots__ = ("args", "async_fn", "context", "done", "result")

    def __init__(
        self,
        async_fn: Callable[..., Awaitable[Any]],
        args: tuple[Any, ...],
        context: contextvars.Context,
    ) -> None:
        self.async_fn: Callable[..., Awaitable[Any]] = async_fn
        self.args: tuple[Any, ...] = args
        self.context = context  # a copy of the job's, to run the call in
        self.done: threading.Event = threading.Event()
        self.result: Outcome[Any] = Error(RuntimeError("the loop never answered"))

    def answer(self, result: Outcome[Any]) -> None:
        self.result = result
        self.done.set()


def ask_loop(
    post: Callable[[Callable[[], object]], None],
    route: Callable[[Job[Any], LoopCall], None],
    job: Job[Any],
    async_fn: Callable[..., Awaitable[Any]],
    args: tuple[Any, ...],
) -> Outcome[Any]:
    """From the job's thread: have ``route`` run ``async_fn(*args)`` on the loop; its Outcome."""
    call = LoopCall(async_fn, args, contextvars.copy_context())
    post(functools.partial(route, job, call))
    call.done.wait()
    return call.result
