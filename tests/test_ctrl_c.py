"""Ctrl-C while jobs run: the program ends promptly, hooks run, one Ctrl-C is enough."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers import assert_ended_by_ctrl_c, python_with_ctrl_c, started

SCRIPT = textwrap.dedent(
    """
    import sys, threading, time
    import anyio, trio_pool

    running = threading.Semaphore(0)
    printing = threading.Lock()

    class Iface:
        def __exit__(self, exc_type, exc, tb):
            with printing:
                print("hook", exc_type is not None, flush=True)

    def spin():
        running.release()
        while True:  # a long job that stops when asked
            trio_pool.check_cancelled()
            time.sleep(0.005)

    async def main():
        async with trio_pool.Pool(Iface, workers=2) as pool:
            async with anyio.create_task_group() as tg:
                for _ in range(4):  # two run, two wait in the queue
                    tg.start_soon(pool.run, spin)
                for _ in range(2):
                    await anyio.to_thread.run_sync(running.acquire)
                print("ready", flush=True)
                await anyio.sleep_forever()

    anyio.run(main, backend=sys.argv[1])
    """
)


@pytest.mark.parametrize("backend", ["trio", "asyncio"])
def test_ctrl_c_while_jobs_run(backend: str) -> None:
    with started(python_with_ctrl_c(SCRIPT, backend)) as process:
        assert process.stdout is not None
        assert process.stdout.readline() == "ready\n"
        os.kill(process.pid, signal.SIGINT)
        stdout, stderr = process.communicate(timeout=30)
    assert process.returncode != 0
    assert_ended_by_ctrl_c(backend, stderr)
    assert stdout.splitlines() == ["hook True", "hook True"]


SECOND_CTRL_C = textwrap.dedent(
    """
    import os, sys, time
    import anyio, trio_pool

    backend, gate, kind = sys.argv[1:]  # the job returns only once the gate file exists

    class Iface:
        def __exit__(self, exc_type, exc, tb):
            print("hook", exc_type is not None, flush=True)

    def job():
        print("running", flush=True)  # the test sends the first Ctrl-C
        told = False
        while not os.path.exists(gate):  # never returns by itself, never stops
            if not told:
                try:
                    trio_pool.check_cancelled()
                except trio_pool.JobCancelled:
                    told = True
                    print("told to stop", flush=True)  # the exit waits: the second Ctrl-C
            time.sleep(0.001)
        print("job returned", flush=True)

    options = {
        "thread": {},
        "abandoning thread": {"abandon_on_cancel": True},
        "process": {"host": trio_pool.ProcessHost()},
    }[kind]

    async def main():
        try:
            async with trio_pool.Pool(Iface, workers=1, **options) as pool:
                await pool.submit(job)
                await anyio.sleep_forever()
        finally:
            print("the pool's exit is over", flush=True)

    if __name__ == "__main__":
        anyio.run(main, backend=backend)
    """
)


@contextlib.contextmanager
def ctrl_c_twice(backend: str, kind: str, gate: Path) -> Iterator[subprocess.Popen[str]]:
    """Run SECOND_CTRL_C; Ctrl-C once its job runs, again once the exit asked it to stop."""
    script = gate.with_suffix(".py")
    script.write_text(SECOND_CTRL_C)  # a file: a process host's child imports its job
    run = f"import runpy; runpy.run_path({str(script)!r}, run_name='__main__')"
    with started(python_with_ctrl_c(run, backend, str(gate), kind)) as process:
        assert process.stdout is not None
        assert process.stdout.readline() == "running\n"
        os.kill(process.pid, signal.SIGINT)
        assert process.stdout.readline() == "told to stop\n"
        os.kill(process.pid, signal.SIGINT)
        yield process


@pytest.mark.parametrize("backend", ["trio", "asyncio"])
def test_a_second_ctrl_c_leaves_an_abandoning_pools_thread_behind(
    backend: str, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    with ctrl_c_twice(backend, "abandoning thread", gate) as process:
        assert process.stdout is not None
        assert process.stdout.readline() == "the pool's exit is over\n"
        if backend == "asyncio":  # anyio's thread is no daemon: the program waits for it
            gate.touch()
        stdout, stderr = process.communicate(timeout=30)
    assert process.returncode != 0
    assert_ended_by_ctrl_c(backend, stderr)
    assert "left running the job job after a second Ctrl-C" in stderr
    assert "TrioInternalError" not in stderr
    # The thread was left in its job. On trio the program ended without it;
    # on asyncio only once the job returned, and the thread then ran its hook.
    expected = ["job returned", "hook True"] if backend == "asyncio" else []
    assert stdout.splitlines() == expected


@pytest.mark.parametrize("backend", ["trio", "asyncio"])
def test_a_second_ctrl_c_names_a_thread_the_exit_still_waits_for(
    backend: str, tmp_path: Path
) -> None:
    # A default pool joins its threads: trio.from_thread in its jobs runs in
    # the pool's task, which a thread left behind would give up.
    gate = tmp_path / "gate"
    with ctrl_c_twice(backend, "thread", gate) as process:
        assert process.stderr is not None
        while "still running the job job after a second Ctrl-C" not in process.stderr.readline():
            pass
        gate.touch()
        stdout, stderr = process.communicate(timeout=30)
    assert process.returncode != 0
    assert_ended_by_ctrl_c(backend, stderr)
    assert stdout.splitlines() == ["job returned", "hook True", "the pool's exit is over"]


@pytest.mark.parametrize("backend", ["trio", "asyncio"])
def test_a_second_ctrl_c_kills_a_process_worker_still_running(backend: str, tmp_path: Path) -> None:
    with ctrl_c_twice(backend, "process", tmp_path / "gate") as process:  # it never opens
        stdout, stderr = process.communicate(timeout=30)
    assert process.returncode != 0
    assert_ended_by_ctrl_c(backend, stderr)
    # The child was killed in its job: its hook never ran.
    assert stdout.splitlines() == ["the pool's exit is over"]
    assert "TrioInternalError" not in stderr


SIGNAL_IN_A_WORKER = textwrap.dedent(
    """
    import signal, sys, threading, time
    import anyio, trio_pool

    class Iface:
        def __exit__(self, exc_type, exc, tb):
            print("hook", exc_type is not None, flush=True)

    def job():
        # Ctrl-C delivered to this worker thread, not to the main one, which
        # sleeps in the loop's select(): only a wakeup fd makes the loop see it.
        signal.pthread_kill(threading.get_ident(), signal.SIGINT)
        while True:
            trio_pool.check_cancelled()
            time.sleep(0.005)

    async def main():
        async with trio_pool.Pool(Iface, workers=1) as pool:
            await pool.run(job)

    anyio.run(main, backend=sys.argv[1])
    """
)


@pytest.mark.parametrize("backend", ["trio", "asyncio"])
def test_a_ctrl_c_that_lands_in_a_worker_thread_is_seen(backend: str) -> None:
    with started(python_with_ctrl_c(SIGNAL_IN_A_WORKER, backend)) as process:
        stdout, stderr = process.communicate(timeout=30)
    assert process.returncode != 0
    assert "KeyboardInterrupt" in stderr or "CancelledError" in stderr
    assert stdout.splitlines() == ["hook True"]


CTRL_C_INSIDE = textwrap.dedent(
    """
    import signal, sys, threading
    import trio, trio_pool
    from trio_pool import _completion, _handoff

    point = sys.argv[1]
    fired = []
    hooks = []

    def interrupting(real):
        def patched(*args, **kwargs):
            if not fired:
                fired.append(True)
                signal.raise_signal(signal.SIGINT)  # Ctrl-C, halfway through the change
            return real(*args, **kwargs)
        return patched

    class Iface:
        def __exit__(self, exc_type, exc, tb):
            hooks.append(exc_type.__name__ if exc_type else None)

    pools = []

    async def main():
        gate = threading.Event()
        async with trio_pool.Pool(Iface, workers=1) as pool:
            pools.append(pool)
            await pool.submit(gate.wait, 10)
            queued = await pool.submit(int, "1")
            try:
                if point == "accept":  # counted, then queued
                    _handoff.Handoff.put = interrupting(_handoff.Handoff.put)
                    pool.submit_nowait(int, "2")
                else:  # taken out of the queue, then finished as cancelled
                    _completion.Completion.complete = interrupting(_completion.Completion.complete)
                    queued.cancel()
                print("the change completed", flush=True)
            finally:
                gate.set()
            await trio.sleep_forever()  # the Ctrl-C is raised here, at a checkpoint

    try:
        trio.run(main)
    finally:
        s = pools[0].statistics()
        print("fired", bool(fired), flush=True)
        print("consistent", s.submitted == s.completed + s.failed + s.cancelled, flush=True)
        print("hooks", hooks, flush=True)
    """
)


@pytest.mark.parametrize("point", ["accept", "cancel"])
def test_ctrl_c_inside_a_change_of_the_pools_state_waits_for_a_checkpoint(point: str) -> None:
    # On trio, the loop-side changes are protected from KeyboardInterrupt: one that
    # lands halfway is raised at the next checkpoint, with the change complete.
    result = subprocess.run(
        python_with_ctrl_c(CTRL_C_INSIDE, point),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    assert result.stderr.rstrip().endswith("KeyboardInterrupt"), result.stderr
    assert result.stdout.splitlines() == [
        "the change completed",
        "fired True",
        "consistent True",
        "hooks ['KeyboardInterrupt']",
    ]
