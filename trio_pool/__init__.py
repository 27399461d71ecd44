"""A structured-concurrency worker-thread pool for trio and anyio."""

from ._exceptions import BrokenWorkerError as BrokenWorkerError
from ._exceptions import JobCancelled as JobCancelled
from ._exceptions import PoolClosedError as PoolClosedError
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
    "Job",
    "JobCancelled",
    "MapResults",
    "Pool",
    "PoolClosedError",
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
