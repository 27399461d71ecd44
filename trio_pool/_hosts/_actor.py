"""The far side in a Ray actor: :class:`RayWorker` carries the one far side's messages.

Loaded in every actor, so it imports neither trio nor anyio (nor Ray: the
class becomes an actor class on the pool's side, :mod:`._ray`). What
crosses is pickled as :mod:`._wire` says, inside ``bytes``, so Ray never
wraps an Outcome's error in a ``RayTaskError``.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Hashable
from typing import TYPE_CHECKING, Any

from ._far import FarSide
from ._shared import resident_memory
from ._wire import dumps

if TYPE_CHECKING:  # (a far side never loads outcome)
    import outcome


class RayWorker:
    """The actor: one interface, its calls in turn, and ``cancel`` beside them.

    Its calls run one at a time, always in the same thread of the actor
    (``max_concurrency=1``), which keeps the interface's thread-bound state;
    ``cancel(n)`` runs in a concurrency group of its own, ``control``, so it
    reaches call ``n`` while that runs, or before it begins.
    """

    def __init__(self) -> None:
        self._far = FarSide()
        self.cancelled_through = 0  # the number of the last call asked to stop

    def load(self, loader: bytes, worker_id: int, name: str) -> bytes:
        reply = self._far.load(loader, worker_id, name)
        if reply[0] == "loaded":  # and where: the pool's statistics name it
            context = importlib.import_module("ray").get_runtime_context()
            reply = (*reply, os.getpid(), context.get_actor_id(), context.get_node_id())
        return dumps(reply)

    def call(self, number: int, payload: bytes, cancelled: bool) -> bytes:
        """Call ``number``'s Outcome (bytes alone: a tuple costs Ray a pickling each way)."""
        return self._far.call(payload, _ActorView(self, number, cancelled=cancelled))

    def call_and_measure(
        self, number: int, payload: bytes, cancelled: bool
    ) -> tuple[bytes, int | None]:
        """As :meth:`call`, and the actor's resident memory after it (for ``max_memory``)."""
        return self.call(number, payload, cancelled), resident_memory(os.getpid())

    def cancel(self, number: int) -> None:
        self.cancelled_through = max(self.cancelled_through, number)

    def close(self, exc_info: bytes) -> bytes:
        return dumps(self._far.close(exc_info))


class _ActorView:
    """The job's view in the actor."""

    def __init__(self, actor: RayWorker, number: int, *, cancelled: bool) -> None:
        self._actor = actor
        self._number = number
        self._cancelled = cancelled

    def cancel_requested(self) -> bool:
        return self._cancelled or self._actor.cancelled_through >= self._number

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
