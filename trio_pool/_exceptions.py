"""The exceptions a user of the pool can catch."""

from __future__ import annotations

import anyio
import trio


class PoolClosedError(trio.ClosedResourceError, anyio.ClosedResourceError):
    """Raised when work is submitted to a pool that is closing or closed.

    It is a :class:`trio.ClosedResourceError` and an
    :class:`anyio.ClosedResourceError`, so code written for either framework
    catches it under the name it already uses.
    """


class JobCancelled(BaseException):
    """A job was cancelled: removed before it started, or told to stop.

    It is the error inside the Outcome of a job removed before it started,
    and what :func:`trio_pool.check_cancelled` raises inside a job whose
    caller has gone. Like :class:`trio.Cancelled` it derives from
    :class:`BaseException`, so a job's own ``except Exception:`` does not
    swallow it.
    """


class QueueFull(trio.WouldBlock, anyio.WouldBlock):
    """The submission queue is full (``submit_nowait``)."""
