"""What only a process host does: kill, death, pickling across processes, Ctrl-C.

The Pool-level suite over every host is tests/test_pool_on_every_host.py;
this module reuses its interface (:class:`Model`) and helpers. Jobs here run
in another process, so they synchronise through files (:class:`FileGate`),
never through threading objects. After every test, no worker process is
left: each pid a pool reported is gone.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import pickle
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import cloudpickle  # type: ignore[import-untyped]
import outcome
import pytest

import trio_pool
import trio_pool._hosts._process
from trio_pool._hosts._base import HostChoice
from trio_pool._hosts._process import _Pipe

import helpers
from helpers import (
    TIMEOUT,
    FileGate,
    assert_ended_by_ctrl_c,
    cancel_once_entered,
    leaves,
    poll_until,
    python_with_ctrl_c,
    started,
    wait_in_thread,
)
from test_host_contract import check_a_kill_that_races_the_reply
from test_pool_on_every_host import (
    Model,
    check_a_cancelled_caller_stops_a_cooperative_job,
    check_a_random_program,
    lines,
    note_pids,
    spin_until_cancelled,
)

pytestmark = pytest.mark.timeout(60)
PROCESS = trio_pool.ProcessHost(grace_period=TIMEOUT)


def sleep_a_long_time(started: FileGate) -> None:
    started.open()
    time.sleep(3 * TIMEOUT)  # a C call that only a kill ends


def die(code: int) -> None:
    os._exit(code)


def local_pid() -> int:
    return os.getpid()


async def test_a_cancel_request_reaches_the_child_without_waiting_for_a_poll(
    backend: str, tmp_path: Path, pids: set[int]
) -> None:
    # A worker thread once looked at the request every 50 ms; the worker's task
    # now relays it as the pool's interrupt() says, and there is no poll left.
    await check_a_cancelled_caller_stops_a_cooperative_job(PROCESS, tmp_path, pids)


async def test_kill_on_cancel_kills_the_job_and_replaces_the_worker(
    backend: str, tmp_path: Path, record: Path, pids: set[int]
) -> None:
    started = FileGate(tmp_path / "started")
    host = trio_pool.ProcessHost(kill_on_cancel=True)
    async with trio_pool.Pool(Model, 1, str(record), workers=1, host=host) as pool:
        note_pids(pool, pids)
        [before] = [w.pid for w in pool.statistics().worker_states]
        job = await pool.submit(sleep_a_long_time, started)
        await wait_in_thread(started)
        assert not job.cancel()  # it runs: its process is killed
        result = await job.wait()
        assert isinstance(result, outcome.Error)
        assert isinstance(result.error, trio_pool.JobCancelled)
        assert await pool.interface.predict(2) == 2  # on the replacement
        note_pids(pool, pids)
        [after] = [w.pid for w in pool.statistics().worker_states]
        assert after != before
        assert pool.statistics().workers_died == 1
        # A caller cancelled while its job sleeps in C gets back at once too.
        started = FileGate(tmp_path / "started again")
        scope = await cancel_once_entered(started, pool.run, sleep_a_long_time, started)
        assert scope.cancelled_caught
        assert await pool.interface.predict(3) == 3
        note_pids(pool, pids)
    kinds = [line.split()[0] for line in lines(record)]
    assert kinds == ["load", "load", "load", "exit"]  # killed workers ran no hook


def notice_cancel(started: FileGate) -> str:
    """Runs until asked to stop, then returns (instead of raising JobCancelled)."""
    try:
        spin_until_cancelled(started)
    except trio_pool.JobCancelled:
        return "noticed, and finished anyway"
    return "never asked"


async def test_kill_on_cancel_with_cancel_grace_asks_first_then_kills(
    backend: str, tmp_path: Path, pids: set[int]
) -> None:
    await check_kill_on_cancel_with_cancel_grace(trio_pool.ProcessHost, tmp_path, pids)


async def check_kill_on_cancel_with_cancel_grace(
    make_host: Callable[..., HostChoice], tmp_path: Path, pids: set[int]
) -> None:
    """A job that stops when asked keeps its worker; one that does not is killed."""
    patient = make_host(kill_on_cancel=True, cancel_grace=3 * TIMEOUT)
    async with trio_pool.Pool(workers=1, host=patient) as pool:
        note_pids(pool, pids)
        started = FileGate(tmp_path / "started")
        job = await pool.submit(notice_cancel, started)
        await wait_in_thread(started)
        assert not job.cancel()  # it runs: it is asked first
        assert await job.wait() == outcome.Value("noticed, and finished anyway")
        assert pool.statistics().workers_died == 0  # nothing was killed
    hasty = make_host(kill_on_cancel=True, cancel_grace=0.05)
    async with trio_pool.Pool(workers=1, host=hasty) as pool:
        note_pids(pool, pids)
        started = FileGate(tmp_path / "started again")
        job = await pool.submit(sleep_a_long_time, started)  # never looks up
        await wait_in_thread(started)
        assert not job.cancel()
        result = await job.wait()
        assert isinstance(result, outcome.Error)
        assert isinstance(result.error, trio_pool.JobCancelled)
        assert "killed (kill_on_cancel=True)" in str(result.error)
        assert await pool.run(int, "7") == 7  # on the replacement
        note_pids(pool, pids)
        assert pool.statistics().workers_died == 1


async def test_a_worker_process_that_dies_fails_its_job_and_is_replaced(
    backend: str, record: Path, pids: set[int]
) -> None:
    async with trio_pool.Pool(Model, 1, str(record), workers=1, host=PROCESS) as pool:
        note_pids(pool, pids)
        doomed = await pool.submit(die, 3)
        queued = [await pool.submit(pow, 2, n) for n in range(3)]  # they wait behind it
        result = await doomed.wait()
        assert isinstance(result, outcome.Error)
        assert isinstance(result.error, trio_pool.BrokenWorkerError)
        assert "exited with code 3" in str(result.error)
        assert [(await job.wait()).unwrap() for job in queued] == [1, 2, 4]  # none lost
        note_pids(pool, pids)
        assert (pool.statistics().workers_died, pool.worker_count) == (1, 1)
        killed = await pool.submit(lambda: os.kill(os.getpid(), signal.SIGKILL))
        result = await killed.wait()
        assert isinstance(result, outcome.Error)
        assert "SIGKILL" in str(result.error)
        await poll_until(lambda: pool.statistics().idle == 1)  # the replacement has loaded
        note_pids(pool, pids)
        assert pool.statistics().workers_died == 2
    assert [line.split()[0] for line in lines(record)] == ["load", "load", "load", "exit"]


async def test_a_lessee_waiting_behind_a_worker_that_is_killed_gets_the_replacement(
    backend: str, tmp_path: Path, record: Path, pids: set[int]
) -> None:
    started = FileGate(tmp_path / "started")
    host = trio_pool.ProcessHost(kill_on_cancel=True)
    async with trio_pool.Pool(Model, 1, str(record), workers=1, host=host) as pool:
        note_pids(pool, pids)
        [doomed] = [w.pid for w in pool.statistics().worker_states]
        seen: list[int] = []

        async def second_lessee() -> None:
            async with pool.lease() as worker:  # waits behind the first lease
                seen.append(await worker.run(local_pid))

        first = anyio.CancelScope()

        async def first_lessee() -> None:
            with first:
                async with pool.lease() as worker:
                    await worker.run(sleep_a_long_time, started)  # killed when cancelled

        async with anyio.create_task_group() as tg:
            tg.start_soon(first_lessee)
            await wait_in_thread(started)
            tg.start_soon(second_lessee)
            await poll_until(lambda: pool.statistics().waiting_for_lease == 1)
            first.cancel()
        assert first.cancelled_caught
        note_pids(pool, pids)
        # The second lessee was not handed the dead worker (it hung there before).
        assert seen != [doomed]
        assert len(seen) == 1
        assert pool.statistics().workers_died == 1


def die_when_released(started: FileGate, release: FileGate) -> None:
    started.open()
    assert release.wait(), "the test never released the job"
    os._exit(3)


async def test_a_lease_given_a_busy_worker_that_dies_under_its_job_takes_another(
    backend: str, tmp_path: Path, pids: set[int]
) -> None:
    started, release = FileGate(tmp_path / "started"), FileGate(tmp_path / "release")
    async with trio_pool.Pool(workers=1, host=PROCESS) as pool:
        note_pids(pool, pids)
        [doomed] = [w.pid for w in pool.statistics().worker_states]
        job = await pool.submit(die_when_released, started, release)
        await wait_in_thread(started)
        seen: list[int] = []

        async def lessee() -> None:
            async with pool.lease() as worker:  # the busy worker is leased: its job ends first
                seen.append(await worker.run(local_pid))

        async with anyio.create_task_group() as tg:
            tg.start_soon(lessee)
            await poll_until(lambda: pool.statistics().worker_states[0].leased)
            release.open()  # the job kills the leased worker's process
        result = await job.wait()
        assert isinstance(result, outcome.Error)
        assert isinstance(result.error, trio_pool.BrokenWorkerError)
        note_pids(pool, pids)
        # The lease ran nothing on the dead worker: it took the replacement instead of
        # failing its first call with BrokenWorkerError.
        assert len(seen) == 1
        assert seen[0] not in (doomed, os.getpid())


async def test_a_lease_whose_worker_dies_fails_its_next_calls_and_is_left_cleanly(
    backend: str, pids: set[int]
) -> None:
    async with trio_pool.Pool(workers=1, host=PROCESS) as pool:
        note_pids(pool, pids)
        async with pool.lease() as worker:
            with pytest.raises(trio_pool.BrokenWorkerError, match="exited with code 3"):
                await worker.run(die, 3)
            await poll_until(lambda: pool.statistics().idle == 1)  # the replacement loaded
            with pytest.raises(trio_pool.BrokenWorkerError, match=r"leased worker .* died"):
                await worker.run(local_pid)  # it hung before: nobody served the dead slot
        async with pool.lease() as worker:  # a new lease gets the replacement
            assert await worker.run(local_pid) != os.getpid()
        note_pids(pool, pids)


def dead(pid: int) -> bool:
    """Whether process ``pid`` has ended (a zombie not yet reaped counts)."""
    try:
        with open(f"/proc/{pid}/stat") as file:
            return file.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except OSError:  # gone: no such file, or no such process while it is read
        return True


async def test_a_job_sent_to_a_worker_process_killed_while_idle_fails_and_is_replaced(
    backend: str, pids: set[int]
) -> None:
    async with trio_pool.Pool(workers=1, host=PROCESS) as pool:
        note_pids(pool, pids)
        [pid] = pids
        os.kill(pid, signal.SIGKILL)  # from outside, while it waits for a job
        await poll_until(lambda: dead(pid))
        with anyio.fail_after(TIMEOUT):
            with pytest.raises(trio_pool.BrokenWorkerError, match="SIGKILL"):
                await pool.run(local_pid)
            assert await pool.run(local_pid) not in (pid, os.getpid())  # its replacement
        note_pids(pool, pids)
        assert pool.statistics().workers_died == 1


class ParentRefuses:
    """Pickles in a worker process; unpickling it in the pool's process fails."""

    def __init__(self, parent: int) -> None:
        self.parent = parent

    def __reduce__(self) -> tuple[Any, ...]:
        return (_not_in, (self.parent,))


def _not_in(parent: int) -> ParentRefuses:
    if os.getpid() == parent:
        raise LookupError("this value cannot be rebuilt in the pool's process")
    return ParentRefuses(parent)


def refused_by_the_parent(parent: int, error: bool) -> ParentRefuses:
    if error:
        raise ValueError(ParentRefuses(parent))
    return ParentRefuses(parent)


async def test_a_result_that_cannot_be_unpickled_in_the_pool_fails_only_its_job(
    backend: str, pids: set[int]
) -> None:
    async with trio_pool.Pool(workers=1, host=PROCESS) as pool:
        note_pids(pool, pids)
        for error in (False, True):
            with pytest.raises(TypeError, match="cannot be received") as info:
                await pool.run(refused_by_the_parent, os.getpid(), error)
            assert isinstance(info.value.__cause__, LookupError)
        assert await pool.run(local_pid) in pids  # the same worker goes on
        assert pool.statistics().workers_died == 0


class ChildRefusesError(Exception):
    """Pickles in the pool's process; unpickling it in a worker process fails."""

    def __reduce__(self) -> tuple[Any, ...]:
        return (_only_in, (self.args[0],))


def _only_in(parent: int) -> ChildRefusesError:
    if os.getpid() != parent:
        raise LookupError("this cannot be rebuilt in a worker process")
    return ChildRefusesError(parent)


class UnpicklableError(Exception):
    def __init__(self) -> None:
        super().__init__("holds a lock", threading.Lock())


@pytest.mark.parametrize("error", [ChildRefusesError, UnpicklableError])
async def test_a_hook_is_told_of_a_block_error_that_cannot_reach_its_process(
    backend: str, error: type[Exception], record: Path, pids: set[int]
) -> None:
    # Once, the child died unpickling it (its hook never ran), or the hook was
    # told there had been no exception at all.
    raised = ChildRefusesError(os.getpid()) if error is ChildRefusesError else UnpicklableError()
    with pytest.raises(error):
        async with trio_pool.Pool(Model, 1, str(record), workers=1, host=PROCESS) as pool:
            note_pids(pool, pids)
            raise raised
    assert [line.split()[0::3] for line in lines(record)] == [["load"], ["exit", "RuntimeError"]]


class ChildRefusesLoader:
    def __init__(self, parent: int) -> None:
        self.parent = parent

    def __call__(self) -> None:
        return None

    def __reduce__(self) -> tuple[Any, ...]:
        return (_only_in, (self.parent,))


async def test_a_loader_that_cannot_be_unpickled_in_its_process_raises_why(
    backend: str, pids: set[int]
) -> None:
    with pytest.raises(LookupError, match="cannot be rebuilt in a worker process"):
        async with trio_pool.Pool(ChildRefusesLoader(os.getpid()), workers=1, host=PROCESS):
            pass


class SlowHook:
    def __exit__(self, *exc_info: Any) -> None:
        time.sleep(3 * TIMEOUT)


async def test_a_hook_that_outlasts_the_grace_period_is_killed(
    backend: str, pids: set[int]
) -> None:
    host = trio_pool.ProcessHost(grace_period=0.1)
    with pytest.raises(trio_pool.BrokenWorkerError, match=r"grace_period=0\.1"):
        async with trio_pool.Pool(SlowHook, workers=1, host=host) as pool:
            note_pids(pool, pids)


def test_a_kill_on_cancel_that_races_the_reply_still_kills(tmp_path: Path) -> None:
    check_a_kill_that_races_the_reply(trio_pool.ProcessHost(kill_on_cancel=True), tmp_path)


_BALLAST: list[bytes] = []  # in a worker process: what grow() keeps alive


def grow(megabytes: int) -> None:
    _BALLAST.append(b"x" * (megabytes * 2**20))  # written, so resident


async def test_worker_processes_are_renewed_after_max_jobs_and_over_max_memory(
    backend: str, pids: set[int]
) -> None:
    async with trio_pool.Pool(workers=1, max_jobs_per_worker=2, host=trio_pool.ProcessHost()) as p:
        ran_in = [await p.run(os.getpid) for _ in range(5)]
        pids.update(ran_in)
        assert ran_in[0] == ran_in[1] != ran_in[2] == ran_in[3] != ran_in[4]
        assert p.statistics().workers_renewed == 2
    host = trio_pool.ProcessHost(max_memory=150 * 2**20)
    async with trio_pool.Pool(workers=1, host=host) as pool:
        first = await pool.run(os.getpid)
        pids.add(first)
        assert await pool.run(os.getpid) == first  # under the limit: kept
        await pool.run(grow, 200)  # over it after this job: renewed
        second = await pool.run(os.getpid)
        pids.add(second)
        assert second != first
        assert pool.statistics().workers_renewed == 1


def test_a_process_host_checks_its_arguments() -> None:
    with pytest.raises(ValueError, match="fork"):
        trio_pool.ProcessHost(start_method="fork")
    with pytest.raises(ValueError, match="start_method"):
        trio_pool.ProcessHost(start_method="teleport")
    with pytest.raises(TypeError, match="kill_on_cancel"):
        trio_pool.ProcessHost(kill_on_cancel=1)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="grace_period"):
        trio_pool.ProcessHost(grace_period="5")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="grace_period"):
        trio_pool.ProcessHost(grace_period=-1)
    with pytest.raises(TypeError, match="host must be"):
        trio_pool.Pool(host="process")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        trio_pool.ThreadHost(kill_on_cancel=True)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="max_memory"):
        trio_pool.ProcessHost(max_memory=1.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_memory"):
        trio_pool.ProcessHost(max_memory=0)
    with pytest.raises(TypeError):
        trio_pool.ThreadHost(max_memory=2**30)  # type: ignore[call-arg]
    with pytest.raises(ValueError, match=r"cancel_grace=1\.0 needs kill_on_cancel=True"):
        trio_pool.ProcessHost(cancel_grace=1)
    with pytest.raises(ValueError, match="cancel_grace"):
        trio_pool.ProcessHost(kill_on_cancel=True, cancel_grace=-1)
    with pytest.raises(TypeError, match="cancel_grace"):
        trio_pool.ProcessHost(kill_on_cancel=True, cancel_grace="1")  # type: ignore[arg-type]
    host = trio_pool.ProcessHost(kill_on_cancel=True, cancel_grace=2)
    assert (host.cancel_grace, "cancel_grace=2.0") == (2.0, repr(host).split(", ")[2])


SCRIPT = textwrap.dedent(
    """
    import os, sys, time
    import anyio, trio_pool

    class Iface:
        def __exit__(self, exc_type, exc, tb):
            # One write: the children share this pipe, and print() writes in pieces.
            sys.stdout.write(f"hook {os.getpid()} {exc_type is not None}\\n")
            sys.stdout.flush()

    def spin():
        while True:  # a long job that stops when asked
            trio_pool.check_cancelled()
            time.sleep(0.005)

    def sleep_on():
        while True:  # a long job that never looks up
            time.sleep(0.005)

    async def main():
        host = trio_pool.ProcessHost(grace_period=10)
        job = sleep_on if sys.argv[2] == "kill-me" else spin
        async with trio_pool.Pool(Iface, workers=2, host=host) as pool:
            async with anyio.create_task_group() as tg:
                for _ in range(2):
                    tg.start_soon(pool.run, job)
                while pool.statistics().busy < 2:
                    await anyio.sleep(0.01)
                pids = " ".join(str(w.pid) for w in pool.statistics().worker_states)
                print("ready", pids, flush=True)
                await anyio.sleep_forever()  # until Ctrl-C, or a kill

    anyio.run(main, backend=sys.argv[1])
    """
)


def start_script(backend: str, mode: str) -> tuple[subprocess.Popen[str], list[int]]:
    process = subprocess.Popen(
        python_with_ctrl_c(SCRIPT, backend, mode),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    ready = process.stdout.readline().split()
    assert ready[:1] == ["ready"], process.stderr.read() if process.stderr else ""
    return process, [int(pid) for pid in ready[1:]]


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def wait_until_gone(pids: list[int]) -> None:
    deadline = time.monotonic() + TIMEOUT
    while not all(gone(pid) for pid in pids):
        assert time.monotonic() < deadline, f"worker processes {pids} were left running"
        time.sleep(0.01)


@pytest.mark.parametrize("backend", ["trio", "asyncio"])
def test_ctrl_c_with_a_process_pool(backend: str) -> None:
    process, children = start_script(backend, "ctrl-c")
    try:
        os.kill(process.pid, signal.SIGINT)  # to the parent only, as a terminal would not
        stdout, stderr = process.communicate(timeout=30)
    finally:
        process.kill()
        process.wait()
    assert process.returncode != 0
    assert_ended_by_ctrl_c(backend, stderr)
    hooks = sorted(line.split()[1:] for line in stdout.splitlines() if line.startswith("hook"))
    assert hooks == sorted([str(pid), "True"] for pid in children)  # each got the exception
    wait_until_gone(children)


def test_worker_processes_never_outlive_a_killed_parent() -> None:
    process, children = start_script("trio", "kill-me")
    process.kill()  # SIGKILL: no hook, no exit code of its own; the children must notice
    # Before the parent is reaped: a zombie still answers os.kill(pid, 0), which
    # the children once took for a parent alive.
    wait_until_gone(children)
    process.communicate(timeout=30)
    assert process.returncode == -signal.SIGKILL


STARTING_CHILD = textwrap.dedent(
    """
    import os, sys, time
    from pathlib import Path

    if __name__ == "__mp_main__":  # a worker process importing this file as it starts
        Path(os.environ["STARTING"]).touch()
        sent, deadline = Path(os.environ["SENT"]), time.monotonic() + 30
        while not sent.exists() and time.monotonic() < deadline:
            time.sleep(0.001)  # still starting until the test has sent Ctrl-C to the group

    import anyio, trio_pool

    class Iface:
        def __exit__(self, exc_type, exc, tb):
            print("hook", exc_type is not None, flush=True)

    async def main():
        host = trio_pool.ProcessHost(start_method=sys.argv[2])
        async with trio_pool.Pool(Iface, workers=1, host=host):
            await anyio.sleep_forever()

    if __name__ == "__main__":
        anyio.run(main, backend=sys.argv[1])
    """
)


@pytest.mark.parametrize("start_method", ["forkserver", "spawn"])
@pytest.mark.parametrize("backend", ["trio", "asyncio"])
def test_ctrl_c_to_the_process_group_spares_a_worker_process_still_starting(
    backend: str, start_method: str, tmp_path: Path
) -> None:
    script, starting = tmp_path / "starting_child.py", tmp_path / "starting"
    sent = FileGate(tmp_path / "sent")
    script.write_text(STARTING_CHILD)
    run = (
        "import runpy, sys; sys.argv[0] = sys.argv.pop(1); "
        "runpy.run_path(sys.argv[0], run_name='__main__')"
    )
    with started(
        python_with_ctrl_c(run, str(script), backend, start_method),
        env={**os.environ, "STARTING": str(starting), "SENT": str(sent.path)},
        start_new_session=True,  # a group of its own, as a terminal's foreground job
    ) as process:
        assert FileGate(starting).wait(), "no worker process started"
        os.killpg(process.pid, signal.SIGINT)  # as Ctrl-C in a terminal: to every process
        sent.open()
        stdout, stderr = process.communicate(timeout=30)
    assert process.returncode != 0
    assert_ended_by_ctrl_c(backend, stderr)
    assert "BrokenWorkerError" not in stderr
    assert stdout.splitlines() == ["hook True"]  # the child lived, loaded and closed


class LoadsOnceThenWaits:
    """Notes each load's pid; every load but the first waits for a gate first."""

    def __init__(self, record: str, gate: str) -> None:
        with open(record, "a") as file:
            file.write(f"{os.getpid()}\n")
        if len(lines(Path(record))) > 1:
            assert FileGate(gate).wait(), "the test never opened the gate"


async def test_a_replacement_killed_while_it_loads_is_retried(
    backend: str, tmp_path: Path, pids: set[int]
) -> None:
    record, gate = tmp_path / "record", tmp_path / "gate"
    host = PROCESS
    async with trio_pool.Pool(
        LoadsOnceThenWaits, str(record), str(gate), workers=1, host=host
    ) as pool:
        note_pids(pool, pids)
        with pytest.raises(trio_pool.BrokenWorkerError):
            await pool.run(die, 3)
        await poll_until(lambda: len(lines(record)) == 2)  # the replacement loads
        replacement = int(lines(record)[1])
        pids.add(replacement)
        os.kill(replacement, signal.SIGKILL)
        FileGate(gate).open()
        third = await pool.run(local_pid)  # no error kept for the exit, none raised here
        pids.add(third)
        assert [replacement, third] == [int(pid) for pid in lines(record)[1:]]


class DiesAfterTheFirstLoad:
    def __init__(self, record: str) -> None:
        with open(record, "a") as file:
            file.write(f"{os.getpid()}\n")
        if len(lines(Path(record))) > 1:
            os._exit(5)


async def test_a_replacement_that_keeps_dying_as_it_loads_is_given_up_on(
    backend: str, record: Path, pids: set[int]
) -> None:
    from trio_pool._workers import LOAD_RETRIES

    with pytest.raises(BaseException) as info:  # noqa: PT011 (its leaves are checked below)
        async with trio_pool.Pool(
            DiesAfterTheFirstLoad, str(record), workers=1, host=PROCESS
        ) as pool:
            note_pids(pool, pids)
            with pytest.raises(trio_pool.BrokenWorkerError, match="exited with code 3"):
                await pool.run(die, 3)
            with pytest.raises(trio_pool.BrokenWorkerError, match="exited with code 5"):
                await pool.run(local_pid)  # it waited for a worker that never loaded
    assert all(
        isinstance(leaf, trio_pool.BrokenWorkerError) and "exited with code 5" in str(leaf)
        for leaf in leaves(info.value)
    )
    assert len(lines(record)) >= 2 + LOAD_RETRIES  # the first, the replacement, its retries


@pytest.mark.parametrize("exit_by", ["error", "cancellation"])
async def test_an_error_exit_kills_a_job_that_does_not_stop_within_grace_period(
    backend: str, exit_by: str, tmp_path: Path, pids: set[int]
) -> None:
    host = trio_pool.ProcessHost(grace_period=0.05)
    await check_an_error_exit_kills_a_job_that_does_not_stop(host, exit_by, tmp_path, pids)


async def check_an_error_exit_kills_a_job_that_does_not_stop(
    host: HostChoice, exit_by: str, tmp_path: Path, pids: set[int]
) -> None:
    """Once told to stop, a running job has the host's grace_period, then is killed."""
    started = FileGate(tmp_path / "started")
    raises = pytest.raises(LookupError) if exit_by == "error" else contextlib.nullcontext()
    with anyio.CancelScope() as scope, raises:
        async with trio_pool.Pool(workers=1, host=host) as pool:
            note_pids(pool, pids)
            job = await pool.submit(sleep_a_long_time, started)  # never looks up
            await wait_in_thread(started)
            if exit_by == "error":
                raise LookupError("the block fails")
            scope.cancel()
            await anyio.sleep_forever()
    result = job.outcome
    assert isinstance(result, outcome.Error)
    assert isinstance(result.error, trio_pool.BrokenWorkerError)


async def test_a_worker_process_loads_neither_trio_nor_anyio(backend: str, pids: set[int]) -> None:
    # (A lambda travels by value: the child imports no test module for it.)
    frameworks = lambda: sorted({m.partition(".")[0] for m in sys.modules} & {"trio", "anyio"})  # noqa: E731
    async with trio_pool.Pool(workers=1, host=PROCESS) as pool:
        note_pids(pool, pids)
        assert await pool.run(frameworks) == []
        assert await pool.run(trio_pool.check_cancelled) is None  # the in-job functions too
        assert await pool.run(frameworks) == []


def echo(data: bytes) -> bytes:
    return data


async def test_frames_of_every_size_cross_both_ways(backend: str, pids: set[int]) -> None:
    # Small frames go out in one write and come in reads of 64 KiB; big ones
    # are read straight into a buffer of their size, across many wake-ups.
    sizes = [0, 1, 16_370, 16_384, 16_400, 65_500, 65_536, 65_600, 3 * 1024 * 1024 + 7]
    async with trio_pool.Pool(workers=2, host=PROCESS) as pool:
        note_pids(pool, pids)
        async with anyio.create_task_group() as tasks:
            for size in sizes:
                data = os.urandom(size)

                async def check(data: bytes = data) -> None:
                    assert await pool.run(echo, data) == data

                tasks.start_soon(check)


async def test_a_cancelled_wait_for_a_frame_loses_none_of_it(backend: str) -> None:
    # interrupt() cancels the worker's wait for a reply at any moment: here,
    # once half of a big frame and once half of a small frame's header have come.
    conn, child_end = multiprocessing.Pipe()
    try:
        pipe = _Pipe(conn)
        big = os.urandom(200_000)
        child_end.send_bytes(b"small")
        raw = socket.socket(fileno=os.dup(child_end.fileno()))  # to send parts of frames
        try:
            raw.sendall(len(big).to_bytes(4, "big") + big[:100_000])
            assert await pipe.receive() == b"small"
            with anyio.move_on_after(0.05) as scope:
                await pipe.receive()  # half a big frame: it waits for the rest
            assert scope.cancelled_caught
            raw.sendall(big[100_000:] + len(b"next").to_bytes(4, "big")[:2])
            assert await pipe.receive() == big
            with anyio.move_on_after(0.05) as scope:
                await pipe.receive()  # half a header
            assert scope.cancelled_caught
            raw.sendall(len(b"next").to_bytes(4, "big")[2:] + b"next")
            assert await pipe.receive() == b"next"
            raw.close()
            child_end.close()
            with pytest.raises(EOFError):
                await pipe.receive()
        finally:
            raw.close()
    finally:
        child_end.close()
        conn.close()


MAIN_SCRIPT = """
import trio, trio_pool

if __name__ == "__main__":  # (a worker process never runs what is defined here)

    class Point:
        def __init__(self, x):
            self.x = x

    def double(point):
        return Point(2 * point.x)

    async def main():
        async with trio_pool.Pool(workers=1, host=trio_pool.ProcessHost()) as pool:
            print((await pool.run(double, Point(21))).x, flush=True)

    trio.run(main)
"""


def test_functions_and_classes_of_main_travel_by_value(tmp_path: Path) -> None:
    # Plain pickle would send them by reference, and a worker process, which
    # runs the main module without its guarded block, could not find them.
    script = tmp_path / "main_script.py"
    script.write_text(MAIN_SCRIPT)
    with started([sys.executable, str(script)]) as process:
        out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    assert out == "42\n"


def test_what_plain_pickle_serves_goes_by_plain_pickle() -> None:
    # One serialisation, the fast one: cloudpickle only where it must.
    from trio_pool._hosts._wire import dumps

    assert dumps((os.getpid, (1,), {}, False)) == pickle.dumps(
        (os.getpid, (1,), {}, False), protocol=5
    )
    with pytest.raises(AttributeError):
        pickle.dumps(lambda: 41)
    assert pickle.loads(dumps(lambda: 41))() == 41  # refused by plain pickle: cloudpickle
    cloudpickle.register_pickle_by_value(helpers)  # the program asks for cloudpickle's way
    try:
        assert dumps(helpers.leaves) != pickle.dumps(helpers.leaves, protocol=5)
    finally:
        cloudpickle.unregister_pickle_by_value(helpers)
    assert dumps(helpers.leaves) == pickle.dumps(helpers.leaves, protocol=5)


@pytest.mark.parametrize("seed", range(int(os.environ.get("SEEDS", "8"))))
async def test_random_programs_keep_every_promise(backend: str, seed: int, tmp_path: Path) -> None:
    await check_a_random_program(PROCESS, seed, tmp_path)


async def test_a_cancel_request_reaches_a_job_sent_with_a_big_argument(
    backend: str, tmp_path: Path, pids: set[int]
) -> None:
    # A big call may still be on its way to the child when the caller is
    # cancelled: the worker's task, not interrupt(), then sends the request.
    await check_a_cancelled_caller_stops_a_cooperative_job(
        PROCESS, tmp_path, pids, bytes(1024 * 1024)
    )


async def test_a_worker_process_that_cannot_start_fails_the_entry(
    backend: str, record: Path, pids: set[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    # As when fork() fails at a process limit: the others loaded, and their hooks run.
    real = trio_pool._hosts._process._start

    def start(process: Any) -> None:
        if process.name.endswith("-worker-2"):
            raise BlockingIOError(11, "Resource temporarily unavailable")
        real(process)
        pids.add(process.pid)

    monkeypatch.setattr(trio_pool._hosts._process, "_start", start)
    with anyio.fail_after(TIMEOUT), pytest.raises(BlockingIOError, match="temporarily"):
        async with trio_pool.Pool(Model, 1, str(record), workers=3, host=PROCESS):
            pass  # pragma: no cover
    assert sorted(line.split()[:2] for line in lines(record)) == [
        ["exit", "0"],
        ["exit", "1"],
        ["load", "0"],
        ["load", "1"],
    ]


class _ChildrenSeenMidway(set):  # type: ignore[type-arg]
    """multiprocessing's list of children: one thread's look at it stops midway.

    ``multiprocessing.active_children()`` copies the list, then polls each
    child. A thread that copies it here waits at ``midway`` before its polls,
    as a thread preempted there would.
    """

    def __init__(self, members: set[Any], looker: threading.Thread) -> None:
        super().__init__(members)
        self.looker = looker
        self.copied = threading.Event()
        self.midway = threading.Event()

    def __iter__(self) -> Any:
        yield from list(super().__iter__())
        if threading.current_thread() is self.looker:
            self.copied.set()
            assert self.midway.wait(TIMEOUT)


async def test_a_worker_process_that_ends_leaves_multiprocessing_s_children_whole(
    backend: str, pids: set[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Another thread (a worker's start, say) looks at the list of children while
    # a worker's process ends: what it copied must still be usable afterwards
    # (Process.close() emptied the object, and active_children() failed with
    # AttributeError on Python 3.10, whose active_children() polls what it copied as it is).
    errors: list[BaseException] = []

    def look() -> None:
        try:
            multiprocessing.active_children()
        except BaseException as exc:  # (reported by the test's thread)
            errors.append(exc)

    looker = threading.Thread(target=look)
    async with trio_pool.Pool(workers=1, host=PROCESS) as pool:
        note_pids(pool, pids)
        children = _ChildrenSeenMidway(multiprocessing.process._children, looker)  # type: ignore[attr-defined]
        monkeypatch.setattr(multiprocessing.process, "_children", children)
        looker.start()
        await anyio.to_thread.run_sync(children.copied.wait, TIMEOUT)
    children.midway.set()  # the worker's process has ended meanwhile
    await anyio.to_thread.run_sync(looker.join, TIMEOUT)
    assert not looker.is_alive()
    assert errors == []
