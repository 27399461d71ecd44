"""InterpreterHost: the Pool with each worker's interface in a subinterpreter of its own.

Jobs here run in another interpreter, so they synchronise through files
(:class:`FileGate`) and report through their results and a record file.
After every test no subinterpreter is left. On Pythons before 3.13 only the
refusal runs: the rest needs the subinterpreters of 3.13.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import outcome
import pytest

import trio_pool

from helpers import (
    TIMEOUT,
    FileGate,
    assert_ended_by_ctrl_c,
    poll_until,
    python_with_ctrl_c,
    started,
    wait_in_thread,
)
from test_process_host import (
    check_a_cancelled_caller_stops_a_cooperative_job,
    check_broadcast_method_and_a_lease_reset,
    lines,
    spin_until_cancelled,
)

pytestmark = pytest.mark.timeout(60)
needs_subinterpreters = pytest.mark.skipif(
    sys.version_info < (3, 13), reason="CPython's subinterpreters come with 3.13"
)


@pytest.fixture(autouse=True)
def no_interpreter_left() -> Iterator[None]:
    yield
    if sys.version_info >= (3, 13):
        import _interpreters  # pyright: ignore

        assert len(_interpreters.list_all()) == 1, "a subinterpreter outlived its pool"


def interpreter_id() -> int:
    import _interpreters  # pyright: ignore

    ident: int = _interpreters.get_current()[0]
    return ident


class Model:
    """A per-worker object: it notes its load and its exit in a record file."""

    def __init__(self, scale: int, record: str) -> None:
        self.scale = scale
        self.record = record
        self.calls = 0
        self._note(f"load {trio_pool.current_worker().id} {interpreter_id()}")

    def _note(self, line: str) -> None:
        with open(self.record, "a") as file:
            file.write(line + "\n")

    def predict(self, x: int) -> int:
        self.calls += 1
        return x * self.scale

    def calls_so_far(self) -> int:
        return self.calls

    def where(self) -> tuple[int, int, int]:
        assert trio_pool.current_interface() is self
        return os.getpid(), trio_pool.current_worker().id, interpreter_id()

    def fail(self, n: int) -> None:
        raise LookupError("no such row", n)

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        kind = "None" if exc_type is None else exc_type.__name__
        self._note(f"exit {trio_pool.current_worker().id} {interpreter_id()} {kind}")


def scaled(model: Model, x: int) -> int:
    return model.predict(x) + 1


def test_kill_on_cancel_is_refused() -> None:
    with pytest.raises(TypeError, match="cannot be killed; use ProcessHost"):
        trio_pool.InterpreterHost(kill_on_cancel=True)  # type: ignore[arg-type]
    assert repr(trio_pool.InterpreterHost()) == "trio_pool.InterpreterHost()"


@pytest.mark.skipif(sys.version_info >= (3, 13), reason="this Python has subinterpreters")
async def test_before_3_13_entering_the_pool_says_what_is_needed(backend: str) -> None:
    pool = trio_pool.Pool(Model, 1, os.devnull, workers=1, host=trio_pool.InterpreterHost())
    with pytest.raises(RuntimeError, match=r"needs CPython 3\.13 or later"):
        async with pool:
            raise AssertionError("the pool opened")


@needs_subinterpreters
async def test_the_pool_on_an_interpreter_host(backend: str, tmp_path: Path) -> None:
    record = tmp_path / "record"
    host = trio_pool.InterpreterHost()
    async with trio_pool.Pool(Model, 3, str(record), workers=2, host=host) as pool:
        assert await pool.interface.predict(2) == 6
        assert await pool.call("predict", 3) == outcome.Value(9)
        assert await pool.call_method(Model.predict, 4) == 12
        assert await pool.call_method(scaled, 5) == 16
        offset = 10
        assert await pool.run(lambda: offset + 1) == 11  # closures travel
        job = await pool.submit(pow, 2, 10)
        assert (await job.wait()).unwrap() == 1024
        async with pool.map(lambda x: x * x, range(6)) as results:
            assert [x async for x in results] == [0, 1, 4, 9, 16, 25]
        where = [r.unwrap() for r in await pool.broadcast("where")]
        assert sorted(worker for _, worker, _ in where) == [0, 1]
        assert {pid for pid, _, _ in where} == {os.getpid()}  # one process
        interpreters = {ident for _, _, ident in where}
        assert len(interpreters) == 2  # an interpreter each
        assert interpreter_id() not in interpreters  # neither of them this one
        async with pool.lease() as lease:  # one worker, one interface, call after call
            first = await lease.interface.calls_so_far()
            await lease.interface.predict(1)
            assert await lease.interface.calls_so_far() == first + 1
        failed = await pool.call("fail", 7)
        assert isinstance(failed, outcome.Error)
        assert type(failed.error) is LookupError
        assert failed.error.args == ("no such row", 7)
        assert "in fail" in str(failed.error.__cause__)  # the far side's traceback
        await pool.resize(3)
        assert pool.worker_count == 3
        await pool.resize(1)
    loads = [line for line in lines(record) if line.startswith("load")]
    exits = [line for line in lines(record) if line.startswith("exit")]
    assert len(loads) == 3
    # Each hook ran once, in the interpreter that built its interface.
    assert sorted(e.rsplit(" ", 1)[0].replace("exit", "load") for e in exits) == sorted(loads)


@needs_subinterpreters
async def test_a_subinterpreter_loads_neither_trio_anyio_nor_outcome(backend: str) -> None:
    # (A lambda travels by value: the interpreter imports no test module for it.)
    # Nor outcome (with attrs, it cost each subinterpreter some 60 ms to start).
    loaded = {"trio", "anyio", "outcome", "attr"}
    frameworks = lambda: sorted({m.partition(".")[0] for m in sys.modules} & loaded)  # noqa: E731
    async with trio_pool.Pool(workers=1, host=trio_pool.InterpreterHost()) as pool:
        assert await pool.run(frameworks) == []
        assert await pool.run(trio_pool.check_cancelled) is None  # the in-job functions too
        assert await pool.run(frameworks) == []


@needs_subinterpreters
async def test_a_cancelled_caller_stops_a_cooperative_job(backend: str, tmp_path: Path) -> None:
    host = trio_pool.InterpreterHost()
    await check_a_cancelled_caller_stops_a_cooperative_job(host, tmp_path, set())


@needs_subinterpreters
async def test_broadcast_method_and_a_lease_reset(backend: str) -> None:
    await check_broadcast_method_and_a_lease_reset(trio_pool.InterpreterHost(), set())


def interface_scale() -> int:
    model: Model = trio_pool.current_interface()
    return model.scale


@needs_subinterpreters
async def test_define_and_autoscaling(backend: str, tmp_path: Path) -> None:
    record = tmp_path / "record"
    options: dict[str, Any] = {"min_workers": 0, "max_workers": 2, "idle_timeout": 0.01}
    host = trio_pool.InterpreterHost()
    async with trio_pool.Pool(Model, 4, str(record), host=host, **options) as pool:
        assert pool.worker_count == 0
        scale_of = pool.define("scale_of", interface_scale)
        assert await scale_of() == 4  # the first job started a worker, and its interpreter
        pool.undefine("scale_of")
        with pytest.raises(AttributeError):
            await pool.interface.scale_of()
        await poll_until(lambda: pool.worker_count == 0)  # idle workers retire
        assert pool.statistics().scaled_down >= 1
    assert len([line for line in lines(record) if line.startswith("exit")]) >= 1


@needs_subinterpreters
async def test_job_cancel_reaches_a_running_job(backend: str, tmp_path: Path) -> None:
    started = FileGate(tmp_path / "started")
    async with trio_pool.Pool(workers=1, host=trio_pool.InterpreterHost()) as pool:
        job = await pool.submit(spin_until_cancelled, started)
        await wait_in_thread(started)
        assert not job.cancel()  # it runs: asked to stop
        result = await job.wait()
        assert isinstance(result, outcome.Error)
        assert isinstance(result.error, trio_pool.JobCancelled)
        assert await pool.run(trio_pool.check_cancelled) is None  # not the next job's


@needs_subinterpreters
async def test_an_error_exit_stops_a_cooperative_job_and_tells_the_hook(
    backend: str, tmp_path: Path
) -> None:
    # The exit's cancel request reaches the subinterpreter at once: before,
    # only a Job.cancel() did, and the job ran on to its deadline.
    started, record = FileGate(tmp_path / "started"), tmp_path / "record"
    with pytest.raises(LookupError):
        async with trio_pool.Pool(
            Model, 1, str(record), workers=1, host=trio_pool.InterpreterHost()
        ) as pool:
            job = await pool.submit(spin_until_cancelled, started)
            await wait_in_thread(started)
            raise LookupError("the block fails")
    result = job.outcome
    assert isinstance(result, outcome.Error)
    assert isinstance(result.error, trio_pool.JobCancelled)
    assert [line.rsplit(" ", 1)[1] for line in lines(record) if "exit" in line] == ["LookupError"]


async def double(x: int) -> int:
    await anyio.lowlevel.checkpoint()
    return 2 * x


def ask_the_loop() -> int:
    result: int = trio_pool.from_loop(double, 1)
    return result


def wait_for_go() -> tuple[Any, ...]:
    return trio_pool.wait("go", TIMEOUT)


@needs_subinterpreters
async def test_wait_and_from_loop_say_they_do_not_work_here(backend: str) -> None:
    async with trio_pool.Pool(workers=1, host=trio_pool.InterpreterHost()) as pool:
        with pytest.raises(RuntimeError, match=r"from_loop\(\) does not work on an Interp"):
            await pool.run(ask_the_loop)
        with pytest.raises(RuntimeError, match=r"wait\(\) does not work on an InterpreterHost"):
            await pool.run(wait_for_go)
        assert await pool.run(int, "5") == 5


@needs_subinterpreters
async def test_what_cannot_cross_fails_only_its_job(backend: str) -> None:
    async with trio_pool.Pool(workers=1, host=trio_pool.InterpreterHost()) as pool:
        lock = threading.Lock()
        with pytest.raises(TypeError, match=r"argument 1 \(<unlocked _thread.lock"):
            await pool.run(print, "x", lock)
        with pytest.raises(TypeError, match="result cannot be sent back"):
            await pool.run(threading.Lock)
        assert await pool.run(int, "5") == 5


class LoaderError(Exception):
    pass


def failing_loader() -> None:
    raise LoaderError("no model", 3)


def needs_readline() -> object:
    import readline

    return readline


@needs_subinterpreters
async def test_a_loader_error_keeps_its_type_and_its_traceback(backend: str) -> None:
    with pytest.raises(LoaderError) as info:
        async with trio_pool.Pool(failing_loader, workers=1, host=trio_pool.InterpreterHost()):
            pass
    assert info.value.args == ("no model", 3)
    assert "in failing_loader" in str(info.value.__cause__)


@needs_subinterpreters
async def test_an_extension_that_refuses_subinterpreters_fails_the_loader(backend: str) -> None:
    with pytest.raises(ImportError, match="does not support loading in subinterpreters"):
        async with trio_pool.Pool(needs_readline, workers=1, host=trio_pool.InterpreterHost()):
            pass


@needs_subinterpreters
async def test_a_renewed_worker_gets_a_new_interpreter(backend: str, tmp_path: Path) -> None:
    record = tmp_path / "record"
    host = trio_pool.InterpreterHost()
    async with trio_pool.Pool(
        Model, 1, str(record), workers=1, host=host, max_jobs_per_worker=2
    ) as pool:
        seen = [(await pool.interface.where())[2] for _ in range(3)]
    assert seen[0] == seen[1] != seen[2]
    assert sorted(line.split()[0] for line in lines(record)) == ["exit", "exit", "load", "load"]


CTRL_C_SCRIPT = """
import os, sys
import anyio, trio_pool

class Iface:
    def __exit__(self, exc_type, exc, tb):  # one write: the two hooks run at once
        os.write(1, f"hook {exc_type is not None}\\n".encode())

def spin():
    print("running", flush=True)  # from the subinterpreter, to the same stdout
    while True:  # a long job that stops when asked
        trio_pool.check_cancelled()

async def main():
    async with trio_pool.Pool(Iface, workers=2, host=trio_pool.InterpreterHost()) as pool:
        async with anyio.create_task_group() as tg:
            for _ in range(4):  # two run, two wait in the queue
                tg.start_soon(pool.run, spin)
            await anyio.sleep_forever()

if __name__ == "__main__":
    anyio.run(main, backend=sys.argv[1])
"""


@needs_subinterpreters
@pytest.mark.parametrize("loop", ["trio", "asyncio"])
def test_ctrl_c_while_jobs_run_in_subinterpreters(loop: str, tmp_path: Path) -> None:
    script = tmp_path / "ctrl_c.py"
    script.write_text(CTRL_C_SCRIPT)
    run = f"import runpy; runpy.run_path({str(script)!r}, run_name='__main__')"
    with started(python_with_ctrl_c(run, loop)) as process:
        assert process.stdout is not None
        assert [process.stdout.readline() for _ in range(2)] == ["running\n"] * 2
        os.kill(process.pid, signal.SIGINT)
        stdout, stderr = process.communicate(timeout=30)
    assert process.returncode != 0
    assert_ended_by_ctrl_c(loop, stderr)
    assert stdout.splitlines() == ["hook True", "hook True"]


# --- random programs: many callers, cancellations, errors, resizes and renewals ------


def job(i: int, kind: str) -> object:
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


@needs_subinterpreters
@pytest.mark.parametrize("seed", range(int(os.environ.get("SEEDS", "8"))))
async def test_random_programs_keep_every_promise(backend: str, seed: int, tmp_path: Path) -> None:
    rng = random.Random(seed)
    record = tmp_path / "record"
    renew = rng.choice([None, 3])
    got: dict[int, object] = {}

    async def caller(pool: trio_pool.Pool[Model], i: int, kind: str, cancel: bool) -> None:
        with anyio.CancelScope() as scope:
            if cancel:  # cancelled at once, or while it waits, or while it runs
                scope.cancel() if rng.random() < 0.3 else tg.start_soon(cancel_soon, scope)
            try:
                got[i] = await pool.run(job, i, kind)
            except (ValueError, TypeError) as exc:
                got[i] = exc
        if scope.cancelled_caught:
            got[i] = "cancelled"

    async def cancel_soon(scope: anyio.CancelScope) -> None:
        for _ in range(rng.randrange(5)):
            await anyio.lowlevel.checkpoint()
        scope.cancel()

    kinds = {}
    host = trio_pool.InterpreterHost()
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
