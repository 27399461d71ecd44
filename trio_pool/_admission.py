"""Room in the shared queue: the pool's backpressure, shaped like trio's CapacityLimiter.

A place is taken by putting a job in the handoff right after
:meth:`Admission.acquire_nowait` or :meth:`Admission.acquire` returns,
before the next await; it is given back when a worker takes the job (seen on
the loop at the next delivery), or when the job is taken out. Waiters are let
in first come, first served, each with a place reserved until it runs. Loop
thread only, but for the handoff's flag that asks workers to wake the loop
when they take a job while tasks wait here.
"""

from __future__ import annotations

import heapq
import itertools
import weakref
from collections import deque
from collections.abc import Callable

import anyio

from ._backend import Event
from ._exceptions import QueueFull
from ._handoff import Handoff
from ._job import JobRecord


async def wait_or_shed(event: Event, seconds: float | None, what: str) -> None:
    """Wait for ``event``; with ``seconds`` (on the loop's clock), at most that long.

    Raises:
        QueueFull: if ``seconds`` passed first: no ``what`` within max_wait.
    """
    if seconds is None:
        await event.wait()
        return
    with anyio.move_on_after(seconds):
        await event.wait()
    if not event.is_set():
        raise QueueFull(f"no {what} within max_wait={seconds} s")


class Admission:
    def __init__(self, size: int, handoff: Handoff, new_event: Callable[[], Event]) -> None:
        self._size = size
        self._handoff = handoff
        self._new_event = new_event
        self._waiters: deque[Event] = deque()
        self._reserved = 0  # places promised to woken waiters that have not run yet
        self._closed = False

    @property
    def waiting(self) -> int:
        """Tasks waiting for room."""
        return len(self._waiters)

    def _room(self) -> bool:
        return self._handoff.queued + self._reserved < self._size

    def has_room(self) -> bool:
        """Whether a place can be taken now (nobody waits and the queue has room)."""
        return not self._waiters and self._room()

    def acquire_nowait(self) -> None:
        """Take a place, or raise :class:`QueueFull` (a ``WouldBlock``)."""
        if not self.has_room():
            raise QueueFull

    async def acquire(self, seconds: float | None = None) -> None:
        """Take a place, waiting for one first come, first served.

        Raises:
            QueueFull: if ``seconds`` (``max_wait``) passed first (the pool sheds load).

        Cancellation: a waiter cancelled after it was let in passes its place on.
        """
        if self.has_room():
            return
        event = self._new_event()
        self._waiters.append(event)
        self._handoff.want_room(True)
        # A worker may have taken a job before it could see the flag: look again.
        self.release()
        try:
            await wait_or_shed(event, seconds, "room in the queue")
        except BaseException:
            if event.is_set():  # pass the place on
                self._reserved -= 1
                self.release()
            else:
                self._waiters.remove(event)
                self._handoff.want_room(bool(self._waiters))
            raise
        self._reserved -= 1

    def release(self) -> None:
        """Room may have appeared (jobs left the queue): let waiters in."""
        waiters = self._waiters
        while waiters and (self._closed or self._room()):
            self._reserved += 1
            waiters.popleft().set()
        self._handoff.want_room(bool(waiters))

    def close(self) -> None:
        """Let every waiter in (to find the pool closed); later ones never wait."""
        self._closed = True
        self.release()


class Shedder:
    """Takes out, unrun, the jobs of waiting callers that no worker took within max_wait.

    ``watch(job, deadline)`` as each such job is accepted; one task of the
    pool (:meth:`run`) sleeps until the first deadline and then sheds every
    job still queued whose deadline has passed. Jobs are held weakly: a job
    delivered and dropped is gone. Loop thread only.
    """

    def __init__(self, new_event: Callable[[], Event], shed: Callable[[JobRecord], None]) -> None:
        """``shed(job)`` takes ``job`` out if it is still queued."""
        self._new_event = new_event
        self._shed = shed
        self._due: list[tuple[float, int, weakref.ref[JobRecord]]] = []  # a heap
        self._order = itertools.count()  # ties are shed in the order they came
        self._sooner = new_event()  # set when a watch comes due before the others
        self._scope = anyio.CancelScope()

    def watch(self, job: JobRecord, deadline: float) -> None:
        heapq.heappush(self._due, (deadline, next(self._order), weakref.ref(job)))
        if self._due[0][0] == deadline:
            self._sooner.set()

    async def run(self) -> None:
        """Shed jobs as they come due, until :meth:`close`."""
        with self._scope:
            while True:
                self._sooner = self._new_event()
                deadline = self._due[0][0] if self._due else float("inf")
                with anyio.CancelScope(deadline=deadline):
                    await self._sooner.wait()
                now = anyio.current_time()
                while self._due and self._due[0][0] <= now:
                    job = heapq.heappop(self._due)[2]()
                    if job is not None:
                        self._shed(job)

    def close(self) -> None:
        """Shed nothing more (the pool is closing: it finishes every accepted job)."""
        self._scope.cancel()
        self._due.clear()
