"""What only an InterpreterHost does: its refusals, its imports, Ctrl-C, random programs.

The Pool-level suite, which runs on this host too (3.13+), is
tests/test_pool_on_every_host.py. Jobs here run in another interpreter, so
they synchronise through files (:class:`FileGate`) and report through their
results. After every test no subinterpreter is left (tests/conftest.py). On
Pythons before 3.13 only the refusals run: the rest needs 3.13.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest

import trio_pool

from helpers import (
    TIMEOUT,
    assert_ended_by_ctrl_c,
    python_with_ctrl_c,
    started,
)
from test_pool_on_every_host import Model, check_a_random_program

pytestmark = pytest.mark.timeout(60)
needs_subinterpreters = pytest.mark.skipif(
    sys.version_info < (3, 13), reason="CPython's subinterpreters come with 3.13"
)


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
async def test_a_subinterpreter_loads_neither_trio_anyio_nor_outcome(backend: str) -> None:
    # (A lambda travels by value: the interpreter imports no test module for it.)
    # Nor outcome (with attrs, it cost each subinterpreter some 60 ms to start).
    loaded = {"trio", "anyio", "outcome", "attr"}
    frameworks = lambda: sorted({m.partition(".")[0] for m in sys.modules} & loaded)  # noqa: E731
    async with trio_pool.Pool(workers=1, host=trio_pool.InterpreterHost()) as pool:
        assert await pool.run(frameworks) == []
        assert await pool.run(trio_pool.check_cancelled) is None  # the in-job functions too
        assert await pool.run(frameworks) == []


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


def needs_readline() -> object:
    import readline

    return readline


@needs_subinterpreters
async def test_an_extension_that_refuses_subinterpreters_fails_the_loader(backend: str) -> None:
    with pytest.raises(ImportError, match="does not support loading in subinterpreters"):
        async with trio_pool.Pool(needs_readline, workers=1, host=trio_pool.InterpreterHost()):
            pass


CTRL_C_SCRIPT = """
import os, sys
import anyio, trio_pool

class Iface:
    def __exit__(self, exc_type, exc, tb):  # one write: the two hooks run at once
        os.write(1, f"hook {exc_type is not None}\\n".encode())

def spin():
    os.write(1, b"running\\n")  # one write: the two jobs run at once, in two interpreters
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


@needs_subinterpreters
@pytest.mark.parametrize("seed", range(int(os.environ.get("SEEDS", "8"))))
async def test_random_programs_keep_every_promise(backend: str, seed: int, tmp_path: Path) -> None:
    await check_a_random_program(trio_pool.InterpreterHost(), seed, tmp_path)
