"""The Pool-level suite, over every host: threads, processes and (3.13+) subinterpreters.

What a user does with a pool (calls, map, submit, broadcast, leases, resize,
define, autoscaling, renewal, cancellation, exit hooks, loader and hook
errors, what cannot cross) must hold wherever the interfaces live. Jobs may
run in another process or interpreter, so they synchronise through files
(:class:`FileGate`), never through threading objects, and each interface
notes its load and its exit, with where it lives, in a record file. The Ray
host runs this same suite in tests/on_ray/test_pool_on_ray.py (the ``ray``
nox session, on a real local cluster). What only
one host does (a process killed, a subinterpreter's refusals) is in that
host's own module.
"""

from __future__ import annotations

import contextlib
import os
import random
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import anyio
import outcome
import pytest

import trio_pool
from trio_pool._hosts._base import HostChoice

from helpers import TIMEOUT, FileGate, cancel_once_entered, poll_until, wait_in_thread

if sys.version_info < (3, 11):
    from exceptiongroup import BaseExceptionGroup

pytestmark = pytest.mark.timeout(60)

HOSTS: dict[str, HostChoice] = {
    "thread": trio_pool.ThreadHost(),
    "process": trio_pool.ProcessHost(grace_period=TIMEOUT),
}
if sys.version_info >= (3, 13):  # (before, InterpreterHost only refuses: its own module tests that)
    HOSTS["interpreter"] = trio_pool.InterpreterHost()
#: The hosts whose jobs can wait() and call from_loop() (relayed by the worker).
RELAYING = ["process", "thread"]
#: The hosts whose workers are tasks of the loop, not threads.
LOOP_DRIVEN = ["process", "ray"]


def is_far(host: str) -> bool:
    """Whether the interfaces live outside the pool's interpreter (what crosses is pickled)."""
    return host != "thread"


def lines(record: Path) -> list[str]:
    return record.read_text().splitlines() if record.exists() else []


def home() -> str:
    """Where the caller runs: its process, and its subinterpreter (0 for the main one)."""
    interpreter = 0
    if sys.version_info >= (3, 13):
        import _interpreters  # pyright: ignore

        interpreter = _interpreters.get_current()[0]
    return f"{os.getpid()}.{interpreter}"


class Model:
    """A per-worker object: it notes its load and its exit, with its home, in a record file."""

    def __init__(self, scale: int, record: str) -> None:
        self.scale = scale
        self.record = record
        self.calls = 0
        self.token = uuid.uuid4().hex  # this interface, and no other
        self._note(f"load {trio_pool.current_worker().id} {home()}")

    def _note(self, line: str) -> None:
        with open(self.record, "a") as file:
            file.write(line + "\n")

    def predict(self, x: int) -> int:
        self.calls += 1
        return x * self.scale

    def calls_so_far(self) -> int:
        return self.calls

    def where(self) -> tuple[str, int, str]:
        """Its home, its worker's id and its token."""
        assert trio_pool.current_interface() is self
        return home(), trio_pool.current_worker().id, self.token

    def fail(self, n: int) -> None:
        raise LookupError("no such row", n)

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        kind = "None" if exc_type is None else exc_type.__name__
        self._note(f"exit {trio_pool.current_worker().id} {home()} {kind}")


def check_each_hook_ran_once_where_it_loaded(record: Path, loads: int) -> None:
    loaded = [line for line in lines(record) if line.startswith("load")]
    exits = [line for line in lines(record) if line.startswith("exit")]
    assert len(loaded) == loads
    assert sorted(e.rsplit(" ", 1)[0].replace("exit", "load") for e in exits) == sorted(loaded)


def scaled(model: Model, x: int) -> int:
    return model.predict(x) + 1


def interface_scale() -> int:
    model: Model = trio_pool.current_interface()
    return model.scale


async def double(x: int) -> int:
    await anyio.lowlevel.checkpoint()
    return 2 * x


def ask_the_loop(x: int) -> int:
    result: int = trio_pool.from_loop(double, x)
    return result


def wait_for_go(token: int) -> tuple[Any, ...]:
    return trio_pool.wait(("go", token), TIMEOUT)


def spin_until_cancelled(started: FileGate, *ballast: object) -> str:
    """Open ``started``, then run until cancelled (``ballast``: what the call carries besides)."""
    started.open()
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        trio_pool.check_cancelled()
        time.sleep(0.001)
    return "never cancelled"


def note_pids(pool: trio_pool.Pool, pids: set[int]) -> None:
    pids.update(w.pid for w in pool.statistics().worker_states if w.pid is not None)


@pytest.fixture(params=sorted(HOSTS))
def host(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@pytest.fixture(params=sorted(filter(is_far, HOSTS)))
def far_host(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


async def test_calls_map_broadcast_a_lease_and_resize(
    backend: str, host: str, record: Path, pids: set[int]
) -> None:
    async with trio_pool.Pool(Model, 3, str(record), workers=2, host=HOSTS[host]) as pool:
        note_pids(pool, pids)
        assert await pool.interface.predict(2) == 6
        assert await pool.call("predict", 3) == outcome.Value(9)
        assert await pool.call_method(Model.predict, 4) == 12
        assert await pool.call_method(scaled, 5) == 16
        assert await pool.run(lambda x: x + 1, 1) == 2  # lambdas travel
        offset = 10
        assert await pool.run(lambda: offset + 1) == 11  # and closures
        if host in RELAYING:
            assert await pool.run(ask_the_loop, 21) == 42  # from_loop, relayed
        job = await pool.submit(pow, 2, 10)
        assert (await job.wait()).unwrap() == 1024
        async with pool.map(lambda x: x * x, range(6)) as results:
            assert [x async for x in results] == [0, 1, 4, 9, 16, 25]
        where = [r.unwrap() for r in await pool.broadcast("where")]
        assert sorted(worker for _, worker, _ in where) == [0, 1]
        homes = {place for place, _, _ in where}
        if host == "thread":
            assert homes == {home()}
        else:  # a process or an interpreter each, none of them this one
            assert len(homes) == 2
            assert home() not in homes
        worker_pids = {w.pid for w in pool.statistics().worker_states}
        assert worker_pids == {int(place.split(".")[0]) for place in homes}
        async with pool.lease() as lease:  # one worker, one interface, call after call
            first = await lease.interface.calls_so_far()
            await lease.interface.predict(1)
            assert await lease.interface.calls_so_far() == first + 1
        failed = await pool.call("fail", 7)
        assert isinstance(failed, outcome.Error)
        assert type(failed.error) is LookupError
        assert failed.error.args == ("no such row", 7)
        if is_far(host):  # the far side's traceback comes along
            assert "in fail" in str(failed.error.__cause__)
        await pool.resize(3)
        note_pids(pool, pids)
        assert pool.worker_count == 3
        await pool.resize(1)
    check_each_hook_ran_once_where_it_loaded(record, loads=3)


class Session:
    """A per-worker session that a lease opens and its reset closes."""

    def __init__(self) -> None:
        self.open = False

    def begin(self) -> None:
        self.open = True

    def is_open(self) -> bool:
        return self.open

    def reset(self) -> None:
        self.open = False


async def test_broadcast_method_and_a_lease_reset(backend: str, host: str, pids: set[int]) -> None:
    await check_broadcast_method_and_a_lease_reset(HOSTS[host], pids)


async def check_broadcast_method_and_a_lease_reset(host: HostChoice, pids: set[int]) -> None:
    """(Also run by tests/on_ray.)"""
    async with trio_pool.Pool(Session, workers=2, host=host) as pool:
        note_pids(pool, pids)
        with anyio.CancelScope() as scope:
            async with pool.lease(reset=Session.reset) as session:
                await session.call_method(Session.begin)
                opened = await pool.broadcast_method(Session.is_open)  # reaches the lease too
                assert sorted(o.unwrap() for o in opened) == [False, True]
                scope.cancel()
                await anyio.sleep_forever()
        assert scope.cancelled_caught
        closed = await pool.broadcast_method(Session.is_open)
        assert [o.unwrap() for o in closed] == [False, False]


async def test_a_cancelled_caller_stops_a_cooperative_job(
    backend: str, host: str, tmp_path: Path, pids: set[int]
) -> None:
    await check_a_cancelled_caller_stops_a_cooperative_job(HOSTS[host], tmp_path, pids)


async def check_a_cancelled_caller_stops_a_cooperative_job(
    host: HostChoice, tmp_path: Path, pids: set[int], *ballast: object
) -> None:
    """(Also run by tests/on_ray, and with a big ``ballast`` by tests/test_process_host.)"""
    started = FileGate(tmp_path / "started")
    async with trio_pool.Pool(workers=1, host=host) as pool:
        note_pids(pool, pids)
        scope = await cancel_once_entered(
            started, pool.run, spin_until_cancelled, started, *ballast
        )
        assert scope.cancelled_caught
        assert pool.statistics().cancelled == 1
        assert await pool.run(trio_pool.check_cancelled) is None  # not the next job's cancel
        assert await pool.run(int, "5") == 5  # the worker keeps serving


async def test_job_cancel_reaches_a_running_job(
    backend: str, host: str, tmp_path: Path, pids: set[int]
) -> None:
    started = FileGate(tmp_path / "started")
    async with trio_pool.Pool(workers=1, host=HOSTS[host]) as pool:
        note_pids(pool, pids)
        job = await pool.submit(spin_until_cancelled, started)
        await wait_in_thread(started)
        assert not job.cancel()  # it runs: asked to stop
        result = await job.wait()
        assert isinstance(result, outcome.Error)
        assert isinstance(result.error, trio_pool.JobCancelled)
        assert await pool.run(trio_pool.check_cancelled) is None  # not the next job's


async def test_a_worker_is_a_thread_unless_its_host_is_driven_from_the_loop(
    backend: str, host: str, tmp_path: Path, pids: set[int]
) -> None:
    started = FileGate(tmp_path / "started")
    async with trio_pool.Pool(workers=2, host=HOSTS[host]) as pool:
        note_pids(pool, pids)
        job = await pool.submit(spin_until_cancelled, started)
        await wait_in_thread(started)
        names = {worker.name for worker in pool.statistics().worker_states}
        threads = [t.name for t in threading.enumerate() if t.name in names]
        assert len(threads) == (0 if host in LOOP_DRIVEN else 2), threads
        job.cancel()


async def test_an_error_exit_stops_a_cooperative_job_and_tells_the_hook(
    backend: str, host: str, tmp_path: Path, record: Path, pids: set[int]
) -> None:
    started = FileGate(tmp_path / "started")
    with pytest.raises(LookupError):
        async with trio_pool.Pool(Model, 1, str(record), workers=1, host=HOSTS[host]) as pool:
            note_pids(pool, pids)
            job = await pool.submit(spin_until_cancelled, started)
            await wait_in_thread(started)
            raise LookupError("the block fails")
    result = job.outcome
    assert isinstance(result, outcome.Error)
    assert isinstance(result.error, trio_pool.JobCancelled)
    assert [line.rsplit(" ", 1)[1] for line in lines(record) if "exit" in line] == ["LookupError"]


async def test_define_and_autoscaling(
    backend: str, host: str, record: Path, pids: set[int]
) -> None:
    options: dict[str, Any] = {"min_workers": 0, "max_workers": 2, "idle_timeout": 0.01}
    async with trio_pool.Pool(Model, 4, str(record), host=HOSTS[host], **options) as pool:
        assert pool.worker_count == 0
        scale_of = pool.define("scale_of", interface_scale)
        assert await scale_of() == 4  # the first job started a worker
        note_pids(pool, pids)
        if host in RELAYING:
            job = await pool.submit(wait_for_go, 1)
            await poll_until(lambda: job.worker_id is not None)
            assert job.worker_id is not None
            pool.notify(job.worker_id, ("go", 1), "went")  # relayed to a far side
            assert (await job.wait()).unwrap() == ("went",)
        pool.undefine("scale_of")
        with pytest.raises(AttributeError):
            await pool.interface.scale_of()
        await poll_until(lambda: pool.worker_count == 0)  # idle workers retire
        assert pool.statistics().scaled_down >= 1
    assert len([line for line in lines(record) if line.startswith("exit")]) >= 1


async def test_a_renewed_worker_gets_a_new_interface(
    backend: str, host: str, record: Path, pids: set[int]
) -> None:
    async with trio_pool.Pool(
        Model, 1, str(record), workers=1, host=HOSTS[host], max_jobs_per_worker=2
    ) as pool:
        seen = []
        for _ in range(3):
            seen.append(await pool.interface.where())
            note_pids(pool, pids)
        assert pool.statistics().workers_renewed == 1
    (home_1, _, token_1), (home_2, _, token_2), (home_3, _, token_3) = seen
    assert token_1 == token_2 != token_3
    assert home_1 == home_2
    assert (home_2 == home_3) is (host == "thread")  # a new process or interpreter elsewhere
    check_each_hook_ran_once_where_it_loaded(record, loads=2)


class LoaderError(Exception):
    pass


def failing_loader() -> None:
    raise LoaderError("no model", 3)


async def test_a_loader_error_keeps_its_type_and_its_traceback(backend: str, host: str) -> None:
    with pytest.raises(LoaderError) as info:
        async with trio_pool.Pool(failing_loader, workers=1, host=HOSTS[host]):
            raise AssertionError("the pool opened")
    assert info.value.args == ("no model", 3)
    if is_far(host):
        assert "in failing_loader" in str(info.value.__cause__)
    else:
        assert info.traceback[-1].name == "failing_loader"


class FailingHook:
    def __init__(self, record: str) -> None:
        self.record = record

    def __exit__(self, *exc_info: Any) -> None:
        with open(self.record, "a") as file:
            file.write(f"exit {home()}\n")
        raise LookupError("the hook fails", trio_pool.current_worker().id)


async def test_hook_errors_are_raised_at_the_exit(
    backend: str, host: str, record: Path, pids: set[int]
) -> None:
    with pytest.raises(BaseExceptionGroup) as info:
        async with trio_pool.Pool(FailingHook, str(record), workers=2, host=HOSTS[host]) as pool:
            note_pids(pool, pids)
    assert sorted(e.args for e in info.value.exceptions if type(e) is LookupError) == [
        ("the hook fails", 0),
        ("the hook fails", 1),
    ]
    assert len(lines(record)) == 2  # each hook once


async def test_what_cannot_cross_fails_only_its_job(
    backend: str, far_host: str, pids: set[int]
) -> None:
    async with trio_pool.Pool(workers=1, host=HOSTS[far_host]) as pool:
        note_pids(pool, pids)
        lock = threading.Lock()
        with pytest.raises(TypeError, match=r"argument 1 \(<unlocked _thread.lock"):
            await pool.run(print, "x", lock)
        with pytest.raises(TypeError, match="result cannot be sent back"):
            await pool.run(threading.Lock)
        assert await pool.run(home) != home()  # the worker goes on, elsewhere


# --- random programs: many callers, cancellations, errors, resizes and renewals ------


def random_job(i: int, kind: str) -> object:
    if kind == "error":
        raise ValueError(i)
    if kind == "unpicklable":
        return threading.Lock()
    if kind == "spin":
        deadline = time.monotonic() + TIMEOUT  # a bound against a hang, not a measurement
        while time.monotonic() < deadline:
            trio_pool.check_cancelled()
        return "never cancelled"
    return i * i


async def check_a_random_program(host: HostChoice, seed: int, tmp_path: Path) -> None:
    """Every caller hears back once, with its own result; every hook runs once, where it loaded.

    Many callers, cancelled at once, while they wait or while their job
    runs; errors, results that cannot cross, resizes and renewals.
    """
    rng = random.Random(seed)
    record = tmp_path / "record"
    renew = rng.choice([None, 3])
    got: dict[int, object] = {}

    async def caller(pool: trio_pool.Pool[Model], i: int, kind: str, cancel: bool) -> None:
        with anyio.CancelScope() as scope:
            if cancel:  # cancelled at once, or while it waits, or while it runs
                scope.cancel() if rng.random() < 0.3 else tg.start_soon(cancel_soon, scope)
            try:
                got[i] = await pool.run(random_job, i, kind)
            except (ValueError, TypeError) as exc:
                got[i] = exc
        if scope.cancelled_caught:
            got[i] = "cancelled"

    async def cancel_soon(scope: anyio.CancelScope) -> None:
        for _ in range(rng.randrange(5)):
            await anyio.lowlevel.checkpoint()
        scope.cancel()

    kinds = {}
    async with trio_pool.Pool(
        Model, 2, str(record), workers=rng.randint(1, 3), host=host, max_jobs_per_worker=renew
    ) as pool:
        async with anyio.create_task_group() as tg:
            for i in range(40):
                kind = rng.choice(["value", "value", "value", "error", "unpicklable", "spin"])
                kinds[i] = kind
                tg.start_soon(caller, pool, i, kind, kind == "spin" or rng.random() < 0.2)
                if rng.random() < 0.1:  # one at a time (resizes that overlap may refuse)
                    with contextlib.suppress(ValueError):  # "cannot stop ... now": loading
                        await pool.resize(rng.randint(1, 3))
                if rng.random() < 0.3:
                    await anyio.lowlevel.checkpoint()
    assert sorted(got) == list(range(40))  # every caller heard back, once
    for i, kind in kinds.items():
        result = got[i]
        if result == "cancelled":
            continue
        if kind == "value":
            assert result == i * i  # its own result, never another caller's
        elif kind == "error":
            assert isinstance(result, ValueError)
            assert result.args == (i,)
        elif kind == "unpicklable":
            assert isinstance(result, TypeError)
        else:
            raise AssertionError(f"a spinning job was never cancelled: {result!r}")
    loads = [line for line in lines(record) if line.startswith("load")]
    exits = [line for line in lines(record) if line.startswith("exit")]
    assert sorted(e.rsplit(" ", 1)[0].replace("exit", "load") for e in exits) == sorted(loads)
