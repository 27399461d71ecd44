"""A job: the pool's record of it (:class:`JobRecord`) and the user's handle (:class:`Job`).

A leaf: it imports no worker and no pool. The record's fields written by
other modules are listed with their writer; each field has one.
"""

from __future__ import annotations

import contextvars
import functools
import logging
import threading
import weakref
from collections.abc import Awaitable, Callable
from time import perf_counter
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar, final

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

    def cancel(self, job: JobRecord) -> bool:
        """:meth:`Job.cancel`, in the owning loop's thread."""
        ...

    def check_loop(self) -> None:
        """Raise RuntimeError unless called in the owning loop's thread, under its run."""
        ...


class JobRecord:
    """A job inside the pool: what to run, where it stands, its one Outcome.

    Users hold its :class:`Job` (:attr:`job`, made on first use: ``pool.run``
    makes none). Each field has one writer, named beside it.
    """

    __slots__ = (
        "__weakref__",  # (a shedding pool watches its callers' jobs, weakly)
        "_job",
        "_job_ref",
        "abandoned",
        "args",
        "callbacks",
        "cancel_requested",
        "context",
        "event",
        "finished_at",
        "fn",
        "kwargs",
        "outcome",
        "owner",
        "place",
        "requests",
        "slot",
        "started_at",
        "submitted_at",
        "wake",
        "with_interface",
        "worker_id",
    )

    def __init__(
        self,
        fn: Callable[..., Any] | str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        with_interface: bool,
        context: contextvars.Context,
        owner: Owner,
    ) -> None:
        # What to run; dropped by finish() (the pool keeps nothing of a done job).
        self.fn: Callable[..., Any] | str | None = fn
        self.args: tuple[Any, ...] = args
        self.kwargs: dict[str, Any] = kwargs
        self.with_interface: bool = with_interface
        self.context: contextvars.Context = context
        self.owner: Owner = owner
        # Written by _handoff, under its lock (the worker thread reads
        # cancel_requested without it): where the job stands in the handoff (a
        # _handoff.Place, None until the job is put there), the worker slot it
        # is for or runs on, the cancel request, and the id of the worker that
        # took it. (A run_in_thread job is in no handoff: _primitives writes
        # its cancel request.)
        self.place: Any = None
        self.slot: Any = None
        self.cancel_requested: bool = False
        self.worker_id: int | None = None
        # Written by _calls, in the loop thread: the caller's wake-up while a
        # caller waits (None otherwise), its from_loop() requests, and whether
        # the caller abandoned the job.
        self.wake: Waker | None = None
        self.requests: list[Any] | None = None
        self.abandoned: bool = False
        # Written by the worker's thread (finish() too, for a job that never ran),
        # on time.perf_counter's clock.
        self.submitted_at: float = perf_counter()
        self.started_at: float | None = None
        self.finished_at: float | None = None
        # Written by finish() and add_done_callback(), in the loop thread.
        self.event: Event | None = None  # made when someone waits: queued jobs stay small
        self.outcome: Outcome[Any] | None = None
        self.callbacks: list[Callable[[Outcome[Any]], object]] | None = None
        # The user's handle: held until the job is complete, then only weakly
        # (the handle holds this record: no cycle outlives the job).
        self._job: Job[Any] | None = None
        self._job_ref: weakref.ref[Job[Any]] | None = None

    @property
    def job(self) -> Job[Any]:
        """The user's handle on this job."""
        job = self._job
        if job is None:
            job = None if self._job_ref is None else self._job_ref()
            if job is None:
                job = Job(self)
                if self.outcome is None:
                    self._job = job
                else:
                    self._job_ref = weakref.ref(job)
        return job

    def forget_handle(self) -> None:
        """The job is complete and told: hold its handle (which holds this record) weakly.

        So a finished job that nobody holds is freed at once, not left to the
        cycle collector (``submit_nowait`` in a loop makes many), and one that
        somebody holds stays the same object for whoever asks for it next.
        """
        if self._job is not None:
            self._job_ref = weakref.ref(self._job)
            self._job = None

    def finished(self) -> Event:
        """The event set when the job finishes (loop thread)."""
        if self.event is None:
            self.event = self.owner.event()
            if self.outcome is not None:
                self.event.set()
        return self.event

    def cancel(self) -> bool:
        """:meth:`Job.cancel` (loop thread)."""
        return self.owner.cancel(self)

    def add_done_callback(self, callback: Callable[[Outcome[Any]], object]) -> None:
        """:meth:`Job.add_done_callback` (loop thread)."""
        if self.outcome is None:
            if self.callbacks is None:
                self.callbacks = []
            self.callbacks.append(callback)
        else:
            _call_safely(callback, self.outcome)

    def finish(self, result: Outcome[Any]) -> None:
        """Store the Outcome, wake the waiters and run the callbacks (loop thread)."""
        self.outcome = result
        if self.finished_at is None:
            self.finished_at = perf_counter()
        self.fn = None
        self.args = ()
        self.kwargs = _NO_KWARGS
        if self.event is not None:
            self.event.set()
        if self.wake is not None:
            self.wake.set()
        callbacks, self.callbacks = self.callbacks, None
        for callback in callbacks or ():
            _call_safely(callback, result)


@final
class _NoPublicConstructor(type):
    """``Job(...)`` raises TypeError: only the pool's :class:`JobRecord` makes one."""

    def __call__(cls, *args: object, **kwargs: object) -> Any:
        if len(args) == 1 and not kwargs and type(args[0]) is JobRecord:
            return super().__call__(*args)
        raise TypeError(
            f"{cls.__module__.split('.')[0]}.{cls.__qualname__} has no public constructor: "
            "a pool makes jobs (pool.submit(...))"
        )


class Job(Generic[T], metaclass=_NoPublicConstructor):
    """Work accepted by a pool, collected later with :meth:`wait`.

    Returned by :meth:`Pool.submit` and :meth:`Pool.submit_nowait`; there is
    no public constructor (calling ``Job(...)`` raises :exc:`TypeError`).
    """

    __slots__ = ("__weakref__", "_record")

    def __init__(self, record: JobRecord) -> None:
        self._record = record

    def __repr__(self) -> str:
        record = self._record
        if record.outcome is not None:
            state = "done"
        elif record.worker_id is not None:
            state = "running"
        else:
            state = "queued"
        return f"<trio_pool.Job {state} worker_id={record.worker_id}>"

    @property
    def worker_id(self) -> int | None:
        """The id of the worker that ran the job, or None if none has (yet)."""
        return self._record.worker_id

    @property
    def submitted_at(self) -> float:
        """When the pool accepted the job, on :func:`time.perf_counter`'s clock."""
        return self._record.submitted_at

    @property
    def started_at(self) -> float | None:
        """When a worker started running the job, on :func:`time.perf_counter`'s
        clock; None until then, and for a job that never ran."""
        return self._record.started_at

    @property
    def finished_at(self) -> float | None:
        """When the job finished running, on :func:`time.perf_counter`'s clock (for
        a job that never ran, when it got its Outcome); None until then."""
        return self._record.finished_at

    @property
    def done(self) -> bool:
        """True once the job has its Outcome."""
        return self._record.outcome is not None

    @property
    def outcome(self) -> Outcome[T] | None:
        """The job's Outcome, or None while it is queued or running.

        It is the same object that :meth:`wait` returns and that every
        done-callback receives, so unwrap it at most once.
        """
        return self._record.outcome

    async def wait(self) -> Outcome[T]:
        """Wait for the job to finish and return its Outcome.

        Cancellation: cancelling this wait leaves the job alone; it keeps its
        place in the queue, or keeps running. Use :meth:`cancel` to cancel the
        job itself.

        Raises:
            RuntimeError: if called from another thread or event loop than the
                pool's (nothing waits, and the pool's loop is not disturbed).
        """
        record = self._record
        record.owner.check_loop()
        if record.outcome is None:
            await record.finished().wait()
        else:
            await anyio.lowlevel.checkpoint()
        assert record.outcome is not None
        return record.outcome

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
        self._record.owner.check_loop()
        return self._record.cancel()

    def add_done_callback(self, callback: Callable[[Outcome[T]], object]) -> None:
        """Call ``callback(outcome)`` in the event-loop thread when the job is done.

        If the job is already done, the callback is called at once. An
        exception raised by a callback is logged on the ``trio_pool`` logger
        and does not stop the other callbacks.

        Raises:
            RuntimeError: if called from another thread or event loop than the pool's.
        """
        self._record.owner.check_loop()
        self._record.add_done_callback(callback)


def describe(job: JobRecord) -> str:
    """What a running job runs, for a log line (loop thread)."""
    fn = job.fn
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
        done: Event | None = None,
    ) -> None:
        """``done``: what the asking side waits on (a thread's event by default)."""
        self.async_fn: Callable[..., Awaitable[Any]] = async_fn
        self.args: tuple[Any, ...] = args
        self.context = context  # a copy of the job's, to run the call in
        self.done: threading.Event | Event = threading.Event() if done is None else done
        self.result: Outcome[Any] = Error(RuntimeError("the loop never answered"))

    def answer(self, result: Outcome[Any]) -> None:
        self.result = result
        self.done.set()


def ask_loop(
    post: Callable[[Callable[[], object]], None],
    route: Callable[[JobRecord, LoopCall], None],
    job: JobRecord,
    async_fn: Callable[..., Awaitable[Any]],
    args: tuple[Any, ...],
) -> Outcome[Any]:
    """From the job's thread: have ``route`` run ``async_fn(*args)`` on the loop; its Outcome."""
    call = LoopCall(async_fn, args, contextvars.copy_context())
    post(functools.partial(route, job, call))
    call.done.wait()
    return call.result
