"""The far side in a Ray actor: :class:`RayWorker` carries the one far side's messages.

Loaded in every actor, so it imports neither trio nor anyio (nor Ray: the
class becomes an actor class on the pool's side, :mod:`._ray`). What
crosses is pickled as :mod:`._wire` says, inside ``bytes``, so Ray never
wraps an Outcome's error in a ``RayTaskError``.
"""

from __future__ import annotations

import importlib
import os
import threading
from collections.abc import Callable, Hashable
from typing import TYPE_CHECKING, Any

from .._errors import JobCancelled
from ._far import FarSide
from ._shared import resident_memory
from ._wire import call_frame, dumps, encode_error, read_call_frame

if TYPE_CHECKING:  # (a far side never loads outcome)
    import outcome


def ray_call(number: int, payload: bytes, cancelled: bool) -> bytes:
    """Call ``number``'s frame, one ``bytes``: each argument more costs Ray ~50 µs a call."""
    head, body = call_frame(payload, cancelled)
    return head + number.to_bytes(8, "little") + body


class RayWorker:
    """The actor: one interface, its calls in turn, and ``cancel`` beside them.

    Its calls run one at a time, in the order sent, always in the same
    thread of the actor (``max_concurrency=1``), which keeps the
    interface's thread-bound state; ``cancel(n)`` runs in a concurrency group
    of its own, ``control``, so it reaches call ``n`` while that runs, or
    before it begins (then the call does not run).
    """

    def __init__(self) -> None:
        self._far = FarSide()
        self._lock = threading.Lock()  # guards the two fields below (cancel() has its thread)
        self._cancelled: set[int] = set()  # the calls asked to stop, not ended yet
        self._ended_through = 0  # the number of the last call that ended

    def cancelled(self, number: int) -> bool:
        """Whether call ``number`` was asked to stop."""
        return number in self._cancelled

    def load(self, loader: bytes, worker_id: int, name: str) -> bytes:
        reply = self._far.load(loader, worker_id, name)
        if reply[0] == "loaded":  # and where: the pool's statistics name it
            context = importlib.import_module("ray").get_runtime_context()
            reply = (*reply, os.getpid(), context.get_actor_id(), context.get_node_id())
        return dumps(reply)

    def call(self, frame: bytes) -> bytes:
        """The Outcome of the call :func:`ray_call` framed (bytes: a tuple costs Ray more).

        A call asked to stop while it waits in the actor does not run; one
        sent ``cancelled`` runs, its job told at once (as on every host).
        """
        call = read_call_frame(frame)
        assert call is not None
        rest, cancelled = call
        number, payload = int.from_bytes(rest[:8], "little"), rest[8:]
        try:
            if self.cancelled(number):
                return encode_error(JobCancelled("the job was cancelled before it started"))
            return self._far.call(payload, _ActorView(self, number, cancelled=cancelled))
        finally:
            with self._lock:
                self._ended_through = number
                self._cancelled.discard(number)

    def call_and_measure(self, frame: bytes) -> tuple[bytes, int | None]:
        """As :meth:`call`, and the actor's resident memory after it (for ``max_memory``)."""
        return self.call(frame), resident_memory(os.getpid())

    def cancel(self, number: int) -> None:
        with self._lock:
            if number > self._ended_through:
                self._cancelled.add(number)

    def close(self, exc_info: bytes) -> bytes:
        return dumps(self._far.close(exc_info))


class _ActorView:
    """The job's view in the actor."""

    def __init__(self, actor: RayWorker, number: int, *, cancelled: bool) -> None:
        self._actor = actor
        self._number = number
        self._cancelled = cancelled

    def cancel_requested(self) -> bool:
        return self._cancelled or self._actor.cancelled(self._number)

    def wait_for(self, key: Hashable, timeout: float | None) -> tuple[Any, ...]:
        raise RuntimeError(
            "trio_pool.wait() does not work on a RayHost: the actor cannot block on the "
            "pool's process; pass what the job needs as arguments, or use threads or processes"
        )

    def call_loop(
        self, async_fn: Callable[..., Any], args: tuple[Any, ...]
    ) -> outcome.Outcome[Any]:
        raise RuntimeError(
            "trio_pool.from_loop() does not work on a RayHost: the actor has no way back "
            "to the pool's event loop; return what the loop should do, or use threads or processes"
        )
