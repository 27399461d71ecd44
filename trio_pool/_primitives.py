"""Thread primitives that work from worker threads and from tasks alike.

None of them needs a pool: ``run_in_thread`` (one call on a temporary thread),
``Shared`` (a thread-safe box), ``ThreadSafeLock`` (a lock held with ``with``
in a thread and ``async with`` in a task) and ``named_lock`` (the same lock
for the same key).
"""

from __future__ import annotations

import contextvars
import copy
import itertools
import threading
from collections import deque
from collections.abc import Awaitable, Callable, Hashable
from types import TracebackType
from typing import Any, Generic, ParamSpec, TypeVar, final

import outcome
import sniffio
from outcome import Outcome

from ._backend import Backend, current_backend
from ._calls import Calls
from ._checks import check_sync_callable
from ._hosts._shared import call_sync
from ._in_worker import context
from ._job import JobRecord, LoopCall, ask_loop
from ._statistics import Counters

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")

_thread_numbers = itertools.count(1)


async def run_in_thread(fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R:
    """Run ``fn(*args, **kwargs)`` on a new thread of its own; return its value.

    The pool's rules apply: any exception, :class:`BaseException` included,
    is raised with its traceback; the call runs in a copy of the caller's
    :mod:`contextvars` context; :func:`check_cancelled` and
    :func:`from_loop` work inside it.

    Cancellation: the caller waits for the thread to finish, while
    :func:`check_cancelled` raises :class:`JobCancelled` inside the call, so
    it can stop early; as for :meth:`Pool.run`, the caller then gets the
    call's result and its cancellation at its next checkpoint.
    """
    check_sync_callable(fn)
    backend = current_backend()
    await backend.cancellation_point()
    job: JobRecord = JobRecord(
        fn,
        args,
        kwargs,
        False,
        contextvars.copy_context(),
        _Caller(backend),
    )
    calls = Calls(backend, Counters(), _no_pool_scope, abandon_on_cancel=False)
    view = _ThreadCall(job, backend.post, calls.route)

    def body() -> None:
        context.job = view
        try:
            result = job.context.run(_call, fn, args, kwargs)
        finally:
            context.job = None
        backend.post(lambda: job.finish(result))  # the thread's last act

    thread = threading.Thread(
        target=body, name=f"trio_pool.run_in_thread-{next(_thread_numbers)}", daemon=True
    )
    thread.start()
    try:
        result = await calls.outcome_of(job)
    finally:
        if job.outcome is not None:
            thread.join()  # it has posted its result: it is leaving
    value: R = result.unwrap()
    return value


def _call(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Outcome[Any]:
    sniffio.current_async_library_cvar.set(None)  # no event loop in this thread
    return call_sync(fn, args, kwargs, outcome.Value, outcome.Error)


@final
class _Caller:
    """A run_in_thread() call's job belongs to its caller (the job's Owner)."""

    __slots__ = ("_backend", "event")

    def __init__(self, backend: Backend) -> None:
        self._backend = backend
        self.event = backend.event

    @staticmethod
    def cancel(job: JobRecord) -> bool:
        job.cancel_requested = True  # the caller left; the thread sees it in check_cancelled()
        return False

    def check_loop(self) -> None:
        if not self._backend.is_current():
            raise RuntimeError("a run_in_thread() call belongs to its caller's event loop")


def _no_pool_scope(*args: object, **kwargs: object) -> None:
    raise AssertionError("a run_in_thread() call always has its caller")  # pragma: no cover


@final
class _ThreadCall:
    """A run_in_thread() call, as the in-job functions see it (a JobView)."""

    __slots__ = ("_job", "_post", "_route")

    def __init__(
        self,
        job: JobRecord,
        post: Callable[[Callable[[], object]], None],
        route: Callable[[JobRecord, LoopCall], None],
    ) -> None:
        self._job = job
        self._post = post
        self._route = route

    def cancel_requested(self) -> bool:
        return self._job.cancel_requested

    def wait_for(self, key: Hashable, timeout: float | None) -> tuple[Any, ...]:
        raise RuntimeError("wait() must be called from a job in a pool's worker")

    def call_loop(
        self, async_fn: Callable[..., Awaitable[Any]], args: tuple[Any, ...]
    ) -> Outcome[Any]:
        return ask_loop(self._post, self._route, self._job, async_fn, args)


@final
class Shared(Generic[T]):
    """A thread-safe box for one value, usable from worker threads and tasks.

    The box keeps its own copy: :meth:`get` returns a snapshot (a deep
    copy), :meth:`set` stores a copy, and :meth:`modify` is an atomic
    read-modify-write. The lock is held only while copying and while
    ``modify``'s function runs, so keep that function short; from a task it
    runs on the event loop.
    """

    __slots__ = ("_lock", "_value")

    def __init__(self, value: T) -> None:
        self._lock = threading.Lock()
        self._value = copy.deepcopy(value)

    def __repr__(self) -> str:
        return f"<trio_pool.Shared {self.get()!r}>"

    def get(self) -> T:
        """A snapshot of the value: later changes to the box do not affect it."""
        with self._lock:
            return copy.deepcopy(self._value)

    def set(self, value: T) -> None:
        """Store a copy of ``value``."""
        value = copy.deepcopy(value)
        with self._lock:
            self._value = value

    def modify(self, fn: Callable[[T], T]) -> T:
        """Replace the value with ``fn(copy of value)``, atomically; return the new value.

        No other ``get``, ``set`` or ``modify`` runs in between, so no update
        is lost. If ``fn`` raises, the value is left as it was.
        """
        with self._lock:
            new = fn(copy.deepcopy(self._value))
            self._value = copy.deepcopy(new)
        return new


@final
class _Waiter:
    """A thread or task waiting for a ThreadSafeLock; ``grant()`` hands it over."""

    __slots__ = ("granted", "wake")

    def __init__(self, wake: Callable[[], object]) -> None:
        self.granted = False
        self.wake = wake


@final
class ThreadSafeLock:
    """A lock that worker threads hold with ``with`` and tasks with ``async with``.

    Waiting never blocks the event loop: a task waits as a task (and can be
    cancelled while it waits); a thread blocks. Waiters get the lock in the
    order they asked for it. It is not reentrant, and any holder may release
    it.
    """

    __slots__ = ("_locked", "_mutex", "_waiters")

    def __init__(self) -> None:
        self._mutex = threading.Lock()
        self._locked = False
        self._waiters: deque[_Waiter] = deque()

    def __repr__(self) -> str:
        return f"<trio_pool.ThreadSafeLock {'locked' if self._locked else 'unlocked'}>"

    def locked(self) -> bool:
        """Whether someone holds the lock."""
        return self._locked

    def _try_acquire(self) -> bool:  # with the mutex held
        if self._locked or self._waiters:
            return False
        self._locked = True
        return True

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        """Take the lock from a thread, like :meth:`threading.Lock.acquire`.

        Do not call it from the event loop's thread with ``blocking=True``:
        use ``async with lock`` there.
        """
        with self._mutex:
            if self._try_acquire():
                return True
            if not blocking:
                return False
            event = threading.Event()
            waiter = _Waiter(event.set)
            self._waiters.append(waiter)
        try:
            if event.wait(None if timeout < 0 else timeout):
                return True
        except BaseException:  # interrupted (Ctrl-C)
            self._withdraw(waiter)
            raise
        with self._mutex:
            if waiter.granted:  # granted just as the wait timed out
                return True
            self._waiters.remove(waiter)
            return False

    def release(self) -> None:
        """Release the lock, handing it to the longest waiter if there is one."""
        with self._mutex:
            if not self._locked:
                raise RuntimeError("release of an unlocked ThreadSafeLock")
            if not self._waiters:
                self._locked = False
                return
            waiter = self._waiters.popleft()
            waiter.granted = True  # ownership passes directly; _locked stays True
        waiter.wake()

    async def acquire_async(self) -> None:
        """Take the lock from a task, without blocking the event loop.

        Cancellation: cancelling the waiting task withdraws it from the queue
        (or, if the lock was handed to it meanwhile, passes the lock on).
        """
        backend = current_backend()
        await backend.cancellation_point()
        with self._mutex:
            if self._try_acquire():
                return
            event = backend.event()
            waiter = _Waiter(lambda: backend.post(event.set))
            self._waiters.append(waiter)
        try:
            await event.wait()
        except BaseException:  # cancelled
            self._withdraw(waiter)
            raise

    def _withdraw(self, waiter: _Waiter) -> None:
        """A waiter gives up: leave the queue, or pass on the lock it was just given."""
        with self._mutex:
            granted = waiter.granted
            if not granted:
                self._waiters.remove(waiter)
        if granted:
            self.release()

    def __enter__(self) -> None:
        self.acquire()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()

    async def __aenter__(self) -> None:
        await self.acquire_async()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


_named_locks: dict[Hashable, ThreadSafeLock] = {}
_named_locks_mutex = threading.Lock()


def named_lock(key: Hashable) -> ThreadSafeLock:
    """The :class:`ThreadSafeLock` for ``key``: the same lock for the same key.

    Any thread or task can use it (``with named_lock(5):`` in a worker,
    ``async with named_lock(5):`` in a task). Locks live as long as the
    process, one per key ever asked for.
    """
    hash(key)  # a clear TypeError for an unhashable key
    with _named_locks_mutex:
        lock = _named_locks.get(key)
        if lock is None:
            lock = _named_locks[key] = ThreadSafeLock()
        return lock
