"""What a job can ask about the worker it runs in.

A leaf. The host, on the far side of the seam, fills in :data:`context` for
the thread that runs the interface (a pool's worker thread for threads; the
child's one thread for processes): the worker, its interface, its operation
lookup, and a :class:`JobView` of the job that runs.
"""

from __future__ import annotations

import functools
import inspect
import threading
import types
from collections.abc import Awaitable, Callable, Hashable
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, final, overload

from ._errors import JobCancelled

if TYPE_CHECKING:  # (a far side never loads outcome)
    from outcome import Outcome

R = TypeVar("R")
I = TypeVar("I")  # noqa: E741


class JobView(Protocol):
    """The running job, as the functions below reach it."""

    def cancel_requested(self) -> bool:
        """True once the job should stop."""
        ...

    def wait_for(self, key: Hashable, timeout: float | None) -> tuple[Any, ...]:
        """Block until ``pool.notify(worker_id, key, ...)``; the notified values."""
        ...

    def call_loop(
        self, async_fn: Callable[..., Awaitable[Any]], args: tuple[Any, ...]
    ) -> Outcome[Any]:
        """Run ``async_fn(*args)`` on the event loop, for this job; its Outcome."""
        ...


@final
class WorkerInfo:
    """The worker thread a job runs in, from :func:`current_worker`.

    Attributes:
        id: The worker's id: an ``int``, unique in its pool, never reused.
        name: The worker thread's name, ``"<pool name>-worker-<id>"``. The
            operating system (``top -H``, ``py-spy``, ``/proc``) sees the
            thread as ``"<pool name>-<id>"``, cut to 15 bytes. Both names go
            back to what they were when the thread returns to trio's or
            anyio's thread cache.
        local: A namespace private to this worker that lasts from one job to
            the next (a cache, a counter, a prepared statement).
    """

    __slots__ = ("id", "local", "name")

    def __init__(self, id: int, name: str) -> None:  # noqa: A002
        self.id: int = id
        self.name: str = name
        self.local: types.SimpleNamespace = types.SimpleNamespace()

    def __repr__(self) -> str:
        return f"<trio_pool.WorkerInfo id={self.id} name={self.name!r}>"


class _Context(threading.local):
    """Written by the host that runs in this thread (see above), or by run_in_thread."""

    worker: WorkerInfo | None = None
    interface: Any = None
    has_interface = False
    operation: Callable[[str], Callable[..., Any]] | None = None
    job: JobView | None = None


context = _Context()


def current_worker() -> WorkerInfo:
    """The worker this thread is (its id, name and ``local`` namespace).

    Raises:
        RuntimeError: if called outside a pool's worker thread.
    """
    worker = context.worker
    if worker is None:
        raise RuntimeError("current_worker() must be called in a trio_pool worker thread")
    return worker


@overload
def current_interface() -> Any: ...
@overload
def current_interface(kind: type[I], /) -> I: ...
def current_interface(kind: type[Any] | None = None, /) -> Any:
    """The interface object of the worker this thread is.

    ``current_interface(Db)`` is the typed form: it returns the interface as
    a ``Db`` for type checkers, and checks that it is one (unless ``Db`` is a
    protocol that is not :func:`~typing.runtime_checkable`, which cannot be
    checked at run time). mypy refuses an abstract class or a protocol there
    (``type-abstract``); annotate ``db: Db = current_interface()`` instead.

    Raises:
        RuntimeError: if called outside a pool's worker thread, or before the
            worker's interface has loaded.
        TypeError: if ``kind`` is given and the interface is not an instance of it.
    """
    if not context.has_interface:
        raise RuntimeError(
            "current_interface() must be called in a trio_pool worker thread whose "
            "interface has loaded"
        )
    interface = context.interface
    checkable = not getattr(kind, "_is_protocol", False) or getattr(
        kind, "_is_runtime_protocol", False
    )
    if kind is not None and checkable and not isinstance(interface, kind):
        raise TypeError(f"the worker's interface is {interface!r}, not a {kind.__name__}")
    return interface


def check_cancelled() -> None:
    """Raise :class:`JobCancelled` if the current job should stop.

    A job is told to stop when its caller is cancelled while it runs, when
    :meth:`Job.cancel` is called, or when the pool shuts down because of an
    error or a cancellation. Long jobs call this now and then to stop early.

    Raises:
        JobCancelled: if the job should stop.
        RuntimeError: if called outside a job in a worker thread.
    """
    if current_job("check_cancelled").cancel_requested():
        raise JobCancelled("the caller of this job is gone")


def current_job(name: str) -> JobView:
    job = context.job
    if job is None:
        raise RuntimeError(f"{name}() must be called from a job in a trio_pool worker")
    return job


def operation(name: str) -> Callable[..., Any]:
    """The operation ``name`` of this worker's interface (for pool.map)."""
    lookup = context.operation
    if lookup is None:
        raise RuntimeError("operation() must be called from a job in a pool's worker")
    return lookup(name)


def wait(event: Hashable, timeout: float | None = None) -> tuple[Any, ...]:
    """Block this worker until ``pool.notify(worker_id, event, *values)``.

    A notify that came first is not lost: ``wait`` returns it at once.
    Notifies for the same event are returned in order, one per ``wait``.

    Args:
        event: Any hashable key naming what to wait for.
        timeout: Seconds to wait at most, or None to wait as long as it takes.

    Returns:
        The notified values, as a tuple.

    Raises:
        TimeoutError: if no notify came within ``timeout``.
        JobCancelled: if the job is cancelled while it waits (its caller was
            cancelled, :meth:`Job.cancel`, or the pool is stopping on an error).
        RuntimeError: if called outside a job in a worker thread.
    """
    if timeout is not None:
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
            raise TypeError(f"timeout must be a number of seconds or None, not {timeout!r}")
        if timeout < 0:
            raise ValueError(f"timeout must not be negative, not {timeout}")
    return current_job("wait").wait_for(event, timeout)


def from_loop(async_fn: Callable[..., Awaitable[R]], *args: object) -> R:
    """Run ``await async_fn(*args)`` on the event loop, from a job; return its value.

    It runs in the task that waits for the job (``run``, ``call``, a lease's
    calls, ``broadcast``, :func:`run_in_thread`), inside that caller's cancel
    scope; for a job nobody waits for (``submit``), in the pool's own scope,
    where :meth:`Job.cancel` cancels it. It runs in a copy of the job's
    context variables: it sees what the job set, and what it sets stays
    there. The worker blocks meanwhile.

    Unlike ``trio.from_thread.run`` or ``anyio.from_thread.run`` in a job,
    which run in the worker's own task (the pool's scope, for as long as the
    pool lives), this stays in the caller's scope: the caller's deadline
    reaches it.

    Raises:
        BaseException: whatever ``async_fn`` raised.
        JobCancelled: if the caller was cancelled, or is gone, or the pool is
            stopping on an error: it raises at once instead of hanging.
        RuntimeError: if called outside a job in a worker thread.
        TypeError: if ``async_fn`` is not an async function (nothing runs).
    """
    job = current_job("from_loop")
    if _is_sync_function(async_fn):
        raise TypeError(
            f"from_loop() takes an async function, but {async_fn!r} appears to be "
            "synchronous; call it here in the job instead"
        )
    result: R = job.call_loop(async_fn, args).unwrap()
    return result


def _is_sync_function(fn: object) -> bool:
    """A plain function, method or builtin that is not ``async def`` (partials unwrapped)."""
    while isinstance(fn, functools.partial):
        fn = fn.func
    if inspect.isbuiltin(fn):
        return True
    if inspect.isfunction(fn) or inspect.ismethod(fn):
        return not (
            inspect.iscoroutinefunction(fn)
            or inspect.isasyncgenfunction(fn)
            or hasattr(fn, "_is_coroutine_marker")
        )
    return False  # another callable may return an awaitable: the loop side checks
