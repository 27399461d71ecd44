"""The event-loop adapter: trio and asyncio behind one small face.

Threads, task groups, limiters and cancel scopes come from anyio, which runs
on both. What anyio does not offer cheaply lives here: posting a callback to
the loop from a worker thread without a round trip, and a bare event.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import math
import signal
import socket
import threading
from collections.abc import Awaitable, Callable
from typing import Protocol

import anyio
import sniffio
import trio

#: Marks loop-side code that changes the pool's state in several steps. On trio,
#: a Ctrl-C that lands inside it is raised at the task's next checkpoint instead
#: (trio's KeyboardInterrupt protection), so no state is left half-changed; on
#: asyncio the runner turns Ctrl-C into a cancellation of the main task anyway.
ki_protected = trio.lowlevel.enable_ki_protection


class Event(Protocol):
    """What the pool needs of an event: :class:`trio.Event` or :class:`asyncio.Event`."""

    def set(self) -> None: ...
    def is_set(self) -> bool: ...
    def wait(self) -> Awaitable[object]: ...


class Waker(Event, Protocol):
    """An :class:`Event` used once, by at most one waiting task: a caller waiting for its jobs."""


class Backend(Protocol):
    """The running event loop, as the pool sees it."""

    def post(self, fn: Callable[[], object]) -> None:
        """Call ``fn()`` soon in the loop thread; safe from any thread.

        Does nothing once the loop has finished.
        """
        ...

    def event(self) -> Event:
        """A new event for this loop."""
        ...

    @property
    def waker(self) -> Callable[[Callable[[], object]], Waker]:
        """What makes a new :class:`Waker`: cheaper than an event, for one waiting task.

        It takes ``on_cancel``, called when the waiting task is cancelled, at
        that moment if the loop can tell (trio: in the same step as the
        ``cancel()``; asyncio: nothing, as the task sees it at its next step).
        """
        ...

    def current_time(self) -> float:
        """The loop's clock (trio's MockClock under test); callable from callbacks."""
        ...

    async def checkpoint(self) -> None:
        """Let other tasks run; raise the task's cancellation if there is one."""
        ...

    def is_current(self) -> bool:
        """Whether the calling thread runs this loop, now."""
        ...

    def watch_signals(self) -> Callable[[], None]:
        """Make sure a signal wakes the loop while the pool is open; returns the undo."""
        ...

    async def cancellation_point(self) -> None:
        """Raise the task's cancellation if there is one (cheapest way per loop).

        On asyncio this yields to the loop if a native ``Task.cancel()`` may
        be pending (``Task.cancelling()``; always on Python 3.10), as only a
        yield shows it.
        """
        ...


class _Trio:
    def __init__(self) -> None:
        self._token = trio.lowlevel.current_trio_token()

    def post(self, fn: Callable[[], object]) -> None:
        with contextlib.suppress(trio.RunFinishedError):
            self._token.run_sync_soon(fn)

    def event(self) -> Event:
        return trio.Event()

    @property
    def waker(self) -> Callable[[Callable[[], object]], Waker]:
        return _TrioWaker

    def is_current(self) -> bool:
        try:
            return trio.lowlevel.current_trio_token() is self._token
        except RuntimeError:  # no trio run in this thread
            return False

    def watch_signals(self) -> Callable[[], None]:
        return _nothing  # trio wakes itself with its own wakeup fd

    current_time = staticmethod(trio.current_time)
    checkpoint = staticmethod(trio.lowlevel.checkpoint)
    cancellation_point = staticmethod(trio.lowlevel.checkpoint_if_cancelled)


class _Asyncio:
    def __init__(self) -> None:
        self._loop = asyncio.get_running_loop()

    def post(self, fn: Callable[[], object]) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is closed
            self._loop.call_soon_threadsafe(fn)

    def event(self) -> Event:
        return asyncio.Event()

    @property
    def waker(self) -> Callable[[Callable[[], object]], Waker]:
        return self._new_waker

    def _new_waker(self, on_cancel: Callable[[], object]) -> Waker:
        return _AsyncioWaker(self._loop.create_future())

    def is_current(self) -> bool:
        return asyncio._get_running_loop() is self._loop

    def watch_signals(self) -> Callable[[], None]:
        """Give the loop a signal wakeup fd if it has none.

        asyncio's runner catches Ctrl-C with a plain ``signal.signal`` handler,
        which runs only once the main thread wakes; a signal that lands in a
        worker thread while the loop sleeps in select() wakes nothing, so one
        Ctrl-C could go unseen for as long as the jobs run.
        """
        if threading.current_thread() is not threading.main_thread():
            return _nothing
        reader, writer = socket.socketpair()
        reader.setblocking(False)
        writer.setblocking(False)
        try:
            previous = signal.set_wakeup_fd(writer.fileno(), warn_on_full_buffer=False)
        except ValueError:  # pragma: no cover (not the main thread after all)
            reader.close()
            writer.close()
            return _nothing
        if previous != -1:  # someone has one: leave it
            signal.set_wakeup_fd(previous)
            reader.close()
            writer.close()
            return _nothing

        def drain() -> None:
            with contextlib.suppress(OSError):
                while reader.recv(4096):
                    pass

        self._loop.add_reader(reader.fileno(), drain)

        def undo() -> None:
            if signal.set_wakeup_fd(-1) != writer.fileno():  # pragma: no cover
                pass  # someone replaced ours meanwhile; ours is gone anyway
            with contextlib.suppress(Exception):
                self._loop.remove_reader(reader.fileno())
            reader.close()
            writer.close()

        return undo

    def current_time(self) -> float:
        return self._loop.time()

    checkpoint = staticmethod(anyio.lowlevel.checkpoint)

    @staticmethod
    async def cancellation_point() -> None:
        """Yield to the loop only if a native ``Task.cancel()`` may be pending.

        Such a cancel shows only at a yield; a cancel scope's shows through
        anyio's own check, without one.
        """
        task = asyncio.current_task()
        cancelling = getattr(task, "cancelling", None)  # (Python 3.10 has none)
        if cancelling is None or cancelling():
            await anyio.lowlevel.checkpoint()
        else:
            await anyio.lowlevel.checkpoint_if_cancelled()


class _TrioWaker:
    """The task parked by trio itself: no ParkingLot, as ``trio.to_thread`` waits."""

    __slots__ = ("_on_cancel", "_set", "_task")

    def __init__(self, on_cancel: Callable[[], object]) -> None:
        self._set = False
        self._task: trio.lowlevel.Task | None = None
        self._on_cancel = on_cancel

    def is_set(self) -> bool:
        return self._set

    def set(self) -> None:
        if not self._set:
            self._set = True
            task, self._task = self._task, None
            if task is not None:
                trio.lowlevel.reschedule(task)

    def wait(self) -> Awaitable[object]:
        """Awaited at once (the task is parked by the await that follows)."""
        if self._set:
            return trio.lowlevel.checkpoint()  # noqa: ASYNC105 (the caller awaits it)
        self._task = trio.lowlevel.current_task()
        return trio.lowlevel.wait_task_rescheduled(self._abort)  # noqa: ASYNC105

    def _abort(self, _: object) -> trio.lowlevel.Abort:
        """The task is cancelled (or Ctrl-C'd): tell ``on_cancel`` now, as trio does its threads."""
        self._task = None
        self._on_cancel()
        return trio.lowlevel.Abort.SUCCEEDED


class _AsyncioWaker:
    """A bare future (an :class:`asyncio.Event` without its list of waiters)."""

    __slots__ = ("_future",)

    def __init__(self, future: asyncio.Future[None]) -> None:
        self._future = future

    def is_set(self) -> bool:
        future = self._future
        return future.done() and not future.cancelled()

    def set(self) -> None:
        if not self._future.done():
            self._future.set_result(None)

    def wait(self) -> Awaitable[object]:
        return self._future


def _nothing() -> None:
    pass


def current_backend() -> Backend:
    """The backend of the running event loop."""
    library = sniffio.current_async_library()
    if library == "trio":
        return _Trio()
    if library == "asyncio":
        return _Asyncio()
    raise RuntimeError(f"trio_pool runs on trio or asyncio, not on {library!r}")


async def wait_through_cancellation(event: Event) -> BaseException | None:
    """Wait for ``event`` even if the calling task is cancelled meanwhile.

    A shielded scope keeps out cancellation by scope, which the next
    checkpoint after the wait delivers. Native asyncio ``Task.cancel()`` gets
    through a shield: it is caught, the wait resumed, and the exception
    returned for the caller to re-raise (None if there was none). Anything
    else (Ctrl-C) propagates at once.
    """
    interruptions = await wait_through(event, anyio.get_cancelled_exc_class())
    return interruptions[0] if interruptions else None


async def wait_through(
    event: Event,
    absorb: type[BaseException] | tuple[type[BaseException], ...],
    *,
    once: bool = False,
    deadline: float = math.inf,
) -> list[BaseException]:
    """Wait for ``event``, absorbing exceptions of the ``absorb`` types; return them.

    ``once``: return after the first one absorbed, before the event is set.
    ``deadline`` (on the loop's clock): return then, set or not.
    """
    interruptions: list[BaseException] = []
    while not event.is_set():
        scope = anyio.CancelScope(shield=True, deadline=deadline)
        try:
            with scope:
                await event.wait()
        except absorb as exc:
            interruptions.append(exc)
            if once:
                break
        if scope.cancelled_caught:
            break
    return interruptions


FdWait = Callable[[int], Awaitable[None]]


def fd_waits() -> tuple[FdWait, FdWait]:
    """How the running loop waits for a file descriptor: (readable, writable).

    On asyncio, a loop with ``add_reader`` (not Windows' proactor loop).
    """
    if sniffio.current_async_library() == "trio":
        return trio.lowlevel.wait_readable, trio.lowlevel.wait_writable
    loop = asyncio.get_running_loop()
    return (
        functools.partial(_asyncio_fd_wait, loop.add_reader, loop.remove_reader),
        functools.partial(_asyncio_fd_wait, loop.add_writer, loop.remove_writer),
    )


async def _asyncio_fd_wait(
    add: Callable[..., object], remove: Callable[[int], object], fd: int
) -> None:
    future: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def ready() -> None:
        if not future.done():  # (the loop may call it again before the task runs)
            future.set_result(None)

    add(fd, ready)
    try:
        await future
    finally:
        remove(fd)


class LoopBell:
    """A loop-driven worker's wake-up: rung in the loop's thread, awaited by its task.

    As a thread's bell, a ring is kept until the worker waits, so a ring
    between its look at the handoff and its wait is not lost.
    """

    __slots__ = ("_event", "_new_event", "_rung")

    def __init__(self, new_event: Callable[[], Event]) -> None:
        self._new_event = new_event
        self._event: Event | None = None
        self._rung = False

    def ring(self) -> None:
        self._rung = True
        if self._event is not None:
            self._event.set()

    async def wait(self, seconds: float | None = None) -> bool:
        """Until rung (at most ``seconds`` if given); whether it was rung."""
        if not self._rung:
            self._event = event = self._new_event()
            try:
                if seconds is None:
                    await event.wait()
                else:
                    with anyio.move_on_after(seconds):
                        await event.wait()
            finally:
                self._event = None
        rung, self._rung = self._rung, False
        return rung
