"""A pool's options: checked once, in ``Pool.__init__``, into a frozen record."""

from __future__ import annotations

import dataclasses
import itertools
import math
import os
from collections.abc import Iterable, Mapping
from typing import Any, TypedDict

from ._checks import check_count
from ._hosts._base import HostChoice
from ._hosts._thread import ThreadHost
from ._instruments import Instrument

_pool_numbers = itertools.count(1)


def default_workers() -> int:
    """``ThreadPoolExecutor``'s rule."""
    return min(32, (os.cpu_count() or 1) + 4)


class PoolOptions(TypedDict, total=False):
    """The keyword options of :class:`Pool`, each described there.

    Written once, for the pool's signature and for code that passes them
    on: ``def open_pool(**options: Unpack[PoolOptions]) -> Pool[Db]``.
    """

    workers: int | None
    min_workers: int | None
    max_workers: int | None
    idle_timeout: float | None
    queue_size: int | None
    max_wait: float | None
    abandon_on_cancel: bool
    name: str | None
    host: HostChoice | None
    max_jobs_per_worker: int | None
    instruments: Iterable[Instrument]


_KEYWORDS = tuple(PoolOptions.__annotations__)


@dataclasses.dataclass(frozen=True)
class Options:
    interface: object
    args: tuple[Any, ...]
    initial: int  # workers started on entry
    min_workers: int  # never fewer (1 for a fixed-size pool)
    max_workers: int | None  # None: a fixed-size pool, no autoscaling
    idle_timeout: float
    queue_size: int
    max_wait: float | None  # seconds a caller may wait for room or a lease; None: no limit
    abandon_on_cancel: bool
    name: str
    host: HostChoice
    max_jobs_per_worker: int | None = None  # a worker is renewed after that many jobs
    instruments: tuple[Instrument, ...] = ()

    @property
    def autoscaling(self) -> bool:
        return self.max_workers is not None


def build_options(interface: object, args: tuple[Any, ...], given: Mapping[str, Any]) -> Options:
    """The checked options; TypeError or ValueError for a wrong or unknown one."""
    for keyword in given:
        if keyword not in _KEYWORDS:  # (type checkers refuse it already)
            raise TypeError(
                f"Pool() got an unexpected keyword argument {keyword!r}. The pool's own are "
                f"{', '.join(_KEYWORDS[:-1])} and {_KEYWORDS[-1]}; to pass keywords to the "
                f"interface, give functools.partial(Interface, ..., {keyword}=...) as the interface"
            )
    _check_interface(interface, args)
    workers, min_workers, max_workers, idle_timeout, queue_size, max_wait, name, host, max_jobs = (
        given.get(keyword)
        for keyword in (
            "workers",
            "min_workers",
            "max_workers",
            "idle_timeout",
            "queue_size",
            "max_wait",
            "name",
            "host",
            "max_jobs_per_worker",
        )
    )
    abandon_on_cancel = given.get("abandon_on_cancel", False)
    high: int | None = None
    if min_workers is None and max_workers is None and idle_timeout is None:
        initial = check_count("workers", default_workers() if workers is None else workers)
        low, timeout = 1, math.inf
    else:
        if workers is not None:
            raise TypeError("give workers=N, or min_workers/max_workers/idle_timeout, not both")
        low = 0 if min_workers is None else check_count("min_workers", min_workers, minimum=0)
        high = default_workers() if max_workers is None else check_count("max_workers", max_workers)
        if low > high:
            raise ValueError(f"min_workers ({low}) is above max_workers ({high})")
        timeout = _seconds("idle_timeout", 60.0 if idle_timeout is None else idle_timeout)
        initial = low
    if max_jobs is not None:
        max_jobs = check_count("max_jobs_per_worker", max_jobs)
    default_queue = 4 * high if high is not None else max(64, 4 * initial)
    queue_size = check_count("queue_size", default_queue if queue_size is None else queue_size)
    if max_wait is not None:
        max_wait = _seconds("max_wait", max_wait, zero=True)
    if not isinstance(abandon_on_cancel, bool):
        raise TypeError(f"abandon_on_cancel must be a bool, not {abandon_on_cancel!r}")
    if name is not None and not isinstance(name, str):
        raise TypeError(f"name must be a str, not {name!r}")
    if host is None:
        host = ThreadHost()
    elif not isinstance(host, HostChoice):
        raise TypeError(
            "host must be trio_pool.ThreadHost(), trio_pool.ProcessHost(...), "
            f"trio_pool.InterpreterHost() or trio_pool.RayHost(...), not {host!r}"
        )
    instruments = given.get("instruments", ())
    if isinstance(instruments, Instrument) or not isinstance(instruments, Iterable):
        raise TypeError(f"instruments must be an iterable of Instruments, not {instruments!r}")
    return Options(
        interface=interface,
        args=args,
        initial=initial,
        min_workers=low,
        max_workers=high,
        idle_timeout=timeout,
        queue_size=queue_size,
        max_wait=max_wait,
        abandon_on_cancel=abandon_on_cancel,
        name=name if name is not None else f"trio_pool-{next(_pool_numbers)}",
        host=host,
        max_jobs_per_worker=max_jobs,
        instruments=tuple(instruments),  # pyright: ignore[reportUnknownArgumentType]
    )


def _check_interface(interface: object, args: tuple[Any, ...]) -> None:
    if interface is None or isinstance(interface, Mapping):
        if args:
            raise TypeError("arguments are only accepted for a class or factory interface")
        if isinstance(interface, Mapping):
            items: Mapping[object, object] = interface  # pyright: ignore[reportUnknownVariableType]
            for key, fn in items.items():
                if not isinstance(key, str) or not callable(fn):
                    raise TypeError(
                        f"an interface mapping maps names to functions, not {key!r} to {fn!r}"
                    )
    elif not callable(interface):
        raise TypeError(
            "interface must be a class or factory, a mapping of names to functions, "
            f"or None, not {interface!r}"
        )


def _seconds(name: str, value: object, *, zero: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number of seconds, not {value!r}")
    if not (value >= 0 if zero else value > 0):  # NaN too
        raise ValueError(f"{name} must be {'at least 0' if zero else 'positive'}, not {value}")
    return float(value)
