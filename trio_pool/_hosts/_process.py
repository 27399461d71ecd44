"""ProcessHost: each worker thread drives one child process holding its interface.

The parent side (:class:`InProcess`) runs in the worker's thread; the child
runs :func:`child_main`, a plain blocking loop (no event loop) that carries
the messages of the one far side (:class:`._far.FarSide`). They speak over
one duplex pipe, one message at a time, in turns:

parent -> child: ``("load", loader_and_args, id, name)``,
``("call", payload, cancelled)``, ``("close", exc_info)``, and
``("cancel",)`` while a call runs; also ``("answer", outcome)`` to a child's
request. The loader, the call and the pool's exception travel pickled
inside the message, so the child can fail that one step (or tell the hook
what it could not rebuild) if they do not unpickle there.

child -> parent: ``("loaded", operations)`` or ``("failed", error)``; a
job's Outcome, a frame of its own that the parent may fail to unpickle
without losing the worker; ``("wait", key, timeout)`` and
``("loop", async_fn, args)`` (requests relayed to the job's view in the
parent); ``("closed", error)``.

Every message is pickled as :mod:`._wire` says: errors keep their type,
arguments and the child's traceback.
"""

from __future__ import annotations

import contextlib
import functools
import multiprocessing
import multiprocessing.resource_tracker
import os
import pickle
import select
import signal
import threading
import time
from collections.abc import Callable, Generator, Hashable
from typing import Any, final

import outcome

from .._errors import BrokenWorkerError, killed_for_cancel
from .._in_worker import JobView, WorkerInfo
from ._base import ExcInfo, HostChoice, HostDied, HostFactory, Where
from ._far import FarSide
from ._shared import (
    CancelRelay,
    check_kill_on_cancel,
    check_max_memory,
    check_seconds,
    over_memory,
    resident_memory,
)
from ._wire import (
    decode_outcome,
    dumps,
    is_outcome,
    pack_call,
    pack_exc_info,
    pack_loader,
)

# Seconds between looks at the job's cancel request while it runs: a fallback
# (interrupt() wakes the worker thread at once where select.poll exists), and
# the only way where it does not (Windows).
_POLL = 0.5 if hasattr(select, "poll") else 0.05


@final
class ProcessHost(HostChoice):
    """Each worker's interface lives in a child process of its own.

    ``Pool(Model, "weights.bin", workers=4, host=trio_pool.ProcessHost())``:
    each worker is still a thread of the pool (the queue, leases, autoscaling
    and statistics are unchanged), and that thread drives one child process
    in which the interface is built, used and closed. GIL-bound Python work
    runs in parallel, and a job stuck in C can be killed.

    Args:
        start_method: A :mod:`multiprocessing` start method: ``"forkserver"``
            (the default on POSIX) or ``"spawn"`` (the default elsewhere).
            ``"fork"`` is refused: the pool's process has threads.
        kill_on_cancel: Kill the process of a running job whose caller is
            cancelled (or that :meth:`Job.cancel` reaches): its Outcome is
            :class:`JobCancelled`, its ``__exit__`` does not run, and the
            pool replaces the worker (the loader runs again). By default a
            running job is asked to stop, as on threads.
        cancel_grace: With ``kill_on_cancel``: ask the job to stop first
            (``check_cancelled()`` raises in it), and kill it only if it
            still runs this many seconds later (its Outcome is then its own,
            if it returned in time). Default 0: kill at once.
        grace_period: Seconds a child gets at the pool's exit to run its
            exit hook before it is killed; at an exit by an error, a
            cancellation or Ctrl-C, also the seconds a running job gets to
            notice ``check_cancelled()`` before its child is killed.
        max_memory: Bytes of resident memory (read from ``/proc``, on
            Linux) a child may hold after a job: above that, the worker is
            renewed (its hook runs, and a new child loads in its place).
            Default None: no limit.

    Raises:
        TypeError, ValueError: for a wrong argument.
    """

    __slots__ = (
        "_context",
        "cancel_grace",
        "grace_period",
        "kill_on_cancel",
        "max_memory",
        "start_method",
    )

    def __init__(
        self,
        *,
        start_method: str | None = None,
        kill_on_cancel: bool = False,
        cancel_grace: float = 0.0,
        grace_period: float = 5.0,
        max_memory: int | None = None,
    ) -> None:
        if start_method is None:
            start_method = "forkserver" if os.name == "posix" else "spawn"
        if not isinstance(start_method, str):
            raise TypeError(f"start_method must be a str or None, not {start_method!r}")
        if start_method == "fork":
            raise ValueError(
                "start_method='fork' is not safe: the pool's process has threads; "
                "use 'forkserver' or 'spawn'"
            )
        if start_method not in multiprocessing.get_all_start_methods():
            raise ValueError(
                f"start_method must be one of {multiprocessing.get_all_start_methods()}, "
                f"not {start_method!r}"
            )
        #: Seconds a job whose caller is cancelled may take to stop before it is killed.
        self.cancel_grace: float = check_kill_on_cancel(kill_on_cancel, cancel_grace)
        #: The :mod:`multiprocessing` start method of the children.
        self.start_method: str = start_method
        #: Whether a running job whose caller is cancelled is killed.
        self.kill_on_cancel: bool = kill_on_cancel
        #: Seconds a child gets at exit to run its hook before it is killed.
        self.grace_period: float = check_seconds("grace_period", grace_period)
        #: The most resident memory, in bytes, a child may hold after a job, or None.
        self.max_memory: int | None = check_max_memory(max_memory)
        self._context = multiprocessing.get_context(start_method)
        if start_method == "forkserver":  # children fork from a server with these loaded
            self._context.set_forkserver_preload([__name__, f"{__package__}._sigint_ignored"])

    def __repr__(self) -> str:
        return (
            f"trio_pool.ProcessHost(start_method={self.start_method!r}, "
            f"kill_on_cancel={self.kill_on_cancel}, cancel_grace={self.cancel_grace}, "
            f"grace_period={self.grace_period}, "
            f"max_memory={self.max_memory})"
        )

    def kill_grace(self) -> float | None:
        return self.grace_period

    def worker_hosts(self, loader: object, args: tuple[Any, ...]) -> HostFactory:
        return functools.partial(
            InProcess,
            loader,
            args,
            context=self._context,
            kill_on_cancel=self.kill_on_cancel,
            cancel_grace=self.cancel_grace,
            grace_period=self.grace_period,
            max_memory=self.max_memory,
        )


class _ChildView:
    """The job's view in the child: requests go to the worker thread in the parent."""

    def __init__(self, conn: Any, *, cancelled: bool) -> None:
        self._conn = conn
        self._cancelled = cancelled

    def cancel_requested(self) -> bool:
        while not self._cancelled and self._conn.poll():  # only ("cancel",) comes unasked
            self._read()
        return self._cancelled

    def wait_for(self, key: Hashable, timeout: float | None) -> tuple[Any, ...]:
        self._conn.send_bytes(dumps(("wait", key, timeout)))
        result: tuple[Any, ...] = self._answer().unwrap()
        return result

    def call_loop(
        self, async_fn: Callable[..., Any], args: tuple[Any, ...]
    ) -> outcome.Outcome[Any]:
        self._conn.send_bytes(dumps(("loop", async_fn, args)))
        return self._answer()

    def _answer(self) -> outcome.Outcome[Any]:
        while True:
            message = self._read()
            if message[0] == "answer":
                answer: outcome.Outcome[Any] = message[1]
                return answer

    def _read(self) -> tuple[Any, ...]:
        message: tuple[Any, ...] = pickle.loads(self._conn.recv_bytes())
        if message[0] == "cancel":
            self._cancelled = True
        return message


def _watch_parent() -> None:
    """End the child as soon as the pool's process is gone (even mid-job).

    multiprocessing gives a spawned or forkserver child a sentinel of its
    parent: a pipe whose other end the parent holds (a process handle on
    Windows), so its end is seen at once, even while the parent is a zombie
    not yet reaped (which ``os.kill(parent, 0)`` would take for alive).
    """
    parent = multiprocessing.parent_process()
    if parent is not None:
        parent.join()
        os._exit(70)


@contextlib.contextmanager
def _sigint_blocked() -> Generator[None, None, None]:
    """Block SIGINT in this thread meanwhile (where signal masks exist).

    A child made meanwhile inherits the mask, across exec too: a spawned
    child holds a Ctrl-C pending from its first instruction, through
    Python's start and multiprocessing's bootstrap, until :func:`child_main`
    ignores it, which drops it. (A forkserver's children ignore SIGINT from
    the start anyway: see ``_sigint_ignored``.)
    """
    if not hasattr(signal, "pthread_sigmask"):
        yield
        return
    # Started first: starting it unblocks SIGINT in the calling thread, whatever
    # was blocked before (multiprocessing.resource_tracker.ensure_running).
    multiprocessing.resource_tracker.ensure_running()
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def child_main(conn: Any) -> None:
    """The child process: load, serve calls, close, in turns with the worker thread."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    if hasattr(signal, "pthread_sigmask"):  # a pending one is dropped: it is ignored now
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    threading.Thread(target=_watch_parent, daemon=True).start()
    far = FarSide()
    try:
        while True:
            try:
                message = pickle.loads(conn.recv_bytes())
            except EOFError:
                return  # the worker thread is gone
            kind = message[0]
            if kind == "load":
                conn.send_bytes(dumps(far.load(*message[1:])))
            elif kind == "call":
                conn.send_bytes(far.call(message[1], _ChildView(conn, cancelled=message[2])))
            elif kind == "close":
                conn.send_bytes(dumps(far.close(message[1])))
                return
            # ("cancel",) for a call that has already ended: nothing to do.
    finally:
        conn.close()


def _how_it_ended(process: Any) -> str:
    process.join(1.0)
    code = process.exitcode
    if code is None:
        return "it stopped answering"
    if code < 0:
        try:
            return f"it was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"it was killed by signal {-code}"
    return f"it exited with code {code}"


class InProcess:
    """Drives one child process from the worker's thread."""

    def __init__(
        self,
        loader: object,
        args: tuple[Any, ...],
        *,
        context: Any,
        kill_on_cancel: bool,
        grace_period: float,
        cancel_grace: float = 0.0,
        max_memory: int | None = None,
    ) -> None:
        self._loader = loader
        self._max_memory = max_memory
        self._args = args
        self._context = context
        self._relay = CancelRelay(kill_on_cancel, cancel_grace)
        self._grace_period = grace_period
        self._operations: frozenset[str] = frozenset()
        self._conn: Any = None
        self._process: Any = None
        # Made once: Connection.poll() builds a selector on every call (no poll on Windows).
        self._poller = select.poll() if hasattr(select, "poll") else None
        # A pipe interrupt() writes to, which the poller also watches: the worker
        # thread relays a cancel request at once. The lock: interrupt() never
        # writes to it once _end() has closed it (its number may be reused).
        self._wake: tuple[int, int] | None = None
        self._wake_lock = threading.Lock()
        self._name = "trio_pool worker"

    @property
    def operations(self) -> frozenset[str]:
        return self._operations

    @property
    def pid(self) -> int | None:
        process = self._process
        return None if process is None else process.pid

    def where(self) -> Where:
        return Where("process", self.pid)

    def load(self, worker: WorkerInfo) -> None:
        self._name = worker.name
        loader = pack_loader(self._loader, self._args, "a worker process")
        parent_end, child_end = self._context.Pipe()
        process = self._context.Process(target=child_main, args=(child_end,), name=worker.name)
        with _sigint_blocked():  # a spawned child starts with it blocked: see child_main
            process.start()
        child_end.close()  # the child holds it now: its death shows as an end of file here
        self._conn, self._process = parent_end, process
        if self._poller is not None:
            self._poller.register(parent_end.fileno(), select.POLLIN)
            read, write = os.pipe()
            os.set_blocking(read, False)
            os.set_blocking(write, False)
            self._poller.register(read, select.POLLIN)
            self._wake = (read, write)
        try:
            self._send(("load", loader, worker.id, worker.name), "loading its interface")
            reply = self._message(self._receive(None, "loading its interface"), "loader's")
        except HostDied as died:
            raise died.error from None
        if reply[0] == "failed":
            self._end()
            raise reply[1]
        self._operations = reply[1]

    def execute(
        self,
        fn: Callable[..., Any] | str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        with_interface: bool,
        job: JobView,
    ) -> outcome.Outcome[Any]:
        payload = pack_call(fn, args, kwargs, with_interface, "the worker process")
        if isinstance(payload, outcome.Error):
            return payload
        self._send(("call", payload, self._relay.start(job)), "being sent a job")
        while True:
            frame = self._receive(job, "running a job")
            if is_outcome(frame):
                return decode_outcome(frame, "the worker process")
            answer: outcome.Outcome[Any]
            try:  # a request the job makes: ("wait", key, timeout) or ("loop", async_fn, args)
                kind, *request = pickle.loads(frame)
            except BaseException as exc:
                answer = outcome.Error(TypeError(f"the job's request cannot be received: {exc!r}"))
            else:
                if kind == "wait":
                    answer = outcome.capture(job.wait_for, *request)
                else:  # "loop"
                    answer = job.call_loop(*request)
            try:
                encoded = dumps(("answer", answer))
            except (pickle.PicklingError, TypeError, AttributeError) as exc:
                failed = TypeError(f"cannot send the answer: {exc}")
                encoded = dumps(("answer", outcome.Error(failed)))
            self._send_bytes(encoded, "running a job")

    def interrupt(self) -> None:
        """Wake the worker thread, which relays the job's cancel request (any thread)."""
        with self._wake_lock:
            if self._wake is not None:
                with contextlib.suppress(BlockingIOError):  # full: a wake-up is on its way
                    os.write(self._wake[1], b"\0")

    def kill(self) -> bool:
        process = self._process
        if process is not None:
            with contextlib.suppress(ValueError, OSError):  # closed or gone meanwhile
                process.kill()
        return True

    def renewal_due(self) -> str | None:
        pid, limit = self.pid, self._max_memory
        if limit is None or pid is None:
            return None
        return over_memory(resident_memory(pid), limit)

    def close(self, exc_info: ExcInfo) -> BaseException | None:
        """Run the hook in the child, give it ``grace_period`` seconds, then end the child."""
        if self._conn is None:
            return None
        doing = "running its exit hook"
        try:
            self._send(("close", pack_exc_info(exc_info)), doing)
            deadline = time.monotonic() + self._grace_period
            while not self._ready(max(0.0, deadline - time.monotonic())):
                if time.monotonic() < deadline:
                    continue  # woken by interrupt(): the hook still has time
                self._process.kill()  # now: _end() would give it grace_period again
                self._end()
                return BrokenWorkerError(
                    f"worker {self._name}: its exit hook did not finish within grace_period="
                    f"{self._grace_period} s; its process was killed"
                )
            error: BaseException | None = self._message(self._receive(None, doing), "hook's")[1]
        except HostDied as died:
            return died.error
        self._end()
        return error

    # --- the pipe ----------------------------------------------------------

    def _ready(self, timeout: float | None) -> bool:
        """Whether the child has written (or closed its end) within ``timeout`` seconds.

        False also when :meth:`interrupt` woke the thread first.
        """
        if self._poller is None:
            return bool(self._conn.poll(timeout))
        ready = False
        for fd, _ in self._poller.poll(None if timeout is None else timeout * 1000):
            if self._wake is not None and fd == self._wake[0]:
                with contextlib.suppress(BlockingIOError):
                    os.read(fd, 512)  # the wake-ups so far: one look serves them all
            else:
                ready = True
        return ready

    def _send(self, message: tuple[Any, ...], doing: str) -> None:
        """Send ``message``; HostDied if the child is gone (its end of the pipe closed)."""
        self._send_bytes(dumps(message), doing)

    def _send_bytes(self, data: bytes, doing: str) -> None:
        try:
            self._conn.send_bytes(data)
        except OSError as exc:
            raise self._died(doing) from exc

    def _died(self, doing: str) -> HostDied:
        """The child has died: end what is left of it; the error for its job or load."""
        error = BrokenWorkerError(
            f"worker {self._name}'s process (pid {self.pid}) died while {doing}: "
            f"{_how_it_ended(self._process)}"
        )
        self._end()
        return HostDied(error)

    def _message(self, frame: bytes, whose: str) -> tuple[Any, ...]:
        """A reply of the child's, unpickled; ends the child if it cannot be.

        Raises:
            HostDied: with a TypeError naming ``whose`` (the "loader's", say) reply.
        """
        try:
            message: tuple[Any, ...] = pickle.loads(frame)
        except BaseException as exc:
            self._end()
            error = TypeError(f"worker {self._name}: the {whose} reply cannot be received: {exc!r}")
            error.__cause__ = exc
            raise HostDied(error) from exc
        return message

    def _receive(self, job: JobView | None, doing: str) -> bytes:
        """The child's next frame; meanwhile relay ``job``'s cancel request.

        Raises:
            HostDied: the child died (or was killed for ``kill_on_cancel``).
        """
        conn = self._conn
        try:
            while not self._ready(self._wait_time(job)):
                step = None if job is None else self._relay.step()
                if step == "ask":
                    self._send(("cancel",), doing)
                elif step == "kill":
                    # Even if the child's reply is on its way: the worker must
                    # not go on with a killed child.
                    self._process.kill()
                    self._end()
                    raise HostDied(killed_for_cancel(self._name, "process"))
            frame: bytes = conn.recv_bytes()
        except (EOFError, OSError) as exc:
            raise self._died(doing) from exc
        return frame

    def _wait_time(self, job: JobView | None) -> float | None:
        """How long to wait for the child before looking at ``job``'s cancel request again."""
        if job is None:
            return None  # a load or a hook: nothing to relay (a dead child ends the wait)
        left = self._relay.seconds_left()
        return _POLL if left is None else min(left, _POLL)

    def _end(self) -> None:
        """The child is done with, or has to go: make sure it is gone, and reaped."""
        with self._wake_lock:
            wake, self._wake = self._wake, None
        if wake is not None:
            for fd in wake:
                os.close(fd)
        process, self._process = self._process, None
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()
        if process is not None:
            process.join(self._grace_period)
            if process.exitcode is None:
                process.kill()
                process.join()
            process.close()
