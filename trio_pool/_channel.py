"""The bounded handoff between the event loop and the worker threads.

Jobs go out through one deque that every worker takes from; outcomes come
back through another, and the loop is woken once per batch of outcomes, not
once per job. A worker never waits for the loop before it takes its next job.
The queue's bound (backpressure) is kept by the pool, on the loop side.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import outcome

from ._job import Job, State

if TYPE_CHECKING:
    from ._host import ExcInfo
    from ._worker import Worker

Delivery = list[tuple[Job[Any], outcome.Outcome[Any]]]


class Channel:
    def __init__(
        self, post: Callable[[Callable[[], object]], None], deliver: Callable[[Delivery], None]
    ) -> None:
        self.lock = threading.Lock()
        self._has_work = threading.Condition(self.lock)
        self._jobs: deque[Job[Any]] = deque()
        self._idle_workers = 0
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

    # --- loop side ------------------------------------------------------

    def put(self, job: Job[Any]) -> None:
        with self.lock:
            if self._draining:
                raise RuntimeError("the channel is closed")  # the pool checks first
            self._jobs.append(job)
            if self._idle_workers:
                self._has_work.notify()

    def cancel(self, job: Job[Any]) -> bool:
        """Remove ``job`` if it is queued (True); ask it to stop if it runs."""
        with self.lock:
            if job._state is State.QUEUED:
                self._jobs.remove(job)
                return True
            if job._state is State.RUNNING:
                job._cancel_requested = True
            return False

    def stop(self, workers: Iterable[Worker], *, cancel: ExcInfo | None = None) -> list[Job[Any]]:
        """Let workers stop once the queue is empty.

        With ``cancel`` (the exception info their hooks receive), empty the
        queue first, returning the removed jobs for the pool to finish as
        cancelled, and ask the jobs that run to stop.
        """
        with self.lock:
            self._draining = True
            removed: list[Job[Any]] = []
            if cancel is not None:
                removed = list(self._jobs)
                self._jobs.clear()
                for worker in workers:
                    if worker.state not in ("stopping", "stopped"):
                        worker.exit_info = cancel
                    if worker.job is not None:
                        worker.job._cancel_requested = True
            self._has_work.notify_all()
            return removed

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
            while not self._jobs:
                if self._draining:
                    worker.state = "stopping"
                    return None
                self._idle_workers += 1
                self._has_work.wait()
                self._idle_workers -= 1
            job = self._jobs.popleft()
            job._state = State.RUNNING
            job.worker_id = worker.id
            worker.job = job
            wake = self.room_wanted and not self._flush_posted
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
