"""What a subinterpreter of :class:`~trio_pool.InterpreterHost` runs: the far side's steps.

The worker thread enters the subinterpreter once per step with a request
(see :class:`._interpreter._Sub`); :func:`serve` answers it. This module is
loaded in each subinterpreter, its own copy there: it imports neither trio,
anyio nor outcome.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any

from .._in_worker import context
from ._far import FarSide
from ._wire import dumps

_far = FarSide()
_flag: memoryview | None = None
_context: dict[str, Any] = {}  # what the far side put in context, kept from one step to the next


def set_flag(shared: Any) -> None:
    """Keep the cancel flag the pool shared: one byte, 1 once the running job should stop."""
    global _flag
    _flag = memoryview(shared)


class _JobView:
    """The job's view in the subinterpreter."""

    def cancel_requested(self) -> bool:
        assert _flag is not None
        return bool(_flag[0])

    def wait_for(self, key: Hashable, timeout: float | None) -> tuple[Any, ...]:
        raise RuntimeError(
            "trio_pool.wait() does not work on an InterpreterHost: the worker's thread is "
            "inside the subinterpreter while the job runs; pass what the job needs as "
            "arguments, or use threads or processes"
        )

    def call_loop(self, async_fn: Callable[..., Any], args: tuple[Any, ...]) -> Any:
        raise RuntimeError(
            "trio_pool.from_loop() does not work on an InterpreterHost: the subinterpreter "
            "has no way back to the pool's event loop; return what the loop should do, "
            "or use threads or processes"
        )


_VIEW = _JobView()


def serve(request: tuple[Any, ...]) -> bytes:
    """One step of the far side: a job's Outcome frame, or a pickled reply."""
    # Each entry may be under a new thread state, with a thread-local context of its own.
    vars(context).update(_context)
    try:
        kind = request[0]
        if kind == "call":
            return _far.call(request[1], _VIEW)
        if kind == "load":
            return dumps(_far.load(request[1], request[2], request[3]))
        return dumps(_far.close(request[1]))  # "close"
    finally:
        _context.update(vars(context))
