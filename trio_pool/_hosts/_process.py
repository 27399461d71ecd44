"""ProcessHost: each worker is a task of the event loop driving one child process.

The pool's side (:class:`InProcess`) runs in the loop: the worker's task
writes each message to the child's pipe and awaits the reply there, itself
(trio's ``wait_readable``, asyncio's ``add_reader``), in the framing of
:class:`multiprocessing.connection.Connection`, which the child
(:mod:`._child`, the one far side carried over the pipe) reads and writes
with plain blocking calls. The messages are listed in :mod:`._child`; each
is pickled as :mod:`._wire` says.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import multiprocessing
import multiprocessing.resource_tracker
import os
import pickle
import signal
import struct
from collections.abc import Callable, Generator
from typing import Any, final

import anyio
import outcome

from .._backend import fd_waits
from .._errors import BrokenWorkerError, killed_for_cancel
from .._in_worker import WorkerInfo
from ._base import ExcInfo, HostChoice, HostDied, HostFactory, LoopHost, LoopJobView, Where
from ._child import child_main
from ._shared import (
    CancelRelay,
    check_kill_on_cancel,
    check_max_memory,
    check_seconds,
    over_memory,
    resident_memory,
)
from ._wire import (
    call_frame,
    decode_outcome,
    dumps,
    is_outcome,
    pack_call,
    pack_exc_info,
    pack_loader,
)

logger = logging.getLogger("trio_pool")

# Frames up to this size go out in one write, header included (as Connection does).
_SMALL = 16384
# Bytes read at a time, at least.
_CHUNK = 65536
# The cancel request, as it crosses.
_CANCEL = dumps(("cancel",))
# Frames bigger than this (more than the kernel's buffer holds) are written and
# read by a thread, with blocking calls: one wake-up of the loop, not dozens.
_THREADED = 256 * 1024


@final
class ProcessHost(HostChoice):
    """Each worker's interface lives in a child process of its own.

    ``Pool(Model, "weights.bin", workers=4, host=trio_pool.ProcessHost())``:
    each worker is a task of the pool's event loop (the queue, leases,
    autoscaling and statistics are unchanged) that drives one child process
    in which the interface is built, used and closed: the task writes each
    call to the child's pipe and awaits the reply on the loop, with no
    thread in between. GIL-bound Python work runs in parallel, and a job
    stuck in C can be killed. POSIX only (the loop waits on the pipe).

    Args:
        start_method: A :mod:`multiprocessing` start method: ``"forkserver"``
            (the default) or ``"spawn"``.
            ``"fork"`` is refused: the pool's process may have threads.
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
        RuntimeError: on a system that is not POSIX (Windows).
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
        if os.name != "posix":
            raise RuntimeError(
                "ProcessHost needs a POSIX system: the event loop waits on each child's pipe"
            )
        if start_method is None:
            start_method = "forkserver"
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
            preload = [f"{__package__}._child", f"{__package__}._sigint_ignored"]
            self._context.set_forkserver_preload(preload)

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


@contextlib.contextmanager
def _sigint_blocked() -> Generator[None, None, None]:
    """Block SIGINT in this thread meanwhile.

    A child made meanwhile inherits the mask, across exec too: a spawned
    child holds a Ctrl-C pending from its first instruction, through
    Python's start and multiprocessing's bootstrap, until
    :func:`._child.child_main` ignores it, which drops it. (A forkserver's
    children ignore SIGINT from the start anyway: see ``_sigint_ignored``.)
    """
    # Started first: starting it unblocks SIGINT in the calling thread, whatever
    # was blocked before (multiprocessing.resource_tracker.ensure_running).
    multiprocessing.resource_tracker.ensure_running()
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def _start(process: Any) -> None:
    """Start the child (in a thread: a forkserver's start waits for its answer)."""
    with _sigint_blocked():  # a spawned child starts with it blocked: see child_main
        process.start()


class _Pipe:
    """The pool's end of a child's pipe, read and written by one task of the loop.

    Frames as :class:`multiprocessing.connection.Connection` makes them
    (a 4-byte big-endian length, or -1 and an 8-byte one), so the child
    reads and writes with a plain Connection. The file descriptor is
    non-blocking: the task waits on the loop whenever the pipe is full or
    empty, and a cancelled wait loses nothing (what is read stays here).
    Small frames come in reads of ``_CHUNK`` bytes; a big one is read
    straight into a buffer of its size, copied once. A frame bigger than
    the kernel's buffer is written or read in a thread (so the loop neither
    stalls nor wakes for each part), while the task waits for it.
    """

    def __init__(self, conn: Any) -> None:
        self._conn = conn  # (holds the file descriptor open)
        self._fd: int = conn.fileno()
        os.set_blocking(self._fd, False)
        self._readable, self._writable = fd_waits()
        self._buffer = bytearray()  # read, not yet taken as a frame
        self._big: bytearray | None = None  # a big frame being read, and its bytes so far
        self._filled = 0

    async def send(self, *parts: bytes) -> None:
        """Write one frame made of ``parts`` (never cancelled half-way: the task is shielded)."""
        size = sum(map(len, parts))
        header = struct.pack("!i", size) if size <= 0x7FFFFFFF else struct.pack("!iQ", -1, size)
        if size > _THREADED:
            await anyio.to_thread.run_sync(self._blocking, self._write_all, header, *parts)
            return
        for part in (b"".join((header, *parts)),) if size <= _SMALL else (header, *parts):
            view = memoryview(part)
            while view:
                try:
                    view = view[os.write(self._fd, view) :]
                except BlockingIOError:  # noqa: PERF203 (the pipe is full: a big frame)
                    await self._writable(self._fd)

    def send_now(self, data: bytes) -> None:
        """Write one small frame at once, or nothing (BlockingIOError)."""
        frame = struct.pack("!i", len(data)) + data
        written = os.write(self._fd, frame)
        if written != len(frame):  # (a socket takes a small write whole, or not at all)
            raise RuntimeError(f"only {written} bytes of a {len(frame)}-byte frame were written")

    async def receive(self) -> bytearray:
        """The next frame; EOFError once the child's end is closed."""
        while (frame := self._frame()) is None:
            if self._big is not None and len(self._big) > _THREADED:
                await anyio.to_thread.run_sync(self._blocking, self._fill_big)
                continue
            try:
                count = self._read()
            except BlockingIOError:
                await self._readable(self._fd)
                continue
            if not count:
                raise EOFError
        return frame

    def _blocking(self, step: Callable[..., None], *args: Any) -> None:
        """``step(*args)`` with the pipe blocking meanwhile (in a thread)."""
        os.set_blocking(self._fd, True)
        try:
            step(*args)
        finally:
            os.set_blocking(self._fd, False)

    def _write_all(self, *parts: bytes) -> None:
        for part in parts:
            view = memoryview(part)
            while view:
                view = view[os.write(self._fd, view) :]

    def _fill_big(self) -> None:
        """Read the rest of the big frame (EOFError if the child's end closes first)."""
        assert self._big is not None
        while self._filled < len(self._big):
            if not self._read():
                raise EOFError

    def _read(self) -> int:
        """Read what has come (into the big frame, if one is being read); how many bytes."""
        if self._big is None:
            chunk = os.read(self._fd, _CHUNK)
            self._buffer += chunk
            return len(chunk)
        count = os.readv(self._fd, [memoryview(self._big)[self._filled :]])
        self._filled += count
        return count

    def _frame(self) -> bytearray | None:
        """The next whole frame, taken out of what is read; None if there is none yet."""
        if self._big is not None:
            if self._filled < len(self._big):
                return None
            frame, self._big = self._big, None
            return frame
        buffer = self._buffer
        if len(buffer) < 4:
            return None
        (size,) = struct.unpack_from("!i", buffer)
        start = 4
        if size == -1:
            if len(buffer) < 12:
                return None
            (size,) = struct.unpack_from("!Q", buffer, 4)
            start = 12
        end = start + size
        if len(buffer) >= end:
            frame = buffer[start:end]
            del buffer[:end]
            return frame
        if size <= _CHUNK:
            return None
        # A big frame: what is read of it moves to a buffer of its own, filled in place.
        self._big = bytearray(size)
        self._filled = len(buffer) - start
        self._big[: self._filled] = memoryview(buffer)[start:]
        buffer.clear()
        return self._frame()

    def close(self) -> None:
        self._conn.close()


class InProcess(LoopHost):
    """Drives one child process from the worker's task, on the event loop."""

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
        self._pipe: _Pipe | None = None
        self._process: Any = None
        # How interrupt() reaches a job that runs (see _wait_for_frame): the task
        # waits without a scope (and interrupt() relays), or in this scope.
        self._listening = False
        self._waiting: anyio.CancelScope | None = None
        self._small_call = True  # the running job's call fits the pipe many times over
        self._killed_for_cancel = False
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

    async def load(self, worker: WorkerInfo) -> None:
        self._name = worker.name
        loader = pack_loader(self._loader, self._args, "a worker process")
        parent_end, child_end = self._context.Pipe()
        process = self._context.Process(target=child_main, args=(child_end,), name=worker.name)
        try:
            await anyio.to_thread.run_sync(_start, process)
        except BaseException:
            parent_end.close()
            raise
        finally:
            child_end.close()  # the child holds it now: its death shows as an end of file here
        self._pipe, self._process = _Pipe(parent_end), process
        doing = "loading its interface"
        try:
            await self._send(("load", loader, worker.id, worker.name), doing)
            reply = await self._message(await self._receive(None, doing), "loader's")
        except HostDied as died:
            raise died.error from None
        if reply[0] == "failed":
            await self._end()
            raise reply[1]
        self._operations = reply[1]

    async def execute(
        self,
        fn: Callable[..., Any] | str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        with_interface: bool,
        job: LoopJobView,
    ) -> outcome.Outcome[Any]:
        payload = pack_call(fn, args, kwargs, with_interface, "the worker process")
        if isinstance(payload, outcome.Error):
            return payload
        doing = "running a job"
        self._small_call = len(payload) <= _SMALL
        await self._send_bytes(
            *call_frame(payload, self._relay.start(job)), doing="being sent a job"
        )
        while not is_outcome(frame := await self._receive(job, doing)):
            answer: outcome.Outcome[Any]
            try:  # a request the job makes: ("wait", key, timeout) or ("loop", async_fn, args)
                kind, *request = pickle.loads(frame)
            except BaseException as exc:
                answer = outcome.Error(TypeError(f"the job's request cannot be received: {exc!r}"))
            else:
                if kind == "wait":
                    answer = await outcome.acapture(job.wait_for_on_loop, *request)
                else:  # "loop"
                    answer = await job.call_on_loop(*request)
            try:
                encoded = dumps(("answer", answer))
            except (pickle.PicklingError, TypeError, AttributeError) as exc:
                failed = TypeError(f"cannot send the answer: {exc}")
                encoded = dumps(("answer", outcome.Error(failed)))
            await self._send_bytes(encoded, doing=doing)
        return decode_outcome(frame, "the worker process")

    def interrupt(self) -> None:
        """Relay the running job's cancel request now (loop thread)."""
        if self._waiting is not None:
            self._waiting.cancel()  # the task relays it
        elif self._listening:
            self._relay_now()

    def kill(self) -> bool:
        """Kill the child: the worker's task sees its pipe end, and its job fails."""
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

    async def close(self, exc_info: ExcInfo) -> BaseException | None:
        """Run the hook in the child; kill it if the hook outlasts ``grace_period``."""
        if self._pipe is None:
            return None
        doing = "running its exit hook"
        reply: tuple[Any, ...] | None = None
        try:
            with anyio.move_on_after(self._grace_period):
                await self._send(("close", pack_exc_info(exc_info)), doing)
                reply = await self._message(await self._receive(None, doing), "hook's")
        except HostDied as died:
            return died.error
        if reply is not None:
            await self._end()
            error: BaseException | None = reply[1]
            return error
        self.kill()
        await self._end()
        return BrokenWorkerError(
            f"worker {self._name}: its exit hook did not finish within grace_period="
            f"{self._grace_period} s; its process was killed"
        )

    # --- the pipe ----------------------------------------------------------

    async def _send(self, message: tuple[Any, ...], doing: str) -> None:
        """Send ``message``; HostDied if the child is gone (its end of the pipe closed)."""
        await self._send_bytes(dumps(message), doing=doing)

    async def _send_bytes(self, *parts: bytes, doing: str) -> None:
        assert self._pipe is not None
        try:
            await self._pipe.send(*parts)
        except OSError as exc:
            raise await self._died(doing) from exc

    async def _receive(self, job: LoopJobView | None, doing: str) -> bytearray:
        """The child's next frame; meanwhile relay ``job``'s cancel request.

        Raises:
            HostDied: the child died (or was killed for ``kill_on_cancel``).
        """
        pipe = self._pipe
        assert pipe is not None
        try:
            if job is None:  # a load or a hook: nothing to relay (a dead child ends the wait)
                return await pipe.receive()
            frame: bytearray | None = None
            while frame is None and not self._killed_for_cancel:
                if (step := self._relay.step()) == "ask":
                    await self._send_bytes(_CANCEL, doing=doing)
                elif step == "kill":
                    self._kill_for_cancel()
                    break
                frame = await self._wait_for_frame(pipe)
            if frame is not None and not self._killed_for_cancel:
                return frame
        except (EOFError, OSError) as exc:
            if not self._killed_for_cancel:
                raise await self._died(doing) from exc
        # Even if the child's reply had come: the worker must not go on with a killed child.
        await self._end()
        raise HostDied(killed_for_cancel(self._name, "process"))

    async def _wait_for_frame(self, pipe: _Pipe) -> bytearray | None:
        """The child's next frame, or None if :meth:`interrupt` or a kill's deadline came first.

        While only a small call is on its way to the child, :meth:`interrupt`
        relays the request itself (``_listening``): no cancel scope, which
        would cost as much as the rest of the wait. Otherwise it cancels the
        wait (``_waiting``), and the task relays it.
        """
        left = self._relay.seconds_left()
        if left is None and self._small_call and not self._relay.counts_down:
            self._listening = True
            try:
                return await pipe.receive()
            finally:
                self._listening = False
        try:
            with anyio.CancelScope() as self._waiting:
                if left is not None:
                    self._waiting.deadline = anyio.current_time() + left
                return await pipe.receive()
        finally:
            self._waiting = None
        return None

    def _relay_now(self) -> None:
        """Pass the running job's cancel request on from here (the task listens meanwhile)."""
        step = self._relay.step()
        if step == "kill":
            self._kill_for_cancel()
        elif step == "ask" and self._pipe is not None:
            try:
                self._pipe.send_now(_CANCEL)
            except BlockingIOError:  # a send buffer smaller than a small call: not now
                self._relay.retract()
                logger.warning(
                    "worker %s: its job's cancel request could not be sent at once "
                    "(the pipe to its process is full); it is sent if the job next asks the pool "
                    "for something (wait, from_loop)",
                    self._name,
                )
            except OSError:  # the child is gone: the task sees its end
                pass

    def _kill_for_cancel(self) -> None:
        self._killed_for_cancel = True
        self.kill()

    async def _message(self, frame: bytearray, whose: str) -> tuple[Any, ...]:
        """A reply of the child's, unpickled; ends the child if it cannot be.

        Raises:
            HostDied: with a TypeError naming ``whose`` (the "loader's", say) reply.
        """
        try:
            message: tuple[Any, ...] = pickle.loads(frame)
        except BaseException as exc:
            await self._end()
            error = TypeError(f"worker {self._name}: the {whose} reply cannot be received: {exc!r}")
            error.__cause__ = exc
            raise HostDied(error) from exc
        return message

    async def _died(self, doing: str) -> HostDied:
        """The child has died: end what is left of it; the error for its job or load."""
        pid = self.pid
        how = await self._end(wait=1.0)
        error = BrokenWorkerError(
            f"worker {self._name}'s process (pid {pid}) died while {doing}: {how}"
        )
        return HostDied(error)

    async def _end(self, wait: float | None = None) -> str:
        """The child is done with, or has to go: make sure it is gone, and reaped.

        It gets ``wait`` seconds to end by itself (``grace_period`` by default);
        returns how it ended, in words.
        """
        process, self._process = self._process, None
        pipe, self._pipe = self._pipe, None
        if pipe is not None:
            pipe.close()
        if process is None:
            return "it had ended"
        readable, _ = fd_waits()
        with anyio.move_on_after(self._grace_period if wait is None else wait):
            await readable(process.sentinel)
        how = _how_it_ended(process.exitcode)
        if process.exitcode is None:
            process.kill()
            with anyio.CancelScope(shield=True):
                await readable(process.sentinel)
        process.join()  # reaped (and out of multiprocessing's list of children)
        # Not process.close(): it empties the Process before leaving that list, and
        # another worker's start (in a thread) may be looking at the list meanwhile
        # (multiprocessing's _cleanup() then fails on it). Its last file descriptor
        # closes as the object goes, now.
        return how


def _how_it_ended(code: int | None) -> str:
    if code is None:
        return "it stopped answering"
    if code < 0:
        try:
            return f"it was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"it was killed by signal {-code}"
    return f"it exited with code {code}"
