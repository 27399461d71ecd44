"""The bounded handoff between the event loop and the worker threads.

Jobs go out through a shared deque that every free worker takes from, or
through a worker's own deque (a lease, a broadcast); outcomes come back
through another list, and the loop is woken once per batch of outcomes, not
once per job. A worker never waits for the loop before it takes its next job,
and a worker that finds jobs waiting takes the next without sleeping. Each
worker sleeps on its own :class:`Bell`, so a new job wakes exactly one idle
worker, the one idle most recently. The loop wakes a worker only when no
wake-up is on its way; a woken worker that takes a job wakes the next idle
worker if jobs are still waiting, so a burst of jobs costs the loop one
wake-up, not one per job.

The handoff owns every job's place in it (``Job._place``, ``Job._slot``,
``Job._cancel_requested``, ``Job.worker_id``) and every worker's
:class:`Slot`; all of it is written here only, under :attr:`Handoff.lock`.
The queue's bound is kept by :mod:`._admission`, on the loop side.
"""

from __future__ import annotations

import enum
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable, Iterable
from typing import Any

import outcome

from ._backend import LoopBell
from ._exceptions import JobCancelled
from ._hosts._base import NO_EXC, ExcInfo
from ._job import JobRecord

Delivery = list[tuple[JobRecord, outcome.Outcome[Any]]]


class _Asleep(enum.Enum):
    ASLEEP = "asleep"  # no job yet: the worker waits for its wake-up


_ASLEEP = _Asleep.ASLEEP


class Place(enum.Enum):
    """Where a job stands in the handoff."""

    QUEUED = "queued"  # in the shared deque, or in its slot's own
    RUNNING = "running"  # a worker took it
    OUT = "out"  # finished, or taken back out (cancelled, never to run)


class Phase(enum.Enum):
    """A worker's life, as its slot records it."""

    LOADING = "loading"
    SERVING = "serving"  # idle or busy: see Slot.running
    STOPPING = "stopping"  # out of jobs, running its exit hook
    STOPPED = "stopped"


_NEXT = {
    Phase.LOADING: (Phase.SERVING, Phase.STOPPED),  # loaded, or failed to
    Phase.SERVING: (Phase.STOPPING,),
    Phase.STOPPING: (Phase.STOPPED,),
    Phase.STOPPED: (),
}


class Bell:
    """A worker's wake-up: rung from any thread, waited for by that worker alone.

    A ring is kept until the worker waits (a binary semaphore, in C), so the
    worker lets go of the handoff's lock while it sleeps and a ring in
    between is not lost; a ring that finds it awake costs one more look.
    Unlike a ``threading.Condition``, waiting allocates nothing.
    """

    __slots__ = ("_rung",)

    def __init__(self) -> None:
        self._rung = threading.Lock()
        self._rung.acquire()  # held: not rung

    def ring(self) -> None:
        try:  # noqa: SIM105 (suppress() would cost three calls per ring)
            self._rung.release()
        except RuntimeError:  # rung already
            pass

    def wait(self, held: threading.Lock, timeout: float = -1) -> bool:
        """Sleep until rung (at most ``timeout`` seconds if given), with ``held`` let go.

        Returns:
            Whether it was rung (False: the timeout passed first).
        """
        held.release()
        try:
            return self._rung.acquire(timeout=timeout)
        finally:
            held.acquire()


class Slot:
    """One worker's place in the handoff. Every field: written here, under the lock.

    The loop reads ``phase``, ``running``, ``leased`` and ``stop_requested``
    without the lock for decisions that a moment's staleness cannot break
    (the worker's own thread moves them on only towards stopping).

    A worker runs one job at a time, except a loop-driven one with calls
    in flight (a Ray actor's queue): its ``running`` holds them in the order
    it took them, and it waits for more in the idle list behind every
    worker that runs nothing.
    """

    __slots__ = (
        "called",
        "closing",
        "direct",
        "exit_info",
        "id",
        "jobs_done",
        "leased",
        "mailbox",
        "phase",
        "renew_pending",
        "renewing",
        "running",
        "stop_requested",
        "wakeup",
    )

    def __init__(self, id: int, wakeup: Bell | LoopBell) -> None:  # noqa: A002
        self.id: int = id  # the worker's
        self.phase: Phase = Phase.LOADING
        self.running: list[JobRecord] = []  # the jobs it runs, in the order it took them
        self.jobs_done: int = 0
        self.direct: deque[JobRecord] = deque()  # jobs for this worker alone
        self.leased: bool = False
        self.stop_requested: bool = False
        self.renewing: bool = False  # it stops to be renewed (a new worker takes its place)
        self.renew_pending: bool = False  # due for renewal once its lease ends
        self.called: bool = False  # woken for the shared queue (counted in Handoff._waking)
        self.wakeup: Bell | LoopBell = wakeup
        self.mailbox: dict[Hashable, deque[tuple[Any, ...]]] = {}
        #: Why the worker stops, as its hook will be told.
        self.exit_info: ExcInfo = NO_EXC
        self.closing: bool = False  # its hook was given exit_info: too late to change it

    @property
    def job(self) -> JobRecord | None:
        """The job it took first of those it runs (None: it is idle)."""
        for job in self.running:  # (one look: a worker thread may end it meanwhile)
            return job
        return None

    @property
    def serving(self) -> bool:
        """Loaded (or loading) and not asked to stop."""
        return self.phase in (Phase.LOADING, Phase.SERVING) and not self.stop_requested

    def move_to(self, phase: Phase) -> None:
        """The one transition function of a worker's phase."""
        assert phase in _NEXT[self.phase], f"a worker cannot go from {self.phase} to {phase}"
        self.phase = phase


class Handoff:
    def __init__(
        self, post: Callable[[Callable[[], object]], None], deliver: Callable[[Delivery], None]
    ) -> None:
        """``post`` calls a function soon in the loop thread; ``deliver`` takes outcomes there."""
        self.lock: threading.Lock = threading.Lock()
        self._jobs: deque[JobRecord] = deque()
        self._idle: list[Slot] = []  # free workers asleep in take(), most recent last
        self._waking = 0  # idle workers woken for the shared queue, not yet awake
        self._draining = False
        self._finished: Delivery = []
        self._flush_posted = False
        self._post = post
        self._deliver = deliver
        # While tasks wait for queue room, a worker that takes a shared job
        # wakes the loop so that they can be let in (see want_room).
        self._room_wanted = False

    @property
    def queued(self) -> int:
        return len(self._jobs)

    @property
    def unserved(self) -> bool:
        """More jobs wait than idle workers and wake-ups on their way can take."""
        return len(self._jobs) > len(self._idle) + self._waking

    def new_slot(self, worker_id: int, wakeup: Bell | LoopBell | None = None) -> Slot:
        """A slot for a new worker: woken by ``wakeup`` (a thread's :class:`Bell` by default)."""
        return Slot(worker_id, Bell() if wakeup is None else wakeup)

    def _call_idle(self) -> Slot:
        """Call the most recently idle worker for the shared queue (lock held).

        The caller rings the returned slot's bell (after letting go of the
        lock where it can, so the woken worker does not wait for it).
        """
        slot = self._idle.pop()
        slot.called = True
        self._waking += 1
        return slot

    def _pass_on(self) -> None:
        """Wake an idle worker if more jobs wait than wake-ups are on their way."""
        if self._idle and len(self._jobs) > self._waking:
            self._call_idle().wakeup.ring()

    def _wake(self, slot: Slot) -> None:
        """Wake ``slot``'s worker if it sleeps (lock held)."""
        if slot in self._idle:
            self._idle.remove(slot)
        slot.wakeup.ring()

    @staticmethod
    def _take_out(jobs: Iterable[JobRecord]) -> list[JobRecord]:
        removed = list(jobs)
        for job in removed:
            job.place = Place.OUT
        return removed

    # --- loop side ------------------------------------------------------

    def want_room(self, wanted: bool) -> None:
        """Ask (or stop asking) to be woken when a worker takes a shared job."""
        self._room_wanted = wanted

    def put(self, job: JobRecord, slot: Slot | None = None) -> None:
        """Queue ``job`` for any free worker, or for ``slot``'s worker alone."""
        called = None
        with self.lock:
            job.place = Place.QUEUED
            job.slot = slot
            if slot is None:
                self._jobs.append(job)
                if self._idle and not self._waking:  # else the woken worker passes it on
                    called = self._call_idle()
            else:
                slot.direct.append(job)
                self._wake(slot)
        if called is not None:
            called.wakeup.ring()

    def cancel(self, job: JobRecord) -> bool:
        """Remove ``job`` if it is queued (True); ask it to stop if it runs."""
        with self.lock:
            if job.place is Place.QUEUED:
                slot: Slot | None = job.slot
                (self._jobs if slot is None else slot.direct).remove(job)
                job.place = Place.OUT
                return True
            if job.place is Place.RUNNING:
                job.cancel_requested = True
                job.slot.wakeup.ring()  # it may sleep in trio_pool.wait()
            return False

    def take_back_unserved(self, job: JobRecord) -> bool:
        """Remove ``job`` (True) if it waits in the shared queue with no worker on its way.

        Idle workers, and those woken for the queue, take the first jobs in
        it: a job among those is about to start and stays.
        """
        with self.lock:
            if job.place is not Place.QUEUED or job.slot is not None:
                return False
            if self._jobs.index(job) < len(self._idle) + self._waking:
                return False
            self._jobs.remove(job)
            job.place = Place.OUT
            return True

    def stop(self, slots: Iterable[Slot], *, cancel: ExcInfo | None = None) -> list[JobRecord]:
        """Let every worker stop once there is no work left for it.

        With ``cancel`` (the exception info their hooks receive), empty the
        queues first, returning the removed jobs for the pool to finish as
        cancelled, and ask the jobs that run to stop.
        """
        with self.lock:
            self._draining = True  # and leases end: leased workers finish the queue too
            removed: list[JobRecord] = []
            if cancel is not None:
                removed.extend(self._take_out(self._jobs))
                self._jobs.clear()
            for slot in slots:
                slot.leased = False
                if cancel is not None:
                    removed.extend(self._take_out(slot.direct))
                    slot.direct.clear()
                    if not slot.closing:
                        slot.exit_info = cancel
                    for job in slot.running:
                        job.cancel_requested = True
                slot.wakeup.ring()
            self._idle.clear()
            return removed

    def end_leases(self, slots: Iterable[Slot]) -> None:
        """Every leased worker serves the shared queue again (the pool is closing)."""
        with self.lock:
            for slot in slots:
                if slot.leased:
                    slot.leased = False
                    self._wake(slot)

    def outstanding(self, slots: Iterable[Slot]) -> list[JobRecord]:
        """The jobs in the queues and the ones that run."""
        with self.lock:
            jobs = list(self._jobs)
            for slot in slots:
                jobs.extend(slot.direct)
                jobs.extend(slot.running)
            return jobs

    def take_queued(self) -> list[JobRecord]:
        """Remove every job from the shared queue (for the pool to finish)."""
        with self.lock:
            removed = self._take_out(self._jobs)
            self._jobs.clear()
            return removed

    def take_direct(self, slot: Slot) -> list[JobRecord]:
        """Remove the jobs left for ``slot``'s worker alone (for the pool to finish)."""
        with self.lock:
            removed = self._take_out(slot.direct)
            slot.direct.clear()
            return removed

    def stop_worker(self, slot: Slot) -> None:
        """Let ``slot``'s worker stop once it has finished its current and own jobs."""
        with self.lock:
            slot.stop_requested = True
            self._wake(slot)

    def lease(self, slot: Slot) -> None:
        with self.lock:
            slot.leased = True
            if slot in self._idle:
                self._idle.remove(slot)

    def unlease(self, slot: Slot) -> bool:
        """The lease ends; True if the worker now stops to be renewed (it was due)."""
        with self.lock:
            slot.leased = False
            self._wake(slot)  # it may take shared jobs again, or stop
            if slot.renew_pending:
                slot.renew_pending = False
                return self._renew(slot)
            return False

    def renew(self, slot: Slot) -> bool:
        """``slot``'s worker is due for renewal (from its thread, before it hands back its job).

        It stops once its current and own jobs are done, and True is
        returned; if it is leased, it is renewed when the lease ends
        (:meth:`unlease` says so); while the pool closes, it is not renewed.
        """
        with self.lock:
            if slot.leased:
                slot.renew_pending = True
                return False
            return self._renew(slot)

    def _renew(self, slot: Slot) -> bool:
        if self._draining or slot.stop_requested:
            return False
        slot.stop_requested = slot.renewing = True
        self._wake(slot)  # (a worker with calls in flight may wait for more)
        return True

    def notify(self, slot: Slot, key: Hashable, values: tuple[Any, ...]) -> None:
        with self.lock:
            slot.mailbox.setdefault(key, deque()).append(values)
            slot.wakeup.ring()

    def flush(self) -> None:
        """Deliver the finished jobs (loop thread)."""
        with self.lock:
            batch, self._finished = self._finished, []
            self._flush_posted = False
        self._deliver(batch)

    # --- worker side ----------------------------------------------------

    def loaded(self, slot: Slot, ok: bool) -> None:
        """The worker's interface has loaded (or failed to: it stops)."""
        with self.lock:
            slot.move_to(Phase.SERVING if ok else Phase.STOPPED)

    def leave(self, slot: Slot) -> None:
        """The worker stops at once, its own jobs left (its host died).

        A worker with calls in flight may have been waiting for more: it
        is no longer idle, and a wake-up meant for it goes to another.
        """
        with self.lock:
            slot.stop_requested = True
            self._woken(slot)
            self._pass_on()
            self._stopping(slot)

    def closing(self, slot: Slot) -> ExcInfo:
        """The worker runs its exit hook now: what the hook is told (it changes no more)."""
        with self.lock:
            slot.closing = True
            return slot.exit_info

    def closed(self, slot: Slot) -> None:
        """The worker has run its exit hook."""
        with self.lock:
            slot.move_to(Phase.STOPPED)

    def take(self, slot: Slot, done: list[outcome.Outcome[Any]] | None = None) -> JobRecord | None:
        """The next job for ``slot``'s worker thread, or None when it should stop.

        ``done``: the worker's list holding the Outcome of the job it ran, if
        any; it is handed back first (as :meth:`finish` does), under the same
        hold of the lock, and the list emptied.
        """
        assert isinstance(slot.wakeup, Bell)
        with self.lock:
            post = self._hand_back(slot, done)
            while (job := self._next(slot)) is _ASLEEP:
                if post:  # before sleeping: the loop must not wait for this outcome
                    self._post(self.flush)
                    post = False
                slot.wakeup.wait(self.lock)
                self._woken(slot)
            post = self._started(slot, job) or post
        if post:
            self._post(self.flush)
        return job

    async def take_on_loop(self, slot: Slot, done: list[outcome.Outcome[Any]]) -> JobRecord | None:
        """:meth:`take`, for a loop-driven worker's task (in the loop's thread).

        Finished jobs are delivered at once, from the task: no wake-up of
        the loop is needed to tell their callers.
        """
        assert isinstance(slot.wakeup, LoopBell)
        with self.lock:
            deliver = self._hand_back(slot, done)
        if deliver:
            self.flush()
        while True:
            with self.lock:
                job = self._next(slot)
                if job is not _ASLEEP:
                    deliver = self._started(slot, job)
                    break
            await slot.wakeup.wait()
            with self.lock:
                self._woken(slot)
        if deliver:
            self.flush()
        return job

    def _hand_back(self, slot: Slot, done: list[outcome.Outcome[Any]] | None) -> bool:
        """Record the Outcome in ``done``, if any (lock held); True if the loop must be woken."""
        if not done:
            return False
        return self._finished_one(slot, done.pop())

    def _next(self, slot: Slot) -> JobRecord | _Asleep | None:
        """``slot``'s next job, None if it should stop, or _ASLEEP: wait for a ring (lock held)."""
        if slot.direct:
            return slot.direct.popleft()
        if slot.stop_requested:
            self._stopping(slot)
            self._pass_on()  # a wake-up may have been meant for a job
            return None
        if self._jobs and not slot.leased:
            return self._jobs.popleft()
        if self._draining:
            self._stopping(slot)
            return None
        if slot.leased:
            self._pass_on()  # a wake-up may have been meant for a job
        elif slot.running:  # it has calls in flight: called after every idle worker
            self._idle.insert(0, slot)
        else:
            self._idle.append(slot)
        return _ASLEEP

    @staticmethod
    def _stopping(slot: Slot) -> None:
        """``slot``'s worker takes no more jobs (lock held).

        It may have stopped taking already: one of its calls in flight met
        its host's death, while another was being woken for a job.
        """
        if slot.phase is Phase.SERVING:
            slot.move_to(Phase.STOPPING)

    def _woken(self, slot: Slot) -> None:
        """``slot``'s worker is awake again (lock held)."""
        if slot.called:
            slot.called = False
            self._waking -= 1
        elif slot in self._idle:  # woken by something else than a new job
            self._idle.remove(slot)

    def _started(self, slot: Slot, job: JobRecord | None) -> bool:
        """``slot``'s worker runs ``job`` now (lock held); True if the loop must be woken."""
        if job is None:
            return False
        self._pass_on()  # jobs still waiting: wake the next worker
        job.place = Place.RUNNING
        post = False
        if self._room_wanted and not self._flush_posted and job.slot is None:
            post = self._flush_posted = True
        job.slot = slot
        job.worker_id = slot.id
        slot.running.append(job)
        return post

    def _finished_one(
        self, slot: Slot, result: outcome.Outcome[Any], job: JobRecord | None = None
    ) -> bool:
        """Record the outcome of ``slot``'s ``job`` (by default its only one) (lock held).

        Returns:
            True if the loop must be woken.
        """
        if job is None:
            job = slot.running.pop()
            assert not slot.running
        else:
            slot.running.remove(job)
        job.place = Place.OUT
        slot.jobs_done += 1
        self._finished.append((job, result))
        if self._flush_posted:
            return False
        self._flush_posted = True
        return True

    def finish(
        self, slot: Slot, result: outcome.Outcome[Any], job: JobRecord | None = None
    ) -> None:
        """Hand back the worker's finished ``job`` (its only one by default).

        The loop is woken unless a wake-up is pending.
        """
        with self.lock:
            post = self._finished_one(slot, result, job)
        if post:
            self._post(self.flush)

    def finish_on_loop(self, slot: Slot, job: JobRecord, result: outcome.Outcome[Any]) -> None:
        """:meth:`finish`, for a loop-driven worker with calls in flight: delivered at once.

        If the worker now runs nothing and waits for jobs, it is called
        before the workers still busy.
        """
        with self.lock:
            deliver = self._finished_one(slot, result, job)
            if not slot.running and slot in self._idle and not slot.called:
                self._idle.remove(slot)
                self._idle.append(slot)
        if deliver:
            self.flush()

    def wait_for(
        self, slot: Slot, job: JobRecord, key: Hashable, timeout: float | None
    ) -> tuple[Any, ...]:
        """Block ``slot``'s job until ``notify(slot, key, ...)``; return the values."""
        assert isinstance(slot.wakeup, Bell)
        deadline = None if timeout is None else time.monotonic() + timeout
        with self.lock:
            while (values := self._mail(slot, job, key, deadline, timeout)) is None:
                if deadline is None:
                    slot.wakeup.wait(self.lock)
                else:
                    slot.wakeup.wait(self.lock, max(0.0, deadline - time.monotonic()))
            return values

    async def wait_for_on_loop(
        self, slot: Slot, job: JobRecord, key: Hashable, timeout: float | None
    ) -> tuple[Any, ...]:
        """:meth:`wait_for`, for a loop-driven worker's task (in the loop's thread)."""
        assert isinstance(slot.wakeup, LoopBell)
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            with self.lock:
                values = self._mail(slot, job, key, deadline, timeout)
            if values is not None:
                return values
            await slot.wakeup.wait(
                None if deadline is None else max(0.0, deadline - time.monotonic())
            )

    def _mail(
        self,
        slot: Slot,
        job: JobRecord,
        key: Hashable,
        deadline: float | None,
        timeout: float | None,
    ) -> tuple[Any, ...] | None:
        """The values notified for ``key``, or None: wait on (lock held).

        Raises:
            JobCancelled: the job should stop.
            TimeoutError: ``deadline`` has passed.
        """
        box = slot.mailbox.get(key)
        if box:
            values = box.popleft()
            if not box:
                del slot.mailbox[key]
            return values
        if job.cancel_requested:
            raise JobCancelled("the caller of this job is gone")
        if deadline is not None and deadline - time.monotonic() <= 0:
            raise TimeoutError(f"no notify for {key!r} within {timeout} seconds")
        return None
