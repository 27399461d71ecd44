"""What a job can ask about the worker thread it runs in."""

from __future__ import annotations

import threading
import types
from typing import TYPE_CHECKING, Any, final

from ._exceptions import JobCancelled

if TYPE_CHECKING:
    from ._job import Job


@final
class WorkerInfo:
    """The worker thread a job runs in, from :func:`current_worker`.

    Attributes:
        id: The worker's id: an ``int``, unique in its pool, never reused.
        name: The worker thread's name, made from the pool's name.
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
    worker: WorkerInfo | None = None
    interface: Any = None
    has_interface = False
    job: Job[Any] | None = None


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


def current_interface() -> Any:
    """The interface object of the worker this thread is.

    Raises:
        RuntimeError: if called outside a pool's worker thread, or before the
            worker's interface has loaded.
    """
    if not context.has_interface:
        raise RuntimeError(
            "current_interface() must be called in a trio_pool worker thread whose "
            "interface has loaded"
        )
    return context.interface


def check_cancelled() -> None:
    """Raise :class:`JobCancelled` if the current job should stop.

    A job is told to stop when its caller is cancelled while it runs, when
    :meth:`Job.cancel` is called, or when the pool shuts down because of an
    error or a cancellation. Long jobs call this now and then to stop early.

    Raises:
        JobCancelled: if the job should stop.
        RuntimeError: if called outside a job in a worker thread.
    """
    job = context.job
    if job is None:
        raise RuntimeError("check_cancelled() must be called from a job in a trio_pool worker")
    if job._cancel_requested:
        raise JobCancelled("the caller of this job is gone")
