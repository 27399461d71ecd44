"""The promises of the host seam, as one suite run over every host.

A host is driven here as a worker drives it: from one thread (this test's
own, standing in for the worker's), with ``interrupt`` from anywhere. A
loop-driven host (``LoopHost``: a worker that is a task of the loop) is
driven the same way through :class:`FromThread`, which runs each of its
methods on an event loop of its own. Every
interface and function is defined at module level, so that hosts whose far
side is another process can receive them, and what the far side does is
recorded in files (``Record``), which every host can reach.

Hosts that need more than the standard library (``RayHost``) run this suite
from their own test module, with their own ``make_host`` fixture.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys
import threading
import time
from collections.abc import Generator, Hashable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import outcome
import pytest
from anyio.from_thread import BlockingPortal, start_blocking_portal

import trio_pool
from trio_pool._hosts._base import (
    NO_EXC,
    ExcInfo,
    Host,
    HostChoice,
    HostDied,
    LoadInterrupted,
    LoopHost,
    Where,
)
from trio_pool._in_worker import WorkerInfo

from helpers import TIMEOUT, FileGate

HOSTS: dict[str, HostChoice] = {
    "thread": trio_pool.ThreadHost(),
    "process": trio_pool.ProcessHost(grace_period=TIMEOUT),
}
if sys.version_info >= (3, 13):
    HOSTS["interpreter"] = trio_pool.InterpreterHost()
#: Whether interrupt() stops a running call (else the call runs to its end).
INTERRUPTS = {"thread": False, "process": False, "interpreter": False, "ray": False}
#: Whether wait() and from_loop() reach the pool (else they raise RuntimeError).
RELAYS = {"thread": True, "process": True, "interpreter": False, "ray": False}
#: Whether interrupt() stops a load (else the loader runs to its end).
STOPS_LOADS = {"thread": False, "process": False, "interpreter": False, "ray": True}


class Record:
    """Lines the far side appends to a file, read back by the test."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def lines(self) -> list[str]:
        return Path(self.path).read_text().splitlines() if Path(self.path).exists() else []


def note(record: str, line: str) -> None:
    with open(record, "a") as file:
        file.write(line + "\n")


class FromThread:
    """A :class:`LoopHost` driven from a thread, as a worker thread drives a :class:`Host`.

    Each method runs on an event loop in a thread of its own (an anyio
    blocking portal), as the loop-driven worker's task would call it; the
    job's view is served there as the worker serves it.
    """

    def __init__(self, host: LoopHost, portal: BlockingPortal) -> None:
        self._host = host
        self._portal = portal

    @property
    def operations(self) -> frozenset[str]:
        return self._host.operations

    def where(self) -> Where:
        return self._host.where()

    def load(self, worker: WorkerInfo) -> None:
        self._portal.call(self._host.load, worker)

    def execute(
        self, fn: Any, args: tuple[Any, ...], kwargs: dict[str, Any], with_interface: bool, job: Any
    ) -> outcome.Outcome[Any]:
        return self._portal.call(self._host.execute, fn, args, kwargs, with_interface, _OnLoop(job))

    def interrupt(self) -> None:
        self._portal.call(self._host.interrupt)

    def renewal_due(self) -> str | None:
        return self._host.renewal_due()

    def kill(self) -> bool:
        return self._portal.call(self._host.kill)

    def close(self, exc_info: ExcInfo) -> BaseException | None:
        return self._portal.call(self._host.close, exc_info)


class _OnLoop:
    """A job's view (:class:`View`), as a loop-driven worker gives it to its host."""

    def __init__(self, view: View) -> None:
        self._view = view

    def cancel_requested(self) -> bool:
        return self._view.cancel_requested()

    async def wait_for_on_loop(
        self,
        key: Hashable,
        timeout: float | None,  # noqa: ASYNC109 (the protocol's: a trio_pool.wait() timeout)
    ) -> tuple[Any, ...]:
        return self._view.wait_for(key, timeout)

    async def call_on_loop(self, async_fn: Any, args: tuple[Any, ...]) -> outcome.Outcome[Any]:
        return self._view.call_loop(async_fn, args)


def worker_host(
    choice: HostChoice, loader: object, args: tuple[Any, ...], stack: ExitStack
) -> Host:
    """A new worker's host of ``choice``, driven from this thread whatever its kind."""
    host = choice.worker_hosts(loader, args)()
    if not isinstance(host, LoopHost):
        return host
    return FromThread(host, stack.enter_context(start_blocking_portal("trio")))


class MakeHost:
    """Builds hosts of one kind; closes every one left open after the test."""

    def __init__(self, kind: str, choice: HostChoice, record: Record, stack: ExitStack) -> None:
        self.kind = kind
        self.choice = choice
        self.record = record
        self.made: list[Host] = []
        self._stack = stack

    def __call__(self, loader: object = None, *args: Any) -> Host:
        host = worker_host(self.choice, loader, args, self._stack)
        self.made.append(host)
        return host

    @classmethod
    def fixture(cls, kind: str, choice: HostChoice, tmp_path: Path) -> Iterator[MakeHost]:
        with ExitStack() as stack:
            make = cls(kind, choice, Record(tmp_path / "record"), stack)
            yield make
            for host in make.made:
                host.close(NO_EXC)


@pytest.fixture(params=sorted(HOSTS))
def make_host(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[MakeHost]:
    yield from MakeHost.fixture(request.param, HOSTS[request.param], tmp_path)


class View:
    """A job's view, as a worker gives it to the host."""

    def __init__(self, cancelled: bool = False) -> None:
        self.cancelled = cancelled

    def cancel_requested(self) -> bool:
        return self.cancelled

    def wait_for(self, key: Hashable, timeout: float | None) -> tuple[Any, ...]:
        return ("waited", key)

    def call_loop(self, async_fn: Any, args: tuple[Any, ...]) -> outcome.Outcome[Any]:
        return outcome.Value(("from the loop", args))


def loaded(host: Host) -> Host:
    host.load(WorkerInfo(7, "pool-worker-7"))
    return host


def execute(host: Host, fn: Any, *args: Any, with_interface: bool = False, **kwargs: Any) -> Any:
    return host.execute(fn, args, kwargs, with_interface, View())


class LoaderError(Exception):
    pass


class Interface:
    def __init__(self, value: int, record: str = os.devnull) -> None:
        self.value = value
        self.record = record

    def get(self) -> int:
        return self.value

    def add(self, n: int, *, times: int = 1) -> int:
        return self.value + n * times

    def where(self) -> tuple[int, str, int]:
        worker = trio_pool.current_worker()
        return worker.id, worker.name, trio_pool.current_interface().value

    @property
    def exploding(self) -> int:
        raise AssertionError("a property was run while looking for operations")

    def _private(self) -> None:
        pass

    def __exit__(self, *exc_info: Any) -> None:
        kind = "None" if exc_info[0] is None else exc_info[0].__name__
        note(self.record, f"closed {kind} {exc_info[1]!r} {trio_pool.current_worker().id}")


class Entered:
    def __enter__(self) -> Interface:
        return Interface(42)

    def __exit__(self, *exc_info: Any) -> None:
        pass


class FailingHook:
    def __exit__(self, *exc_info: Any) -> None:
        raise LookupError("the hook failed")


def failing_loader(message: str) -> None:
    raise LoaderError(message, 2)


def raise_(exc: BaseException) -> None:
    raise exc


async def coroutine_function() -> None:
    pass


def read_value(interface: Interface, extra: int) -> int:
    return interface.value + extra


def cancelled() -> bool:
    try:
        trio_pool.check_cancelled()
    except trio_pool.JobCancelled:
        return True
    return False


def test_a_loader_error_is_raised_as_itself(make_host: MakeHost) -> None:
    host = make_host(failing_loader, "no database")
    with pytest.raises(LoaderError) as info:
        host.load(WorkerInfo(0, "w"))
    assert info.value.args == ("no database", 2)


def test_operations_are_found_without_running_properties(make_host: MakeHost) -> None:
    host = loaded(make_host(Interface, 1))
    assert {"get", "add", "where"} <= host.operations
    assert "exploding" not in host.operations
    assert "_private" not in host.operations


def test_calls_by_name_by_function_and_with_the_interface(make_host: MakeHost) -> None:
    host = loaded(make_host(Interface, 10))
    assert execute(host, "add", 2, times=3) == outcome.Value(16)
    assert execute(host, len, "abc") == outcome.Value(3)
    assert execute(host, read_value, 5, with_interface=True) == outcome.Value(15)
    assert execute(host, "where") == outcome.Value((7, "pool-worker-7", 10))


def test_enter_gives_the_interface(make_host: MakeHost) -> None:
    host = loaded(make_host(Entered))
    assert execute(host, "get") == outcome.Value(42)


def test_a_mapping_interface(make_host: MakeHost) -> None:
    host = loaded(make_host({"double": functools.partial(int.__mul__, 2)}))
    assert host.operations == frozenset({"double"})
    assert execute(host, "double", 4) == outcome.Value(8)


@pytest.mark.parametrize("name", ["missing", "_private", "__exit__"])
def test_a_call_that_is_no_operation_is_an_error_inside_the_outcome(
    make_host: MakeHost, name: str
) -> None:
    host = loaded(make_host(Interface, 1))
    result = execute(host, name)
    assert isinstance(result, outcome.Error)
    assert isinstance(result.error, AttributeError)


@pytest.mark.parametrize(
    "error", [ValueError("bad", 3), KeyboardInterrupt(), SystemExit(2), trio_pool.JobCancelled()]
)
def test_every_exception_is_captured_with_its_type_and_arguments(
    make_host: MakeHost, error: BaseException
) -> None:
    host = loaded(make_host(None))
    result = execute(host, raise_, error)
    assert isinstance(result, outcome.Error)
    assert type(result.error) is type(error)
    assert result.error.args == error.args
    assert execute(host, int, "5") == outcome.Value(5)  # it keeps serving


def test_an_async_function_is_an_error(make_host: MakeHost) -> None:
    host = loaded(make_host(None))
    result = execute(host, coroutine_function)
    assert isinstance(result, outcome.Error)
    assert isinstance(result.error, TypeError)


def test_the_job_view_reaches_the_in_job_functions(make_host: MakeHost) -> None:
    host = loaded(make_host(None))
    assert host.execute(cancelled, (), {}, False, View(cancelled=True)) == outcome.Value(True)
    assert host.execute(cancelled, (), {}, False, View()) == outcome.Value(False)
    waited = execute(host, trio_pool.wait, "key")
    looped = execute(host, trio_pool.from_loop, coroutine_function, 1)
    if RELAYS[make_host.kind]:
        assert waited == outcome.Value(("waited", "key"))
        assert looped == outcome.Value(("from the loop", (1,)))
    else:
        for result, name in [(waited, "wait"), (looped, "from_loop")]:
            assert isinstance(result, outcome.Error)
            assert isinstance(result.error, RuntimeError)
            assert f"trio_pool.{name}() does not work on a" in str(result.error)


class CancelledOnceSent(View):
    """Not cancelled when first asked (as the call is sent), cancelled ever after."""

    def __init__(self) -> None:
        super().__init__()
        self.asked = 0

    def cancel_requested(self) -> bool:
        self.asked += 1
        return self.asked > 1


def sees_a_cancel_within(seconds: float) -> bool:
    deadline = time.monotonic() + seconds  # a bound against a hang, not a measurement
    while time.monotonic() < deadline:
        try:
            trio_pool.check_cancelled()
        except trio_pool.JobCancelled:
            return True
        time.sleep(0.001)
    return False


def test_a_cancel_requested_just_after_the_call_was_sent_reaches_the_job(
    make_host: MakeHost,
) -> None:
    # The process host once read the request again as it began to wait for the
    # reply, took it for one already sent with the call, and never relayed it.
    host = loaded(make_host(None))
    view = CancelledOnceSent()
    with interrupting(host):
        result = host.execute(sees_a_cancel_within, (TIMEOUT,), {}, False, view)
    assert result == outcome.Value(True)


@contextlib.contextmanager
def interrupting(host: Host, after: FileGate | None = None) -> Generator[None, None, None]:
    """Call ``host.interrupt()`` over and over meanwhile (once ``after`` opens), as the pool
    does once it has asked a running job to stop."""
    done = threading.Event()

    def interrupt_until_done() -> None:
        if after is not None:
            assert after.wait(), "the job never started"
        while not done.wait(0.001):
            host.interrupt()

    thread = threading.Thread(target=interrupt_until_done)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()


def test_close_runs_the_hook_once_with_the_exception_info(make_host: MakeHost) -> None:
    host = loaded(make_host(Interface, 1, make_host.record.path))
    error = RuntimeError("why")
    assert host.close((RuntimeError, error, None)) is None
    assert host.close(NO_EXC) is None  # once only
    assert make_host.record.lines() == ["closed RuntimeError RuntimeError('why') 7"]


def test_close_returns_what_the_hook_raised(make_host: MakeHost) -> None:
    host = loaded(make_host(FailingHook))
    error = host.close(NO_EXC)
    assert isinstance(error, LookupError)
    assert error.args == ("the hook failed",)


def test_a_host_that_never_loaded_closes_quietly(make_host: MakeHost) -> None:
    host = make_host(failing_loader, "x")
    with pytest.raises(LoaderError):
        host.load(WorkerInfo(0, "w"))
    assert host.close(NO_EXC) is None
    assert make_host.record.lines() == []


def handshake_job(running: FileGate, release: FileGate) -> str:
    running.open()
    assert release.wait(), "the test never released the job"
    return "done"


def test_interrupt_is_safe_at_any_moment(make_host: MakeHost, tmp_path: Path) -> None:
    host = loaded(make_host(Interface, 1, make_host.record.path))
    host.interrupt()
    running, release = FileGate(tmp_path / "running"), FileGate(tmp_path / "release")

    def interrupt_while_running() -> None:
        assert running.wait(), "the job never started"
        host.interrupt()  # from another thread, during a call
        host.interrupt()  # and again
        release.open()

    thread = threading.Thread(target=interrupt_while_running)
    thread.start()
    result = execute(host, handshake_job, running, release)
    thread.join(TIMEOUT)
    assert not thread.is_alive()
    if INTERRUPTS[make_host.kind]:
        assert isinstance(result, outcome.Error)
    else:
        assert result == outcome.Value("done")
    assert host.close(NO_EXC) is None
    host.interrupt()  # after close
    assert make_host.record.lines() == ["closed None None 7"]


def slow_loader(loading: FileGate, release: FileGate, record: str) -> Interface:
    loading.open()
    assert release.wait(), "the test never released the loader"
    return Interface(1, record)


def test_interrupt_stops_a_load_where_the_host_can(make_host: MakeHost, tmp_path: Path) -> None:
    loading, release = FileGate(tmp_path / "loading"), FileGate(tmp_path / "release")
    host = make_host(slow_loader, loading, release, make_host.record.path)
    stops = STOPS_LOADS[make_host.kind]

    def interrupt_while_loading() -> None:
        # (A far side may take long to start on a busy machine: a Ray actor
        # once took over TIMEOUT while another cluster ran beside it.)
        assert loading.wait(6 * TIMEOUT), "the loader never started"
        host.interrupt()
        if not stops:
            release.open()  # (for a host that stops, only after: the load must not win)

    thread = threading.Thread(target=interrupt_while_loading)
    thread.start()
    if stops:
        with pytest.raises(LoadInterrupted):
            host.load(WorkerInfo(7, "pool-worker-7"))
        release.open()
        assert host.close(NO_EXC) is None
        assert make_host.record.lines() == []  # nothing loaded, so no hook
    else:
        host.load(WorkerInfo(7, "pool-worker-7"))
        assert execute(host, "get") == outcome.Value(1)
        assert host.close(NO_EXC) is None
        assert make_host.record.lines() == ["closed None None 7"]
    thread.join(TIMEOUT)
    assert not thread.is_alive()


def test_nothing_of_the_worker_is_left_in_the_thread_after_close(make_host: MakeHost) -> None:
    host = loaded(make_host(Interface, 1))
    host.close(NO_EXC)
    with pytest.raises(RuntimeError):
        trio_pool.current_worker()
    with pytest.raises(RuntimeError):
        trio_pool.current_interface()


# --- kill_on_cancel (process and Ray hosts): their own modules call this --------


class LateCancel(View):
    """Asks the job to stop only once it has finished: its reply is on its way by then."""

    def __init__(self, started: FileGate, finished: FileGate) -> None:
        super().__init__()
        self.started, self.finished = started, finished

    def cancel_requested(self) -> bool:
        if not os.path.exists(self.started.path):
            return False
        assert self.finished.wait(), "the job never finished"
        time.sleep(0.2)  # its reply has reached this side
        return True


def finish_after_a_while(started: FileGate, finished: FileGate) -> str:
    started.open()
    time.sleep(0.3)  # past a few of the host's looks at the cancel request
    finished.open()
    return "finished"


def check_a_kill_that_races_the_reply(choice: HostChoice, tmp_path: Path) -> None:
    """With kill_on_cancel, a cancel that comes with the reply still kills, and says so.

    (The host used to read the reply and go on with a killed process or
    actor: the worker's next job then failed with BrokenWorkerError.)
    """
    with ExitStack() as stack:
        host = loaded(worker_host(choice, None, (), stack))
        started, finished = FileGate(tmp_path / "started"), FileGate(tmp_path / "finished")
        view = LateCancel(started, finished)
        try:
            with pytest.raises(HostDied) as info, interrupting(host, after=started):
                host.execute(finish_after_a_while, (started, finished), {}, False, view)
            assert isinstance(info.value.error, trio_pool.JobCancelled)
            assert "kill_on_cancel=True" in str(info.value.error)
        finally:
            assert host.close(NO_EXC) is None  # nothing left to close
