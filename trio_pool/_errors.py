"""The errors a far side raises too (a child process, a Ray actor).

They import neither trio nor anyio, so a worker process that runs only the
pool's far-side code does not load either (see :mod:`._exceptions` for the
rest).
"""

from __future__ import annotations


class JobCancelled(BaseException):
    """A job was cancelled: removed before it started, or told to stop.

    It is the error inside the Outcome of a job removed before it started,
    and what :func:`trio_pool.check_cancelled` raises inside a job whose
    caller has gone. Like :class:`trio.Cancelled` it derives from
    :class:`BaseException`, so a job's own ``except Exception:`` does not
    swallow it.
    """


class BrokenWorkerError(RuntimeError):
    """A worker's process died under a job (a crash, ``os._exit``, the OOM killer).

    It is the error inside that job's Outcome. The pool replaces the worker;
    the jobs queued behind it are run by the others.
    """


def killed_for_cancel(worker: str, what: str) -> JobCancelled:
    """The Outcome's error of a job whose ``what`` (process, actor) ``kill_on_cancel`` killed."""
    return JobCancelled(
        f"the job was cancelled: worker {worker}'s {what} was killed (kill_on_cancel=True); "
        "its exit hook did not run"
    )
