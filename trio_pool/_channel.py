"""The bounded handoff between the event loop and the worker threads.

Jobs go out through a shared deque that every free worker takes from, or
through a worker's own deque (a lease, a broadcast); outcomes come back
through another deque, and the loop is woken once per batch of outcomes, not
once per job. A worker never waits for the loop before it takes its next job,
and a worker that finds jobs waiting takes the next without sleeping. Each
worker sleeps on its own condition, so a new job wakes exactly one idle
worker, the one idle most recently. The loop wakes a worker only when no
wake-up is on its way; a woken worker that takes a job wakes the next idle
worker if jobs are still waiting, so a burst of jobs costs the loop one
wake-up, not one per job. The queue's bound (backpressure) is kept by the
pool, on the loop side.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Hashable, Iterable
from typing import TYPE_CHECKING, Any

import outcome

from ._exceptions import JobCancelled
from ._job import Job, State

if TYPE_CHECKING:
    from ._host import ExcInfo
    from ._worker import Worker

Delivery = list[tuple[Job[Any], outcome.Outcome[Any]]]


class Channel:
    def __init__(
        self, post: Callable[[Callable[[], object]], None], deliver: Callable[[Delivery], None]
    ) -> None:
        self.lock: threading.Lock = threading.Lock()
        self._jobs: deque[Job[Any]] = deque()
        self._idle: list[Worker] = []  # free workers asleep in take(), most recent last
        self._waking = 0  # idle workers woken for the shared queue, not yet awake
        self._draining = False
        self._finished: Delivery = []
        self._flush_posted = False
        self.post = post
        self._deliver = deliver
        #: Set by the pool while tasks wait for queue room: a worker that takes
        #: a job then wakes the loop so they can be let in.
        self.room_wanted = False

    @property
    def queued(self) -> int:
        return len(self._jobs)

    @property
    def unserved(self) -> bool:
        """More jobs wait than idle workers and wake-ups on their way can take."""
        return len(self._jobs) > len(self._idle) + self._waking

    def new_condition(self) -> threading.Condition:
        return threading.Condition(self.lock)

    def _call_idle(self) -> None:
        """Wake the most recently idle worker for the shared queue (lock held)."""
        worker = self._idle.pop()
        worker.called = True
        self._waking += 1
        worker.wakeup.notify()

    def _pass_on(self) -> None:
        """Wake an idle worker if more jobs wait than wake-ups are on their way."""
        if self._idle and len(self._jobs) > self._waking:
            self._call_idle()

    def _wake(self, worker: Worker) -> None:
        """Wake ``worker`` if it sleeps (lock held)."""
        if worker in self._idle:
            self._idle.remove(worker)
        worker.wakeup.notify()

    # --- loop side ------------------------------------------------------

    def put(self, job: Job[Any], worker: Worker | None = None) -> None:
        """Queue ``job`` for any free worker, or for ``worker`` alone."""
        with self.lock:
            if worker is None:
                self._jobs.append(job)
                if self._idle and not self._waking:  # else the woken worker passes it on
                    self._call_idle()
            else:
                job._target = worker
                worker.direct.append(job)
                self._wake(worker)

    def cancel(self, job: Job[Any]) -> bool:
        """Remove ``job`` if it is queued (True); ask it to stop if it runs."""
        with self.lock:
            if job._state is State.QUEUED:
                queue = self._jobs if job._target is None else job._target.direct
                queue.remove(job)
                return True
            if job._state is State.RUNNING:
                job._cancel_requested = True
                assert job._worker is not None
                job._worker.wakeup.notify()  # it may sleep in trio_pool.wait()
            return False

    def stop(self, workers: Iterable[Worker], *, cancel: ExcInfo | None = None) -> list[Job[Any]]:
        """Let every worker stop once there is no work left for it.

        With ``cancel`` (the exception info their hooks receive), empty the
        queues first, returning the removed jobs for the pool to finish as
        cancelled, and ask the jobs that run to stop.
        """
        with self.lock:
            self._draining = True  # and leases end: leased workers finish the queue too
            removed: list[Job[Any]] = []
            if cancel is not None:
                removed.extend(self._jobs)
                self._jobs.clear()
            for worker in workers:
                worker.leased = False
                if cancel is not None:
                    removed.extend(worker.direct)
                    worker.direct.clear()
                    if worker.state not in ("stopping", "stopped"):
                        worker.exit_info = cancel
                    if worker.job is not None:
                        worker.job._cancel_requested = True
                worker.wakeup.notify()
            self._idle.clear()
            return removed

    def take_queued(self) -> list[Job[Any]]:
        """Remove every job from the shared queue (for the pool to finish)."""
        with self.lock:
            removed = list(self._jobs)
            self._jobs.clear()
            return removed

    def take_direct(self, worker: Worker) -> list[Job[Any]]:
        """Remove the jobs left for ``worker`` alone (for the pool to finish)."""
        with self.lock:
            removed = list(worker.direct)
            worker.direct.clear()
            return removed

    def stop_worker(self, worker: Worker) -> None:
        """Let ``worker`` stop once it has finished its current and own jobs."""
        with self.lock:
            worker.stop_requested = True
            self._wake(worker)

    def lease(self, worker: Worker) -> None:
        with self.lock:
            worker.leased = True
            if worker in self._idle:
                self._idle.remove(worker)

    def unlease(self, worker: Worker) -> None:
        with self.lock:
            worker.leased = False
            self._wake(worker)  # it may take shared jobs again

    def notify(self, worker: Worker, key: Hashable, values: tuple[Any, ...]) -> None:
        with self.lock:
            worker.mailbox.setdefault(key, deque()).append(values)
            worker.wakeup.notify()

    def flush(self) -> None:
        """Deliver the finished jobs to the pool (loop thread)."""
        with self.lock:
            batch, self._finished = self._finished, []
            self._flush_posted = False
        self._deliver(batch)

    # --- worker side ----------------------------------------------------

    def take(self, worker: Worker) -> Job[Any] | None:
        """The next job for ``worker``, or None when it should stop."""
        with self.lock:
            while True:
                if worker.direct:
                    job = worker.direct.popleft()
                    break
                if worker.stop_requested:
                    worker.state = "stopping"
                    self._pass_on()  # a wake-up may have been meant for a job
                    return None
                if self._jobs and not worker.leased:
                    job = self._jobs.popleft()
                    break
                if self._draining:
                    worker.state = "stopping"
                    return None
                if worker.leased:
                    self._pass_on()  # a wake-up may have been meant for a job
                else:
                    self._idle.append(worker)
                worker.wakeup.wait()
                if worker.called:
                    worker.called = False
                    self._waking -= 1
                elif worker in self._idle:  # woken by something else than a new job
                    self._idle.remove(worker)
            self._pass_on()  # jobs still waiting: wake the next worker
            job._state = State.RUNNING
            job._worker = worker
            job.worker_id = worker.id
            worker.job = job
            wake = self.room_wanted and not self._flush_posted and job._target is None
            if wake:
                self._flush_posted = True
        if wake:
            self.post(self.flush)
        return job

    def finish(self, worker: Worker, result: outcome.Outcome[Any]) -> None:
        """Hand back the worker's finished job; wake the loop unless a wake-up is pending."""
        with self.lock:
            job, worker.job = worker.job, None
            assert job is not None
            worker.jobs_done += 1
            self._finished.append((job, result))
            if self._flush_posted:
                return
            self._flush_posted = True
        self.post(self.flush)

    def wait_for(
        self, worker: Worker, job: Job[Any], key: Hashable, timeout: float | None
    ) -> tuple[Any, ...]:
        """Block ``worker``'s job until ``notify(worker, key, ...)``; return the values."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self.lock:
            while True:
                box = worker.mailbox.get(key)
                if box:
                    values = box.popleft()
                    if not box:
                        del worker.mailbox[key]
                    return values
                if job._cancel_requested:
                    raise JobCancelled("the caller of this job is gone")
                if deadline is None:
                    worker.wakeup.wait()
                else:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        raise TimeoutError(f"no notify for {key!r} within {timeout} seconds")
                    worker.wakeup.wait(remaining)
