"""What several hosts share: argument checks, the cancel relay, memory, operations, a call.

Used on the pool's side and on every far side: it imports no event loop.
"""

from __future__ import annotations

import inspect
import math
import os
import time
from collections.abc import Callable, Mapping
from types import CoroutineType
from typing import Any, Protocol, TypeGuard, TypeVar

R = TypeVar("R")


def private_name(name: str) -> str:
    """Why ``name`` is not an operation (the same words everywhere)."""
    return f"{name!r} is not an operation: names starting with '_' are private"


def no_operation(name: str) -> str:
    """The interface has no operation ``name`` (the same words everywhere)."""
    return f"the interface has no operation {name!r}"


def check_seconds(name: str, seconds: object) -> float:
    """``seconds`` as a float, if it is a finite number, zero or more."""
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
        raise TypeError(f"{name} must be a number of seconds, not {seconds!r}")
    if not (seconds >= 0 and math.isfinite(seconds)):
        raise ValueError(f"{name} must be zero or more seconds, not {seconds}")
    return float(seconds)


def check_kill_on_cancel(kill_on_cancel: object, cancel_grace: object) -> float:
    """Check both; return ``cancel_grace`` (seconds), which needs ``kill_on_cancel``."""
    if not isinstance(kill_on_cancel, bool):
        raise TypeError(f"kill_on_cancel must be a bool, not {kill_on_cancel!r}")
    grace = check_seconds("cancel_grace", cancel_grace)
    if grace and not kill_on_cancel:
        raise ValueError(
            f"cancel_grace={grace} needs kill_on_cancel=True (without it, a running job "
            "is only asked to stop, for as long as it takes)"
        )
    return grace


class CancelAsked(Protocol):
    """A running job, as far as its cancel request goes."""

    def cancel_requested(self) -> bool: ...


class CancelRelay:
    """How a host passes a running job's cancel request on to its far side.

    The far side is asked once; with ``kill_on_cancel`` it is killed
    ``cancel_grace`` seconds after the request (at once if 0), unless the
    reply has come. Used from the worker's thread while it awaits a reply.
    """

    def __init__(self, kill_on_cancel: bool, cancel_grace: float) -> None:
        self._kill_on_cancel = kill_on_cancel
        self._cancel_grace = cancel_grace
        self._asks_first = not (kill_on_cancel and cancel_grace == 0)
        #: Whether a request may start a countdown to a kill (kill_on_cancel, cancel_grace).
        self.counts_down = kill_on_cancel and cancel_grace > 0
        self._job: CancelAsked | None = None
        self._asked = False
        self._kill_at = math.inf

    def start(self, job: CancelAsked) -> bool:
        """A call of ``job`` is sent now; whether it goes already cancelled."""
        self._job, self._asked, self._kill_at = job, False, math.inf
        return self._noticed()

    def seconds_left(self) -> float | None:
        """Seconds until the far side is due to be killed (None: it is not)."""
        if self._kill_at == math.inf:
            return None
        return max(0.0, self._kill_at - time.monotonic())

    def step(self) -> str | None:
        """Still no reply: ``"ask"`` the far side to stop now, ``"kill"`` it now, or None."""
        if not self._asked and self._noticed() and self._asks_first:
            return "ask"
        return "kill" if time.monotonic() >= self._kill_at else None

    def retract(self) -> None:
        """The request could not be passed on after all: ask again at the next step."""
        self._asked = False

    def _noticed(self) -> bool:
        assert self._job is not None
        if self._job.cancel_requested():
            self._asked = True
            if self._kill_on_cancel:
                self._kill_at = time.monotonic() + self._cancel_grace
        return self._asked


def check_max_memory(max_memory: object, *, here: bool = True) -> int | None:
    """``max_memory`` (bytes) if it is None or a positive int; ``here``: /proc must be here."""
    if max_memory is None:
        return None
    if isinstance(max_memory, bool) or not isinstance(max_memory, int):
        raise TypeError(
            f"max_memory must be a number of bytes (an int) or None, not {max_memory!r}"
        )
    if max_memory <= 0:
        raise ValueError(f"max_memory must be a positive number of bytes, not {max_memory}")
    if here and resident_memory(os.getpid()) is None:
        raise ValueError("max_memory needs /proc to read a process's memory (Linux)")
    return max_memory


def resident_memory(pid: int) -> int | None:
    """The resident memory of process ``pid`` in bytes, from /proc; None if it cannot be read."""
    try:
        with open(f"/proc/{pid}/statm", "rb") as statm:
            pages = int(statm.read().split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return pages * os.sysconf("SC_PAGE_SIZE")


def over_memory(used: int | None, limit: int | None) -> str | None:
    """Why a worker whose process holds ``used`` bytes is due for renewal, or None."""
    if limit is None or used is None or used <= limit:
        return None
    return f"its process holds {used} bytes, above max_memory={limit}"


def is_mapping(interface: object) -> TypeGuard[Mapping[str, Any]]:
    return isinstance(interface, Mapping)


def operations_of(interface: object) -> frozenset[str]:
    """The public callables of ``interface``, found without running properties."""
    if is_mapping(interface):
        return frozenset(k for k in interface if not k.startswith("_"))
    names: set[str] = set()
    for name in dir(interface):
        if name.startswith("_"):
            continue
        attribute = inspect.getattr_static(interface, name, None)
        if callable(attribute) or isinstance(attribute, (classmethod, staticmethod)):
            names.add(name)
    return frozenset(names)


def call_sync(
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    value: Callable[[Any], R],
    error: Callable[[BaseException], R],
) -> R:
    """``fn(*args, **kwargs)`` captured, whatever it raises; a coroutine is an error.

    ``value`` and ``error`` capture it: ``outcome.Value`` and ``outcome.Error``
    in the pool, a frame's encoders on a far side.
    """
    try:
        result = fn(*args, **kwargs)
        if type(result) is CoroutineType:
            result.close()
            raise TypeError(
                f"{fn!r} returned a coroutine: the pool runs sync functions; "
                "await async ones on the event loop instead"
            )
    except BaseException as exc:
        return error(exc)
    return value(result)
