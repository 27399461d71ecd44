"""The exceptions a user of the pool can catch, and how several are raised together."""

from __future__ import annotations

import asyncio
import math
import sys

import anyio
import trio

from ._errors import BrokenWorkerError as BrokenWorkerError
from ._errors import JobCancelled as JobCancelled
from ._errors import killed_for_cancel as killed_for_cancel

if sys.version_info < (3, 11):
    from exceptiongroup import BaseExceptionGroup


class PoolClosedError(trio.ClosedResourceError, anyio.ClosedResourceError):
    """Raised when work is submitted to a pool that is closing or closed.

    It is a :class:`trio.ClosedResourceError` and an
    :class:`anyio.ClosedResourceError`, so code written for either framework
    catches it under the name it already uses.
    """


class QueueFull(trio.WouldBlock, anyio.WouldBlock):
    """The submission queue is full (``submit_nowait``), or ``max_wait`` passed."""


class NotStarted(QueueFull):
    """No worker took a waiting caller's job within ``max_wait``: it was taken out unrun."""


def combine(errors: list[BaseException]) -> BaseException | None:
    """One error as itself, several as a group, none as None.

    A cancellation is not an error: beside real errors it is left out (they
    are raised while it is handled, so it stays their ``__context__``).
    """
    cancelled = anyio.get_cancelled_exc_class()
    real = [e for e in errors if not isinstance(e, cancelled)]
    if real:
        if len(real) < len(errors):
            _keep_native_cancellation()
        errors = real
    if not errors:
        return None
    if len(errors) == 1:
        return errors[0]
    return BaseExceptionGroup("several errors in a trio_pool.Pool", errors)


def _keep_native_cancellation() -> None:
    """A cancellation left out beside real errors must still reach the task.

    A cancel scope delivers its cancellation again at the next checkpoint. A
    native asyncio ``Task.cancel()`` is delivered once only: ask for it again,
    so the task's next await raises it.
    """
    if anyio.current_effective_deadline() == -math.inf:
        return  # a cancelled scope: it delivers it again
    try:
        task = asyncio.current_task()
    except RuntimeError:  # not on asyncio
        return
    if task is None:
        return
    if (3, 11) <= sys.version_info < (3, 13):
        # Asked again once the task waits, if the request still stands: whoever
        # made it (asyncio.timeout()) may take it back first with uncancel(),
        # which on 3.11 and 3.12 leaves a cancel() made now pending, to strike
        # later. (The price: a task that returns before it waits again ends
        # with its result, not cancelled.)
        asyncio.get_running_loop().call_soon(_cancel_again, task)
        return
    if sys.version_info >= (3, 13):
        task.uncancel()  # the count stays the same: one request, pending again
    task.cancel()


def _cancel_again(task: asyncio.Task[object]) -> None:
    if sys.version_info >= (3, 11) and not task.done() and task.cancelling():  # not taken back
        task.uncancel()  # the count stays the same: one request, pending again
        task.cancel()


def add_note(error: BaseException, note: str) -> None:
    """``error.add_note(note)`` (PEP 678), on Python 3.10 too."""
    notes: object = getattr(error, "__notes__", None)
    if isinstance(notes, list):
        notes.append(note)  # pyright: ignore[reportUnknownMemberType]
    else:
        setattr(error, "__notes__", [note])  # noqa: B010 (3.10 declares no __notes__)


def raise_combined(errors: list[BaseException]) -> None:
    error = combine(errors)
    if error is not None:
        raise error
