"""The Pool on RayHost: every promise of SPEC, with each interface in a Ray actor.

Jobs synchronise with the test through files (:class:`FileGate`), and what
the actors do is written to a record file, as in tests/test_pool_on_every_host.py,
whose interfaces and jobs this module shares. After every test, no actor
is left alive (conftest.py).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import textwrap
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import outcome
import pytest
import ray

import trio_pool

from helpers import TIMEOUT, FileGate, cancel_once_entered, poll_until, wait_in_thread
from test_host_contract import check_a_kill_that_races_the_reply
from test_pool_on_every_host import (
    Model,
    check_each_hook_ran_once_where_it_loaded,
    interface_scale,
    lines,
)
from test_process_host import (
    SlowHook,
    check_an_error_exit_kills_a_job_that_does_not_stop,
    check_kill_on_cancel_with_cancel_grace,
    die,
    die_when_released,
    grow,
    local_pid,
    notice_cancel,
    sleep_a_long_time,
)

if sys.version_info < (3, 11):
    from exceptiongroup import BaseExceptionGroup

pytestmark = pytest.mark.timeout(120)

HOST = trio_pool.RayHost(grace_period=TIMEOUT)
IN_FLIGHT = trio_pool.RayHost(grace_period=TIMEOUT, calls_in_flight=3)


def actors(pool: trio_pool.Pool[Any]) -> list[str | None]:
    return [w.actor_id for w in pool.statistics().worker_states]


@contextlib.asynccontextmanager
async def a_job_running_until_cancelled(
    pool: trio_pool.Pool[Any], tmp_path: Path
) -> AsyncIterator[trio_pool.Job[Any]]:
    """A job that runs in the block, then is cancelled, notices it, and returns its value."""
    started = FileGate(tmp_path / "started")
    job = await pool.submit(notice_cancel, started)
    await wait_in_thread(started)
    yield job
    assert not job.cancel()  # it runs: it is asked to stop
    assert await job.wait() == outcome.Value("noticed, and finished anyway")


async def test_what_only_ray_reports_actors_nodes_and_chunks(backend: str, record: Path) -> None:
    # The Pool-level suite runs on Ray in test_pool_on_ray.py; this is what only Ray adds.
    async with trio_pool.Pool(Model, 3, str(record), workers=2, host=HOST) as pool:
        async with pool.map(lambda x: x * x, range(50), chunksize=4) as results:
            assert [x async for x in results] == [x * x for x in range(50)]
        states = pool.statistics().worker_states
        assert os.getpid() not in {w.pid for w in states}
        assert len({w.actor_id for w in states}) == 2
        assert {w.node_id for w in states} == {ray.get_runtime_context().get_node_id()}
        await pool.resize(1)
        assert pool.statistics().workers_stopped == 1
    check_each_hook_ran_once_where_it_loaded(record, loads=2)  # in the actor that built it


def use_wait() -> object:
    return trio_pool.wait("key", 1)


async def test_wait_and_from_loop_say_they_do_not_work_on_ray(backend: str) -> None:
    async with trio_pool.Pool(workers=1, host=HOST) as pool:
        with pytest.raises(RuntimeError, match=r"wait\(\) does not work on a RayHost"):
            await pool.run(use_wait)
        with pytest.raises(RuntimeError, match=r"from_loop\(\) does not work on a RayHost"):
            await pool.run(trio_pool.from_loop, anyio.sleep, 0)
        assert await pool.run(local_pid) != os.getpid()  # the worker keeps serving


# The process tests' own bodies; conftest's no_actor_left checks what they leave.


@pytest.mark.parametrize("exit_by", ["error", "cancellation"])
async def test_an_error_exit_kills_a_job_that_does_not_stop_within_grace_period(
    backend: str, exit_by: str, tmp_path: Path
) -> None:
    host = trio_pool.RayHost(grace_period=0.05)
    await check_an_error_exit_kills_a_job_that_does_not_stop(host, exit_by, tmp_path, pids=set())


async def test_kill_on_cancel_with_cancel_grace_asks_first_then_kills(
    backend: str, tmp_path: Path
) -> None:
    await check_kill_on_cancel_with_cancel_grace(trio_pool.RayHost, tmp_path, pids=set())


async def test_a_job_that_finishes_after_its_cancel_keeps_its_outcome(
    backend: str, tmp_path: Path
) -> None:
    # ray.cancel() would turn this Outcome into a TaskCancelledError: the pool
    # asks the actor's control group instead.
    async with trio_pool.Pool(workers=1, host=HOST) as pool:
        async with a_job_running_until_cancelled(pool, tmp_path):
            pass
        # A caller cancelled while its job runs gets the job's value, then its cancellation.
        started = FileGate(tmp_path / "started again")
        got: list[object] = []

        async def call() -> None:
            got.append(await pool.run(notice_cancel, started))
            await anyio.lowlevel.checkpoint()  # the cancellation comes here

        scope = await cancel_once_entered(started, call)
        assert scope.cancelled_caught
        assert got == ["noticed, and finished anyway"]


async def test_kill_on_cancel_kills_the_actor_and_replaces_the_worker(
    backend: str, tmp_path: Path, record: Path
) -> None:
    started = FileGate(tmp_path / "started")
    host = trio_pool.RayHost(kill_on_cancel=True, grace_period=TIMEOUT)
    async with trio_pool.Pool(Model, 1, str(record), workers=1, host=host) as pool:
        [before] = actors(pool)
        job = await pool.submit(sleep_a_long_time, started)
        await wait_in_thread(started)
        assert not job.cancel()  # it runs: its actor is killed
        result = await job.wait()
        assert isinstance(result, outcome.Error)
        assert isinstance(result.error, trio_pool.JobCancelled)
        assert "kill_on_cancel" in str(result.error)
        assert await pool.interface.predict(2) == 2  # on the replacement
        [after] = actors(pool)
        assert after not in (before, None)
        assert pool.statistics().workers_died == 1
        started = FileGate(tmp_path / "started again")
        scope = await cancel_once_entered(started, pool.run, sleep_a_long_time, started)
        assert scope.cancelled_caught  # back at once, though the job sleeps in C
        assert await pool.interface.predict(3) == 3
    kinds = [line.split()[0] for line in lines(record)]
    assert kinds == ["load", "load", "load", "exit"]  # killed actors ran no hook


async def test_an_actor_that_dies_fails_its_job_and_is_replaced(backend: str, record: Path) -> None:
    async with trio_pool.Pool(Model, 1, str(record), workers=1, host=HOST) as pool:
        [before] = actors(pool)
        doomed = await pool.submit(die, 3)
        queued = [await pool.submit(pow, 2, n) for n in range(3)]  # they wait behind it
        result = await doomed.wait()
        assert isinstance(result, outcome.Error)
        assert isinstance(result.error, trio_pool.BrokenWorkerError)
        assert f"Ray actor {before}" in str(result.error)
        assert [(await job.wait()).unwrap() for job in queued] == [1, 2, 4]  # none lost
        assert (pool.statistics().workers_died, pool.worker_count) == (1, 1)
        await poll_until(lambda: pool.statistics().idle == 1)  # the replacement has loaded
        assert actors(pool) != [before]
    assert [line.split()[0] for line in lines(record)] == ["load", "load", "exit"]


async def test_what_cannot_be_pickled_fails_only_its_job(backend: str) -> None:
    async with trio_pool.Pool(workers=1, host=HOST) as pool:
        lock = threading.Lock()
        with pytest.raises(TypeError, match=r"argument 1 \(<unlocked _thread.lock.* Ray actor"):
            await pool.run(print, "x", lock)
        with pytest.raises(TypeError, match="result cannot be sent back"):
            await pool.run(threading.Lock)
        assert await pool.run(local_pid) != os.getpid()


class LoaderError(Exception):
    pass


def failing_loader() -> None:
    raise LoaderError("no model", 3)


async def test_a_loader_error_is_raised_as_itself(backend: str) -> None:
    with pytest.raises(LoaderError) as info:
        async with trio_pool.Pool(failing_loader, workers=1, host=HOST):
            pass  # pragma: no cover (entry fails)
    assert info.value.args == ("no model", 3)


async def test_define_and_autoscaling_create_and_kill_actors(backend: str, record: Path) -> None:
    options: dict[str, Any] = {"min_workers": 0, "max_workers": 2, "idle_timeout": 0.01}
    async with trio_pool.Pool(Model, 4, str(record), host=HOST, **options) as pool:
        assert pool.worker_count == 0
        scale_of = pool.define("scale_of", interface_scale)
        assert await scale_of() == 4  # the first job started a worker: an actor
        pool.undefine("scale_of")
        with pytest.raises(AttributeError):
            await pool.interface.scale_of()
        await poll_until(lambda: pool.worker_count == 0)  # idle workers retire: actors go
        assert pool.statistics().scaled_down >= 1
    assert [line.split()[0] for line in lines(record)] == ["load", "exit"]


async def test_a_hook_that_outlasts_the_grace_period_is_killed(backend: str) -> None:
    host = trio_pool.RayHost(grace_period=0.1)
    with pytest.raises(trio_pool.BrokenWorkerError, match=r"grace_period=0\.1"):
        async with trio_pool.Pool(SlowHook, workers=1, host=host):
            pass


def test_a_kill_on_cancel_that_races_the_reply_still_kills(tmp_path: Path) -> None:
    host = trio_pool.RayHost(kill_on_cancel=True, grace_period=TIMEOUT)
    check_a_kill_that_races_the_reply(host, tmp_path)


async def test_actors_are_renewed_after_max_jobs_and_over_max_memory(backend: str) -> None:
    async with trio_pool.Pool(workers=1, max_jobs_per_worker=2, host=HOST) as pool:
        ran_in = [await pool.run(local_pid) for _ in range(3)]
        assert ran_in[0] == ran_in[1] != ran_in[2]
        assert pool.statistics().workers_renewed == 1
    host = trio_pool.RayHost(grace_period=TIMEOUT, max_memory=400 * 2**20)
    async with trio_pool.Pool(workers=1, host=host) as pool:
        first = actors(pool)
        await pool.run(local_pid)
        assert actors(pool) == first  # under the limit: kept
        await pool.run(grow, 500)  # over it after this job: renewed
        await pool.run(local_pid)
        assert actors(pool) != first
        assert pool.statistics().workers_renewed == 1


def note(path: str, n: int) -> int:
    with open(path, "a") as file:
        file.write(f"{n}\n")
    return n


async def test_calls_in_flight_run_in_turn_and_one_cancelled_before_it_began_never_runs(
    backend: str, tmp_path: Path
) -> None:
    ran = tmp_path / "ran"
    async with trio_pool.Pool(workers=1, host=IN_FLIGHT) as pool:
        async with a_job_running_until_cancelled(pool, tmp_path):
            second, third, fourth = [await pool.submit(note, str(ran), n) for n in (2, 3, 4)]
            await poll_until(lambda: third.worker_id is not None)  # three calls out
            assert fourth.worker_id is None  # no room: it waits in the pool's queue
            assert pool.statistics().queued == 1
            assert not third.cancel()  # out to the actor: asked there, it never begins
        # The first job was asked after the third: the actor had both requests.
        results = [await job.wait() for job in (second, third, fourth)]
    assert results[0] == outcome.Value(2)
    assert results[2] == outcome.Value(4)
    assert isinstance(results[1], outcome.Error)
    assert isinstance(results[1].error, trio_pool.JobCancelled)
    assert "before it started" in str(results[1].error)
    assert ran.read_text().split() == ["2", "4"]


@pytest.mark.parametrize("held", [1, 2], ids=["a-call-waits-for-a-job", "all-calls-out"])
async def test_an_actor_that_dies_fails_every_call_it_holds(
    backend: str, tmp_path: Path, record: Path, held: int
) -> None:
    started, release = FileGate(tmp_path / "started"), FileGate(tmp_path / "release")
    async with trio_pool.Pool(Model, 1, str(record), workers=1, host=IN_FLIGHT) as pool:
        [before] = actors(pool)
        doomed = await pool.submit(die_when_released, started, release)
        await wait_in_thread(started)
        jobs = [doomed] + [await pool.submit(pow, 2, n) for n in range(held)]
        await poll_until(lambda: all(job.worker_id is not None for job in jobs))
        release.open()
        for job in jobs:
            result = await job.wait()
            assert isinstance(result, outcome.Error)
            assert isinstance(result.error, trio_pool.BrokenWorkerError)
            assert f"Ray actor {before}" in str(result.error)
        # With a call free, the worker waited for a job as its actor died: no
        # wake-up goes to it now, the next job goes to its replacement.
        assert await pool.run(pow, 2, 5) == 32
        assert (pool.statistics().workers_died, pool.worker_count) == (1, 1)
        assert actors(pool) != [before]
    assert [line.split()[0] for line in lines(record)] == ["load", "load", "exit"]


async def test_a_job_goes_to_an_idle_actor_before_a_busy_one_s_queue(
    backend: str, tmp_path: Path
) -> None:
    async with trio_pool.Pool(workers=2, host=IN_FLIGHT) as pool:
        async with a_job_running_until_cancelled(pool, tmp_path) as busy:
            for n in range(3):
                job = await pool.submit(pow, 2, n)
                assert await job.wait() == outcome.Value(2**n)
                assert job.worker_id != busy.worker_id


async def test_a_pool_with_max_jobs_per_worker_sends_one_call_at_a_time(
    backend: str, tmp_path: Path
) -> None:
    async with trio_pool.Pool(workers=1, max_jobs_per_worker=5, host=IN_FLIGHT) as pool:
        async with a_job_running_until_cancelled(pool, tmp_path):
            waiting = await pool.submit(pow, 2, 3)
            assert pool.statistics().queued == 1  # not sent: the worker has its one call out
            assert waiting.worker_id is None
        assert await waiting.wait() == outcome.Value(8)


def test_a_ray_host_checks_its_arguments() -> None:
    assert trio_pool.RayHost().calls_in_flight == 1
    assert "calls_in_flight=3" in repr(IN_FLIGHT)
    with pytest.raises(TypeError, match="calls_in_flight must be an int"):
        trio_pool.RayHost(calls_in_flight=True)
    with pytest.raises(TypeError, match="calls_in_flight must be an int"):
        trio_pool.RayHost(calls_in_flight=2.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="calls_in_flight must be at least 1"):
        trio_pool.RayHost(calls_in_flight=0)
    with pytest.raises(ValueError, match="calls_in_flight must be 1 with kill_on_cancel"):
        trio_pool.RayHost(kill_on_cancel=True, calls_in_flight=2)
    with pytest.raises(TypeError, match="kill_on_cancel"):
        trio_pool.RayHost(kill_on_cancel=1)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="grace_period"):
        trio_pool.RayHost(grace_period="5")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="grace_period"):
        trio_pool.RayHost(grace_period=float("nan"))
    reserved = ["max_concurrency", "max_restarts", "max_task_retries", "lifetime"]
    for option in [*reserved, "allow_out_of_order_execution"]:
        with pytest.raises(ValueError, match=f"RayHost does not take {option}="):
            trio_pool.RayHost(**{option: 1})
    with pytest.raises(TypeError, match="max_memory"):
        trio_pool.RayHost(max_memory="1G")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_memory"):
        trio_pool.RayHost(max_memory=-1)
    host = trio_pool.RayHost(num_cpus=1, scheduling_strategy="SPREAD")
    assert host.actor_options == {"num_cpus": 1, "scheduling_strategy": "SPREAD"}
    assert "scheduling_strategy='SPREAD'" in repr(host)


async def test_ray_checks_the_actor_options_when_the_pool_opens(backend: str) -> None:
    with pytest.raises(ValueError, match="no_such_option"):
        async with trio_pool.Pool(workers=1, host=trio_pool.RayHost(no_such_option=1)):
            pass  # pragma: no cover (entry fails)


WITHOUT_INIT = textwrap.dedent(
    """
    import sys
    import trio, trio_pool
    assert "ray" not in sys.modules  # importing trio_pool never imports ray

    async def main():
        async with trio_pool.Pool(workers=1, host=trio_pool.RayHost()):
            pass

    try:
        trio.run(main)
    except RuntimeError as exc:
        print(exc)
    import ray
    print("initialised" if ray.is_initialized() else "not initialised")
    """
)


def test_a_pool_on_ray_without_ray_init_is_a_clear_error() -> None:
    process = subprocess.run(
        [sys.executable, "-c", WITHOUT_INIT], capture_output=True, text=True, timeout=60
    )
    assert process.returncode == 0, process.stderr
    message, state = process.stdout.splitlines()
    assert message.startswith("RayHost needs a running Ray: call ray.init(...)")
    assert state == "not initialised"  # the pool did not start Ray behind the program's back


async def test_a_cancelled_entry_stops_actors_that_wait_for_room(backend: str) -> None:
    # No node has 100 CPUs: Ray keeps the actor pending (an autoscaling cluster
    # would add a node). Cancelling the entry must not wait for it.
    pool = trio_pool.Pool(workers=1, host=trio_pool.RayHost(num_cpus=100))

    async def enter() -> None:
        async with pool:
            raise AssertionError("the pool opened with no room for its actor")

    with anyio.CancelScope() as scope:
        async with anyio.create_task_group() as tg:
            tg.start_soon(enter)
            await poll_until(lambda: pool.statistics().workers == 1)
            scope.cancel()
    assert scope.cancelled_caught
    assert pool.statistics().workers == 0


async def test_an_error_exit_stops_a_resize_that_waits_for_room(backend: str) -> None:
    host = trio_pool.RayHost(num_cpus=1, grace_period=TIMEOUT)  # the cluster has 2 CPUs
    resized: list[BaseException] = []

    async def resize(pool: trio_pool.Pool[Any]) -> None:
        try:
            await pool.resize(3)  # the third actor waits for a CPU
        except BaseException as exc:
            resized.append(exc)

    with pytest.raises(BaseExceptionGroup) as info:
        async with anyio.create_task_group() as tg:  # outlives the pool
            async with trio_pool.Pool(workers=2, host=host) as pool:
                tg.start_soon(resize, pool)
                await poll_until(lambda: pool.statistics().workers == 3)
                raise LookupError("the block failed")
    assert [repr(e) for e in leaves(info.value)] == ["LookupError('the block failed')"]
    assert pool.statistics().workers == 0
    assert resized == []  # it returned: the worker it waited for never loaded, and no error


def leaves(error: BaseException) -> list[BaseException]:
    if isinstance(error, BaseExceptionGroup):
        return [leaf for e in error.exceptions for leaf in leaves(e)]
    return [error]
