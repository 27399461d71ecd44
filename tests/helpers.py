"""Gates and handshakes for tests: threads are synchronised, never slept on."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, Protocol

import anyio

import trio_pool

if sys.version_info < (3, 11):
    from exceptiongroup import BaseExceptionGroup

TIMEOUT = 10  # a bug fails fast; nothing here ever waits this long when it works


def assert_ended_by_ctrl_c(backend: str, stderr: str) -> None:
    """A program's stderr shows that Ctrl-C ended it (on ``backend``: trio or asyncio)."""
    if backend == "asyncio" and sys.version_info < (3, 11):
        # asyncio.run learned to turn Ctrl-C into KeyboardInterrupt in 3.11;
        # before, the main task ends with CancelledError. The pool still stops.
        assert "CancelledError" in stderr or "KeyboardInterrupt" in stderr
    else:
        assert "KeyboardInterrupt" in stderr


class Waitable(Protocol):
    """A ``threading.Event``, or a :class:`FileGate` for jobs in other processes."""

    def wait(self, timeout: float | None = None) -> bool: ...


class FileGate:
    """A handshake that crosses processes: one side touches a file, the other waits for it.

    It waits like a ``threading.Event`` (``wait(timeout)`` returns whether it
    opened), so :func:`wait_in_thread` and :func:`cancel_once_entered` take it.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)

    def open(self) -> None:
        Path(self.path).touch()

    def wait(self, timeout: float | None = TIMEOUT) -> bool:
        deadline = time.monotonic() + (TIMEOUT if timeout is None else timeout)
        while not os.path.exists(self.path):
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.001)
        return True


async def wait_in_thread(event: Waitable) -> None:
    """Wait, without blocking the loop, for a threading.Event (or FileGate) set by a job."""
    assert await anyio.to_thread.run_sync(event.wait, TIMEOUT), "the handshake never came"


async def cancel_once_entered(
    entered: Waitable, async_fn: Callable[..., Awaitable[object]], *args: object
) -> anyio.CancelScope:
    """Run ``async_fn(*args)`` in a task; cancel it once a job sets ``entered``.

    Returns the cancel scope, after the task has finished, for the caller to
    check ``cancelled_caught``.
    """
    with anyio.CancelScope() as scope:
        async with anyio.create_task_group() as tg:
            tg.start_soon(async_fn, *args)
            await wait_in_thread(entered)
            scope.cancel()
    return scope


class Gate:
    """A job blocks in ``enter()`` until the test calls ``open()``.

    ``entered`` is set once a job is inside, so the test knows it runs.
    With ``cooperative``, the job also stops on ``check_cancelled()``.
    """

    def __init__(self, *, cooperative: bool = False) -> None:
        self.entered = threading.Event()
        self.arrivals = threading.Semaphore(0)
        self._open = threading.Event()
        self._cooperative = cooperative

    def open(self) -> None:
        self._open.set()

    async def wait_arrivals(self, count: int) -> None:
        """Wait until ``count`` more jobs have entered."""
        for _ in range(count):
            assert await anyio.to_thread.run_sync(self.arrivals.acquire, True, TIMEOUT)

    def enter(self, value: object = None) -> object:
        self.entered.set()
        self.arrivals.release()
        while not self._open.wait(0.005 if self._cooperative else TIMEOUT):
            if self._cooperative:
                trio_pool.check_cancelled()
            else:
                raise AssertionError("the gate was never opened")
        return value


async def poll_until(predicate: Callable[[], bool]) -> None:
    """Yield to the loop until ``predicate()`` holds (state that threads change).

    It yields without sleeping, so it works under trio's MockClock too; the
    bound is only there so a bug fails instead of hanging.
    """
    deadline = time.monotonic() + TIMEOUT
    while not predicate():
        assert time.monotonic() < deadline, "the condition never came true"
        await anyio.lowlevel.checkpoint()


class Log:
    """A thread-safe list of events, for interfaces to report their life."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.items: list[tuple[Any, ...]] = []

    def add(self, *item: Any) -> None:
        with self.lock:
            self.items.append(item)

    def of(self, kind: str) -> list[tuple[Any, ...]]:
        return [i[1:] for i in self.items if i[0] == kind]


def recording_interface(
    log: Log, *, fail_exit: set[int] = frozenset(), fail_load: set[int] = frozenset()
) -> Any:  # type: ignore[assignment]
    class Iface:
        def __init__(self, tag: str) -> None:
            worker = trio_pool.current_worker().id
            log.add("load", worker, threading.get_ident())
            if worker in fail_load:
                raise OSError(f"cannot load worker {worker}")
            self.tag = tag
            self.thread = threading.get_ident()

        def echo(self, value: object) -> object:
            return (self.tag, value)

        def where(self) -> int:
            assert self.thread == threading.get_ident()
            return threading.get_ident()

        def __exit__(self, *exc_info: Any) -> None:
            worker = trio_pool.current_worker().id
            log.add("exit", worker, threading.get_ident(), exc_info)
            if worker in fail_exit:
                raise RuntimeError(f"hook of worker {worker} failed")

    return Iface


def python_with_ctrl_c(script: str, *args: str) -> list[str]:
    """A command that runs ``script`` in a new Python that Ctrl-C interrupts.

    Python leaves SIGINT ignored if its parent did (a test run started in the
    background, under ``nohup``): the script would never see Ctrl-C.
    """
    enable = "import signal; signal.signal(signal.SIGINT, signal.default_int_handler)\n"
    return [sys.executable, "-c", enable + script, *args]


@contextlib.contextmanager
def started(command: list[str], **options: Any) -> Iterator[subprocess.Popen[str]]:
    """Run ``command`` (text, its stdout and stderr piped); on the way out, kill, reap and close it.

    The test reads what it needs, then ``process.communicate(timeout=30)``;
    whatever fails meanwhile, nothing is left running.
    """
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **options
    ) as process:  # on the way out: its pipes closed, even if the test failed first
        try:
            yield process
        finally:
            process.kill()


def leaves(exc: BaseException) -> Iterator[BaseException]:
    """The exceptions in ``exc``, groups flattened."""
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            yield from leaves(inner)
    else:
        yield exc
