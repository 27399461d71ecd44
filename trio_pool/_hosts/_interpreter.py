"""InterpreterHost: each worker thread runs its interface in a subinterpreter of its own.

The worker thread creates one isolated subinterpreter (its own GIL, CPython
3.13+), and runs the one far side (:class:`._far.FarSide`) there: each step
(load, a call, close) is the thread entering the subinterpreter with a
request and coming back with the reply, both bytes, as on a process host.
What crosses is pickled as :mod:`._wire` says.

The job's cancel request reaches it through one byte of memory both
interpreters see: :meth:`InInterpreter.interrupt` (the pool calls it on the
loop's thread when the job is cancelled) sets it, ``check_cancelled()`` in
the subinterpreter reads it. ``wait()`` and ``from_loop()`` have no relay:
the worker's only thread is inside the subinterpreter while the job runs.

What runs in the subinterpreter is :mod:`._sub` (without trio, anyio or
outcome).
"""

from __future__ import annotations

import functools
import importlib
import os
import pickle
import sys
import threading
import types
from collections.abc import Callable
from typing import Any, Literal, final

import outcome

from .._errors import BrokenWorkerError
from .._in_worker import JobView, WorkerInfo
from ._base import ExcInfo, HostChoice, HostDied, HostFactory, Where
from ._sub import serve
from ._wire import decode_outcome, pack_call, pack_exc_info, pack_loader

WHERE = "the worker's subinterpreter"
#: 3.14 made them public as concurrent.interpreters (not installable here: that branch is untested).
_MODERN = sys.version_info >= (3, 14)
_MODULES = ["concurrent.interpreters"] if _MODERN else ["_interpreters", "_interpqueues"]


def _missing() -> str | None:
    """Why this Python cannot run subinterpreters, or None if it can."""
    if sys.version_info < (3, 13):
        return (
            "InterpreterHost needs CPython 3.13 or later (its subinterpreters, each with "
            f"its own GIL); this is Python {sys.version.split()[0]}"
        )
    try:
        for module in _MODULES:
            importlib.import_module(module)
    except ImportError as exc:
        return f"InterpreterHost needs CPython's subinterpreters, which this Python lacks: {exc}"
    return None


@final
class InterpreterHost(HostChoice):
    """Each worker's interface lives in a subinterpreter of its own (CPython 3.13+).

    ``Pool(Parser, workers=4, host=trio_pool.InterpreterHost())``: each
    worker is still a thread of the pool, and that thread creates an
    isolated subinterpreter with its own GIL, in which the interface is
    built, used and closed. Pure-Python work runs in parallel, without the
    start-up and per-call cost of a process. The loader, each call and its
    result cross pickled (cloudpickle for functions), as on a process host.

    ``check_cancelled()``, ``current_worker()`` and ``current_interface()``
    work in a job; ``wait()`` and ``from_loop()`` raise RuntimeError. An
    extension module that does not support subinterpreters fails the loader
    with its own ImportError.

    Args:
        kill_on_cancel: Only False: a subinterpreter runs in a thread, which
            cannot be killed.

    Raises:
        TypeError: for ``kill_on_cancel`` other than False.
        RuntimeError: at the pool's entry, on a Python before 3.13.
    """

    __slots__ = ()

    def __init__(self, *, kill_on_cancel: Literal[False] = False) -> None:
        if kill_on_cancel is not False:
            raise TypeError(
                f"InterpreterHost(kill_on_cancel={kill_on_cancel!r}): a subinterpreter runs "
                "in a thread, which cannot be killed; use ProcessHost(kill_on_cancel=True)"
            )

    def __repr__(self) -> str:
        return "trio_pool.InterpreterHost()"

    def worker_hosts(self, loader: object, args: tuple[Any, ...]) -> HostFactory:
        missing = _missing()
        if missing is not None:
            raise RuntimeError(missing)
        return functools.partial(InInterpreter, loader, args)


class _SubError(Exception):
    """The subinterpreter's own code raised (never a job's error: those are Outcomes)."""


class _Sub:
    """One subinterpreter, entered from the thread that drives it.

    ``flag`` is shared memory its :class:`_JobView` reads.
    """

    def __init__(self, flag: bytearray) -> None:
        shared: dict[str, object] = {
            "_trio_pool_flag": memoryview(flag),
            "_trio_pool_path": tuple(sys.path),
        }
        if _MODERN:
            self._interp: Any = importlib.import_module("concurrent.interpreters").create()
            self._interp.prepare_main(shared)
            self._run(_SETUP)
            return
        self._low: Any = importlib.import_module("_interpreters")
        self._queues: Any = importlib.import_module("_interpqueues")
        self._id: int = self._low.create()  # isolated: its own GIL
        self._queue: int = self._queues.create(1, 0, 2)  # 1 item, shared as is, unbound: error
        shared["_trio_pool_queue"] = self._queue
        try:
            self._run("import _interpreters")  # sharing the flag needs it there first
            self._low.set___main___attrs(self._id, shared)
            self._run(_SETUP)
        except BaseException:
            self.destroy()
            raise

    def _run(self, code: str | types.CodeType) -> None:
        if _MODERN:
            failed: Any = importlib.import_module("concurrent.interpreters").ExecutionFailed
            try:
                self._interp.exec(code)
            except failed as exc:
                raise _SubError(str(exc)) from None
            return
        info = self._low.exec(self._id, code)
        if info is not None:
            raise _SubError(info.errdisplay or info.formatted)

    def ask(self, request: tuple[Any, ...]) -> bytes:
        """Enter the subinterpreter with ``request``; its reply."""
        if _MODERN:
            reply: bytes = self._interp.call(serve, request)
            return reply
        self._queues.put(self._queue, request, 0, 2)
        self._run(_STEP)
        answer: bytes = self._queues.get(self._queue)[0]
        return answer

    def destroy(self) -> None:
        if _MODERN:
            self._interp.close()
        else:
            self._low.destroy(self._id)
            self._queues.destroy(self._queue)


_SETUP = f"""
import sys
sys.path[:] = _trio_pool_path
from {serve.__module__} import serve as _trio_pool_serve, set_flag
set_flag(_trio_pool_flag)
"""
_STEP = compile(  # compiled once: a string would be compiled at every step
    "import _interpqueues as _q; _q.put(_trio_pool_queue, _trio_pool_serve(_q.get(_trio_pool_queue)[0]), 0, 2)",  # noqa: E501
    "<trio_pool step>",
    "exec",
)


class InInterpreter:
    """Drives one subinterpreter from the worker's thread."""

    def __init__(self, loader: object, args: tuple[Any, ...]) -> None:
        self._loader = loader
        self._args = args
        self._operations: frozenset[str] = frozenset()
        self._sub: _Sub | None = None
        self._name = "trio_pool worker"
        self._flag = bytearray(1)  # 1: the running job is asked to stop
        self._lock = threading.Lock()  # the flag and the running job, with interrupt()
        self._job: JobView | None = None

    @property
    def operations(self) -> frozenset[str]:
        return self._operations

    def where(self) -> Where:
        return Where("interpreter", os.getpid())

    def load(self, worker: WorkerInfo) -> None:
        self._name = worker.name
        loader = pack_loader(self._loader, self._args, "a subinterpreter")
        try:
            sub = _Sub(self._flag)
        except _SubError as exc:
            raise BrokenWorkerError(
                f"worker {self._name}: {WHERE} could not start: {exc}"
            ) from None
        try:
            reply = pickle.loads(sub.ask(("load", loader, worker.id, worker.name)))
        except BaseException as exc:
            sub.destroy()
            if isinstance(exc, _SubError):
                raise BrokenWorkerError(f"worker {self._name}: {WHERE} failed: {exc}") from None
            raise
        if reply[0] == "failed":
            sub.destroy()
            raise reply[1]
        self._sub, self._operations = sub, reply[1]

    def execute(
        self,
        fn: Callable[..., Any] | str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        with_interface: bool,
        job: JobView,
    ) -> outcome.Outcome[Any]:
        assert self._sub is not None
        payload = pack_call(fn, args, kwargs, with_interface, WHERE)
        if isinstance(payload, outcome.Error):
            return payload
        with self._lock:
            self._job = job
            self._flag[0] = job.cancel_requested()
        try:
            frame = self._sub.ask(("call", payload))
        except _SubError as exc:
            self._destroy()
            raise HostDied(
                BrokenWorkerError(f"worker {self._name}: {WHERE} failed: {exc}")
            ) from exc
        finally:
            with self._lock:
                self._job = None
        return decode_outcome(frame, WHERE)

    def interrupt(self) -> None:
        """Pass the running job's cancel request on at once (any thread)."""
        with self._lock:
            if self._job is not None and self._job.cancel_requested():
                self._flag[0] = 1

    def renewal_due(self) -> str | None:
        """Never: a subinterpreter's memory is not told apart from the process's."""
        return None

    def kill(self) -> bool:
        """Cannot: a subinterpreter runs in a thread."""
        return False

    def close(self, exc_info: ExcInfo) -> BaseException | None:
        """Run the exit hook in the subinterpreter, once; then destroy it."""
        sub = self._sub
        if sub is None:
            return None
        try:
            reply = pickle.loads(sub.ask(("close", pack_exc_info(exc_info))))
            error: BaseException | None = reply[1]
        except _SubError as exc:
            error = BrokenWorkerError(f"worker {self._name}: {WHERE} failed: {exc}")
        self._destroy()
        return error

    def _destroy(self) -> None:
        sub, self._sub = self._sub, None
        if sub is not None:
            sub.destroy()
