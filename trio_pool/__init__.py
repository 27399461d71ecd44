"""A structured-concurrency worker-thread pool for trio and anyio.

The public names load on first use (PEP 562): a worker process, which
imports only the pool's far-side code, never loads trio or anyio.
"""

import importlib as _importlib
import typing as _typing

if _typing.TYPE_CHECKING:
    from ._errors import BrokenWorkerError as BrokenWorkerError
    from ._errors import JobCancelled as JobCancelled
    from ._exceptions import PoolClosedError as PoolClosedError
    from ._hosts._interpreter import InterpreterHost as InterpreterHost
    from ._hosts._process import ProcessHost as ProcessHost
    from ._hosts._ray import RayHost as RayHost
    from ._hosts._thread import ThreadHost as ThreadHost
    from ._in_worker import WorkerInfo as WorkerInfo
    from ._in_worker import check_cancelled as check_cancelled
    from ._in_worker import current_interface as current_interface
    from ._in_worker import current_worker as current_worker
    from ._in_worker import from_loop as from_loop
    from ._in_worker import wait as wait
    from ._instruments import Instrument as Instrument
    from ._job import Job as Job
    from ._lease import WorkerLease as WorkerLease
    from ._map import MapResults as MapResults
    from ._options import PoolOptions as PoolOptions
    from ._pool import Pool as Pool
    from ._primitives import Shared as Shared
    from ._primitives import ThreadSafeLock as ThreadSafeLock
    from ._primitives import named_lock as named_lock
    from ._primitives import run_in_thread as run_in_thread
    from ._statistics import PoolStatistics as PoolStatistics
    from ._statistics import WorkerStatistics as WorkerStatistics

__version__ = "0.1.0"

__all__ = [
    "BrokenWorkerError",
    "Instrument",
    "InterpreterHost",
    "Job",
    "JobCancelled",
    "MapResults",
    "Pool",
    "PoolClosedError",
    "PoolOptions",
    "PoolStatistics",
    "ProcessHost",
    "RayHost",
    "Shared",
    "ThreadHost",
    "ThreadSafeLock",
    "WorkerInfo",
    "WorkerLease",
    "WorkerStatistics",
    "check_cancelled",
    "current_interface",
    "current_worker",
    "from_loop",
    "named_lock",
    "run_in_thread",
    "wait",
]

#: Where each public name lives.
_WHERE = {
    "BrokenWorkerError": "._errors",
    "Instrument": "._instruments",
    "InterpreterHost": "._hosts._interpreter",
    "Job": "._job",
    "JobCancelled": "._errors",
    "MapResults": "._map",
    "Pool": "._pool",
    "PoolClosedError": "._exceptions",
    "PoolOptions": "._options",
    "PoolStatistics": "._statistics",
    "ProcessHost": "._hosts._process",
    "RayHost": "._hosts._ray",
    "Shared": "._primitives",
    "ThreadHost": "._hosts._thread",
    "ThreadSafeLock": "._primitives",
    "WorkerInfo": "._in_worker",
    "WorkerLease": "._lease",
    "WorkerStatistics": "._statistics",
    "check_cancelled": "._in_worker",
    "current_interface": "._in_worker",
    "current_worker": "._in_worker",
    "from_loop": "._in_worker",
    "named_lock": "._primitives",
    "run_in_thread": "._primitives",
    "wait": "._in_worker",
}


def __getattr__(name: str) -> _typing.Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'trio_pool' has no attribute {name!r}")
    value = getattr(_importlib.import_module(module, __name__), name)
    globals()[name] = value  # once: the next look finds it here
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_WHERE})
