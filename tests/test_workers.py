"""Living workers: resizing, broadcast, one Outcome per job, renewal, and edges from outside."""

from __future__ import annotations

import functools
import itertools
import logging
import random
import sys
import threading
from typing import Any

import anyio
import outcome
import pytest
import trio
import trio.testing

if sys.version_info < (3, 11):
    from exceptiongroup import BaseExceptionGroup

import trio_pool

from helpers import (
    TIMEOUT,
    Gate,
    Log,
    leaves,
    poll_until,
    recording_interface,
    wait_in_thread,
)


def worker_id() -> int:
    return trio_pool.current_worker().id


def stats_add_up(pool: trio_pool.Pool) -> None:
    stats = pool.statistics()
    assert stats.workers == len(stats.worker_states)
    assert stats.workers_started - stats.workers_stopped == stats.workers
    assert stats.busy + stats.idle <= stats.workers
    assert (
        stats.submitted
        == stats.completed + stats.failed + stats.cancelled + stats.queued + stats.busy
    )


# --- resizing --------------------------------------------------------------------


async def test_resize_up_and_down(backend: str) -> None:
    log = Log()
    async with trio_pool.Pool(recording_interface(log), "x", workers=2) as pool:
        assert pool.worker_count == 2
        await pool.resize(4)
        assert pool.worker_count == 4
        assert sorted(w for w, _ in log.of("load")) == [0, 1, 2, 3]
        assert await pool.run(worker_id) in range(4)
        await pool.resize(1)
        assert pool.worker_count == 1
        stats = pool.statistics()
        assert (stats.workers, stats.workers_started, stats.workers_stopped) == (1, 4, 3)
        exits = log.of("exit")
        assert len(exits) == 3  # hooks ran before resize returned, in their own threads
        loads = dict(log.of("load"))
        assert all(loads[w] == thread for w, thread, _ in exits)
        await pool.add_workers(2)
        await pool.ensure(at_least=4)
        assert pool.worker_count == 4
        await pool.ensure(at_most=2)
        assert pool.worker_count == 2
        await pool.ensure(at_least=1, at_most=3)
        assert pool.worker_count == 2
        stats_add_up(pool)
    assert len(log.of("exit")) == 7


async def test_jobs_keep_flowing_during_a_resize(backend: str) -> None:
    async with trio_pool.Pool(workers=2) as pool:
        results: list[int] = []

        async def client(n: int) -> None:
            for i in range(20):
                results.append(await pool.run(lambda x: x, n * 100 + i))  # noqa: PERF401

        async with anyio.create_task_group() as tg:
            for n in range(4):
                tg.start_soon(client, n)
            await pool.resize(5)
            await pool.resize(1)
            await pool.resize(3)
        assert sorted(results) == sorted(n * 100 + i for n in range(4) for i in range(20))
        stats_add_up(pool)


async def test_shrinking_stops_idle_workers_first(backend: str) -> None:
    gate = Gate()
    async with trio_pool.Pool(workers=3) as pool:
        busy = await pool.submit(gate.enter)
        await wait_in_thread(gate.entered)
        await pool.stop_workers(2)
        assert [w.id for w in pool.statistics().worker_states] == [busy.worker_id]
        gate.open()
        await busy.wait()


async def test_a_stopping_worker_finishes_its_job_first(backend: str) -> None:
    gate = Gate()
    stopped = anyio.Event()
    async with trio_pool.Pool(workers=2) as pool:
        jobs = [await pool.submit(gate.enter, i) for i in range(2)]
        await gate.wait_arrivals(2)

        async def shrink() -> None:
            await pool.stop_workers(1)
            stopped.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(shrink)
            await anyio.wait_all_tasks_blocked()
            assert not stopped.is_set()  # waits for a busy worker's job
            gate.open()
        assert [(await job.wait()).unwrap() for job in jobs] == [0, 1]
        assert pool.worker_count == 1


@pytest.mark.parametrize(
    ("call", "error"),
    [
        (lambda pool: pool.resize(0), ValueError),
        (lambda pool: pool.resize(-1), ValueError),
        (lambda pool: pool.resize(1.5), TypeError),
        (lambda pool: pool.stop_workers(2), ValueError),
        (lambda pool: pool.add_workers(0), ValueError),
        (lambda pool: pool.ensure(at_least=3, at_most=2), ValueError),
    ],
)
async def test_bad_resizes(backend: str, call: Any, error: type[Exception]) -> None:
    async with trio_pool.Pool(workers=2) as pool:
        with pytest.raises(error):
            await call(pool)
        assert pool.worker_count == 2


def test_bad_autoscaling_options() -> None:
    with pytest.raises(ValueError, match="above max_workers"):
        trio_pool.Pool(min_workers=3, max_workers=2)
    with pytest.raises(TypeError, match="not both"):
        trio_pool.Pool(workers=2, max_workers=4)
    with pytest.raises(ValueError, match="idle_timeout"):
        trio_pool.Pool(max_workers=2, idle_timeout=0)
    with pytest.raises(ValueError, match="min_workers"):
        trio_pool.Pool(min_workers=-1, max_workers=2)
    assert trio_pool.Pool(max_workers=3)._options.queue_size == 12  # 4 * max_workers
    assert trio_pool.Pool(workers=3)._options.queue_size == 64  # max(64, 4 * workers)


async def test_add_workers_beyond_max_workers(backend: str) -> None:
    async with trio_pool.Pool(min_workers=1, max_workers=2) as pool:
        with pytest.raises(ValueError, match="max_workers"):
            await pool.add_workers(2)


async def test_a_new_worker_failing_to_load_leaves_the_pool_as_it_was(backend: str) -> None:
    log = Log()
    async with trio_pool.Pool(recording_interface(log, fail_load={3}), "x", workers=2) as pool:
        with pytest.raises(OSError, match="worker 3"):
            await pool.resize(4)  # workers 2 and 3: 3 fails, so 2 is stopped again
        assert pool.worker_count == 2
        assert sorted(w for w, _, _ in log.of("exit")) == [2]
        assert {await pool.run(worker_id) for _ in range(20)} <= {0, 1}
        stats_add_up(pool)


async def test_hook_errors_of_stopped_workers_are_raised_by_the_resize(backend: str) -> None:
    log = Log()
    async with trio_pool.Pool(recording_interface(log, fail_exit={1}), "x", workers=2) as pool:
        with pytest.raises(RuntimeError, match="hook of worker 1"):
            await pool.stop_workers(1)  # the youngest idle worker: 1
        assert pool.statistics().hook_errors == 1
    # ...and not again at exit.


async def test_cancelling_a_resize_half_way_leaves_the_pool_consistent(backend: str) -> None:
    gate = Gate()
    async with trio_pool.Pool(workers=2) as pool:
        jobs = [await pool.submit(gate.enter) for _ in range(2)]
        await gate.wait_arrivals(2)
        returned = False
        with anyio.CancelScope() as scope:
            async with anyio.create_task_group() as tg:

                async def shrink() -> None:
                    nonlocal returned
                    await pool.stop_workers(1)
                    returned = True

                tg.start_soon(shrink)
                await anyio.wait_all_tasks_blocked()
                scope.cancel()
                await anyio.lowlevel.cancel_shielded_checkpoint()
                gate.open()
        assert not returned
        for job in jobs:
            await job.wait()
        assert pool.worker_count == 1
        stats_add_up(pool)
        assert await pool.run(str, 1) == "1"


# --- broadcast ----------------------------------------------------------------------------


async def test_broadcast_runs_once_on_every_worker_in_order(backend: str) -> None:
    async with trio_pool.Pool(recording_interface(Log()), "tag", workers=3) as pool:
        results = await pool.broadcast(worker_id)
        assert [r.unwrap() for r in results] == [0, 1, 2]
        results = await pool.broadcast("echo", "x")
        assert [r.unwrap() for r in results] == [("tag", "x")] * 3

        def fail_on_one() -> int:
            if worker_id() == 1:
                raise KeyError("one")
            return worker_id()

        results = await pool.broadcast(fail_on_one)
        assert isinstance(results[1], outcome.Error)
        assert [results[0].unwrap(), results[2].unwrap()] == [0, 2]


async def test_cancelling_a_broadcast_half_way(backend: str) -> None:
    gate, log = Gate(), Log()
    async with trio_pool.Pool(workers=2) as pool:
        blocker = await pool.submit(gate.enter)  # worker 0 or 1 is busy
        await wait_in_thread(gate.entered)
        with anyio.CancelScope() as scope:
            async with anyio.create_task_group() as tg:
                tg.start_soon(pool.broadcast, log.add, "ran")
                await poll_until(lambda: len(log.items) == 1)  # the idle worker ran it
                scope.cancel()
        # Whether the caller saw the first copy's result or only its cancellation
        # depends on whether that result had reached the loop: either way the
        # busy worker's copy never ran.
        gate.open()
        await blocker.wait()
        assert len(log.items) == 1  # the busy worker's copy was removed
        stats_add_up(pool)
        assert [r.unwrap() for r in await pool.broadcast(worker_id)] == [0, 1]


# --- every accepted job gets exactly one outcome, whatever happens ----------------------------


async def test_random_interleavings(backend: str) -> None:
    rng = random.Random(1234)
    log = Log()
    callbacks: dict[int, int] = {}
    jobs: list[trio_pool.Job[Any]] = []

    def count_callback(n: int, _: object) -> None:
        callbacks[n] = callbacks.get(n, 0) + 1

    async with trio_pool.Pool(recording_interface(log), "x", workers=2, queue_size=8) as pool:

        async def submit_some() -> None:
            for _ in range(rng.randrange(1, 4)):
                n = len(jobs)
                job = await pool.submit(lambda n: n, n)
                job.add_done_callback(functools.partial(count_callback, n))
                jobs.append(job)

        async def cancelled_caller() -> None:
            with anyio.CancelScope() as scope:
                scope.cancel()
                await pool.run(int)

        for _step in range(1000):
            action = rng.random()
            if action < 0.05:
                await pool.resize(rng.randrange(1, 5))
            elif action < 0.6:
                await submit_some()
            elif action < 0.75 and jobs:
                rng.choice(jobs).cancel()
            elif action < 0.85:
                await cancelled_caller()
            elif action < 0.95:
                async with pool.lease() as worker:
                    assert await worker.run(worker_id) == worker.id
            else:
                await anyio.lowlevel.checkpoint()
    for n, job in enumerate(jobs):
        assert job.done
        assert callbacks[n] == 1
        result = job.outcome
        if isinstance(result, outcome.Value):
            assert result.value == n  # nobody got another job's result
        else:
            assert isinstance(result, outcome.Error)
            assert isinstance(result.error, trio_pool.JobCancelled)
    stats = pool.statistics()
    assert stats.submitted == stats.completed + stats.failed + stats.cancelled
    loads, exits = log.of("load"), log.of("exit")
    assert sorted(w for w, _ in loads) == sorted(w for w, _, _ in exits)  # one hook per worker
    assert len(loads) == stats.workers_started


# --- regressions found in review ----------------------------------------------------


async def test_concurrent_leases_and_resizes_decide_after_their_checkpoint(backend: str) -> None:
    async with trio_pool.Pool(workers=2) as pool:
        ids: list[int] = []
        ready = anyio.Event()

        async def lessee() -> None:
            async with pool.lease() as worker:
                ids.append(worker.id)
                await ready.wait()

        async with anyio.create_task_group() as tg:
            tg.start_soon(lessee)
            tg.start_soon(lessee)
            await poll_until(lambda: len(ids) == 2)
            ready.set()
        assert sorted(ids) == [0, 1]  # exclusive: never the same worker twice
    async with trio_pool.Pool(workers=3) as pool:
        async with anyio.create_task_group() as tg:
            tg.start_soon(pool.stop_workers, 1)
            tg.start_soon(pool.stop_workers, 1)
        assert pool.worker_count == 1
    async with trio_pool.Pool(min_workers=1, max_workers=3) as pool:
        errors: list[BaseException] = []

        async def add_two() -> None:
            try:
                await pool.add_workers(2)
            except ValueError as exc:
                errors.append(exc)

        async with anyio.create_task_group() as tg:
            tg.start_soon(add_two)
            tg.start_soon(add_two)
        assert (pool.worker_count, len(errors)) == (3, 1)


async def test_new_workers_let_in_every_waiting_lessee(backend: str) -> None:
    entered: list[int] = []
    all_in = anyio.Event()
    async with trio_pool.Pool(workers=1) as pool:
        async with anyio.create_task_group() as tg:
            async with pool.lease():

                async def lessee() -> None:
                    async with pool.lease() as worker:
                        entered.append(worker.id)
                        if len(entered) == 2:
                            all_in.set()
                        await all_in.wait()  # hold it until both are in

                tg.start_soon(lessee)
                tg.start_soon(lessee)
                await anyio.wait_all_tasks_blocked()
                await pool.add_workers(2)
                await poll_until(lambda: len(entered) == 2)
        assert sorted(entered) == [1, 2]


async def test_a_broadcast_to_a_worker_that_fails_to_load(backend: str) -> None:
    log = Log()
    async with trio_pool.Pool(recording_interface(log, fail_load={1}), "x", workers=1) as pool:
        results: list[list[outcome.Outcome[Any]]] = []
        async with anyio.create_task_group() as tg:

            async def grow() -> None:
                with pytest.raises(OSError, match="worker 1"):
                    await pool.add_workers(1)

            tg.start_soon(grow)
            await anyio.lowlevel.checkpoint()
            results.append(await pool.broadcast(worker_id))
        [(first, *rest)] = results
        assert first.unwrap() == 0
        for result in rest:  # the new worker's copy never ran
            assert isinstance(result, outcome.Error)
            assert isinstance(result.error, trio_pool.JobCancelled)
        stats_add_up(pool)


async def test_closing_runs_queued_jobs_even_if_every_worker_is_leased(backend: str) -> None:
    async with anyio.create_task_group() as tg, trio_pool.Pool(workers=1) as pool:
        leased = anyio.Event()

        async def hold_the_lease() -> None:
            async with pool.lease():
                leased.set()
                await anyio.sleep_forever()

        tg.start_soon(hold_the_lease)
        await leased.wait()
        job = pool.submit_nowait(str, "queued")
        await pool.aclose()
        assert (await job.wait()).unwrap() == "queued"
        tg.cancel_scope.cancel()


async def test_autoscaling_from_zero_for_a_lease_and_after_a_failed_loader(backend: str) -> None:
    async with trio_pool.Pool(min_workers=0, max_workers=2) as pool:
        async with pool.lease() as worker:  # a lessee starts a worker too
            assert await worker.run(worker_id) == 0

    class Bad:
        def __init__(self) -> None:
            raise RuntimeError("cannot load")

    with pytest.raises(RuntimeError, match="cannot load"):  # raised again at exit
        async with trio_pool.Pool(Bad, min_workers=0, max_workers=2) as pool:
            with pytest.raises(RuntimeError, match="cannot load"):
                await pool.run(int)  # no worker can run it: it fails, it does not hang


async def test_autoscaling_load_errors_are_logged_when_they_happen_and_kept_boundedly(
    backend: str, caplog: pytest.LogCaptureFixture
) -> None:
    class Bad:
        def __init__(self) -> None:
            raise ConnectionError("database unreachable")

    caplog.set_level(logging.WARNING, logger="trio_pool")
    with pytest.raises(ConnectionError) as info:
        async with trio_pool.Pool(Bad, min_workers=0, max_workers=2) as pool:
            for _ in range(15):  # every new job retries the loader
                with pytest.raises(ConnectionError):
                    await pool.run(int)
            # A worker the last failure made the pool start may still be loading.
            await poll_until(lambda: pool.statistics().workers == 0)
            attempts = pool.statistics().workers_started
            # Nobody is raised these until the exit: each was logged when it happened.
            warned = [r for r in caplog.records if "its loader raised" in r.getMessage()]
            assert len(warned) == attempts > 10
            assert all(r.levelno == logging.WARNING and r.exc_info is None for r in warned)
    # The exit raises the first as itself, and notes the next ten, not one per retry
    # for as long as the pool lives.
    assert not isinstance(info.value, BaseExceptionGroup)
    assert len(info.value.__notes__) == 10
    assert all("failed too" in note for note in info.value.__notes__)


async def test_define_refuses_a_class_method_before_any_worker_loads(backend: str) -> None:
    class Db:
        def query(self) -> int:
            return 1  # pragma: no cover

    async with trio_pool.Pool(Db, min_workers=0, max_workers=1) as pool:
        with pytest.raises(ValueError, match="already has"):
            pool.define("query", int)


async def test_broadcast_serves_from_loop_calls_of_every_job(backend: str) -> None:
    async with trio_pool.Pool(workers=2) as pool:

        async def send(to: int) -> None:
            pool.notify(to, "go", "hello")

        def job() -> object:
            if worker_id() == 0:
                return trio_pool.wait("go", TIMEOUT)  # worker 1 wakes it, through the loop
            trio_pool.from_loop(send, 0)
            return "sent"

        results = await pool.broadcast(job)
        assert [r.unwrap() for r in results] == [("hello",), "sent"]


# --- edges found from outside: starting, closing, leases ------------------------


class ThreadLimit:
    """Worker threads from ``first`` on cannot start, as at a ulimit or container limit.

    ``anyio.to_thread.run_sync`` raises what trio and anyio raise then; other
    threads (the tests' own handshakes) start as usual.
    """

    def __init__(self, monkeypatch: pytest.MonkeyPatch, first: int = 0) -> None:
        from trio_pool._worker import Worker

        real = anyio.to_thread.run_sync

        async def run_sync(func: Any, *args: Any, **kwargs: Any) -> Any:
            target = getattr(func, "__self__", None)
            if isinstance(target, Worker) and target.id >= first:
                raise RuntimeError("can't start new thread")
            return await real(func, *args, **kwargs)

        monkeypatch.setattr(anyio.to_thread, "run_sync", run_sync)


async def test_a_worker_thread_that_cannot_start_fails_the_entry(
    backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = Log()
    ThreadLimit(monkeypatch, first=2)
    with anyio.fail_after(TIMEOUT), pytest.raises(RuntimeError, match="can't start"):
        async with trio_pool.Pool(recording_interface(log), "x", workers=3):
            pass  # pragma: no cover
    assert sorted(w for w, *_ in log.of("exit")) == [0, 1]  # the ones that did start


async def test_resizing_when_threads_cannot_start(
    backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with trio_pool.Pool(workers=1) as pool:
        ThreadLimit(monkeypatch, first=1)
        with anyio.fail_after(TIMEOUT):
            with pytest.raises(RuntimeError, match="can't start"):
                await pool.add_workers(1)
            with pytest.raises(RuntimeError, match="can't start"):
                await pool.resize(2)
            with pytest.raises(RuntimeError, match="can't start"):
                await pool.ensure(at_least=2)
        assert pool.worker_count == 1
        assert pool.statistics().workers == 1  # none is left registered
        assert await pool.run(worker_id) == 0
        stats_add_up(pool)


async def test_autoscaling_when_threads_cannot_start(
    backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    ThreadLimit(monkeypatch)
    with anyio.fail_after(TIMEOUT), pytest.raises(RuntimeError, match="can't start"):
        async with trio_pool.Pool(min_workers=0, max_workers=2) as pool:
            with pytest.raises(RuntimeError, match="can't start"):
                await pool.run(int)  # no worker could start: it fails, it does not hang


class InterruptedStart:
    """The pool's task group raises KeyboardInterrupt when it starts worker ``worker``."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, worker: int) -> None:
        real = anyio.create_task_group

        class Group:
            def __init__(self) -> None:
                self._group = real()
                self.cancel_scope = self._group.cancel_scope

            async def __aenter__(self) -> Group:
                await self._group.__aenter__()
                return self

            async def __aexit__(self, *exc_info: Any) -> bool | None:
                return await self._group.__aexit__(*exc_info)

            def start_soon(self, fn: Any, *args: Any, name: object = None) -> None:
                if isinstance(name, str) and name.endswith(f"-worker-{worker}"):
                    raise KeyboardInterrupt
                self._group.start_soon(fn, *args, name=name)

        monkeypatch.setattr(anyio, "create_task_group", Group)


async def test_ctrl_c_while_workers_start_leaves_none_behind(
    backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = Log()
    InterruptedStart(monkeypatch, worker=2)
    with anyio.fail_after(TIMEOUT), pytest.raises(KeyboardInterrupt):
        async with trio_pool.Pool(recording_interface(log), "x", workers=4):
            pass  # pragma: no cover
    # Whichever workers got as far as loading were closed again.
    assert sorted(w for w, *_ in log.of("exit")) == sorted(w for w, *_ in log.of("load"))


async def test_a_lessee_after_a_failed_growth_step_gets_a_worker(backend: str) -> None:
    loads = itertools.count()

    class FailsOnce:
        def __init__(self) -> None:
            if next(loads) == 0:
                raise OSError("the first load fails")

    with pytest.raises(OSError, match="first load"):  # kept for the exit
        async with trio_pool.Pool(FailsOnce, min_workers=0, max_workers=2) as pool:
            with pytest.raises(OSError, match="first load"):
                await pool.run(int)  # no worker to run it
            with anyio.fail_after(TIMEOUT):
                async with pool.lease() as worker:  # new work: growing is tried again
                    assert await worker.run(worker_id) == 1


async def test_add_workers_never_hands_a_worker_it_may_stop_again_to_a_lessee(
    backend: str,
) -> None:
    second_loads = threading.Event()

    class SecondNewOneFails:
        def __init__(self) -> None:
            if trio_pool.current_worker().id == 2:
                assert second_loads.wait(TIMEOUT)
                raise OSError("worker 2 cannot load")

    calls: list[int] = []
    errors: list[BaseException] = []
    added = anyio.Event()

    async def lessee() -> None:
        with anyio.fail_after(TIMEOUT):
            async with pool.lease() as worker:
                await added.wait()
                calls.append(await worker.run(worker_id))

    async def add_two() -> None:
        try:
            await pool.add_workers(2)
        except OSError as exc:
            errors.append(exc)
        added.set()

    def worker_1_is_up() -> bool:
        return any(w.id == 1 and w.state == "idle" for w in pool.statistics().worker_states)

    async with trio_pool.Pool(SecondNewOneFails, workers=1) as pool:
        async with anyio.create_task_group() as tg:
            async with pool.lease():  # worker 0 is busy with a lease
                async with anyio.create_task_group() as adding:
                    adding.start_soon(add_two)
                    await poll_until(worker_1_is_up)
                    tg.start_soon(lessee)  # worker 1 is free, but may be stopped again
                    await anyio.wait_all_tasks_blocked()
                    second_loads.set()
                assert [str(e) for e in errors] == ["worker 2 cannot load"]
                assert pool.worker_count == 1  # worker 1 was stopped again
        assert calls == [0]  # the lessee waited for worker 0, not for the stopped one


async def test_closing_an_autoscaling_pool_finishes_the_jobs_queued_before_any_worker(
    backend: str,
) -> None:
    log = Log()
    async with trio_pool.Pool(recording_interface(log), "x", min_workers=0, max_workers=1) as pool:
        job = pool.submit_nowait(worker_id)  # queued: no worker yet
        await pool.aclose()
        assert job.outcome == outcome.Value(0)
        assert len(log.of("exit")) == 1

    with pytest.raises(OSError, match="cannot load"):
        async with trio_pool.Pool(
            recording_interface(log, fail_load={0}), "x", min_workers=0, max_workers=1
        ) as pool:
            job = pool.submit_nowait(int)
            try:
                await pool.aclose()
            finally:
                assert isinstance(job.outcome, outcome.Error)  # it has one, the loader's
                assert isinstance(job.outcome.error, OSError)


async def test_a_growth_step_that_fails_while_the_pool_closes(backend: str) -> None:
    loading, load = threading.Event(), threading.Event()

    class SlowToFail:
        def __init__(self) -> None:
            loading.set()
            assert load.wait(TIMEOUT)
            raise OSError("cannot load")

    async with trio_pool.Pool(SlowToFail, min_workers=0, max_workers=1) as pool:
        job = await pool.submit(int)
        await wait_in_thread(loading)
        load.set()
        with anyio.fail_after(TIMEOUT), pytest.raises(OSError, match="cannot load"):
            await pool.aclose()  # the loader's error, and nothing else
        assert isinstance(job.outcome, outcome.Error)
        assert isinstance(job.outcome.error, OSError)

    loading.clear()
    load.clear()
    with pytest.raises(BaseExceptionGroup) as group:
        async with trio_pool.Pool(SlowToFail, min_workers=0, max_workers=1) as pool:
            job = await pool.submit(int)
            await wait_in_thread(loading)
            job.add_done_callback(lambda _: load.set())  # the error exit cancels the job
            raise KeyError("body")
    assert sorted(type(e).__name__ for e in group.value.exceptions) == ["KeyError", "OSError"]


async def test_every_accepted_job_finishes_before_the_first_hook_runs(backend: str) -> None:
    job_runs, hook_entered, gate = threading.Event(), threading.Event(), Gate()
    seen: list[bool] = []

    class Iface:
        def __exit__(self, *exc_info: Any) -> None:
            seen.append(job_runs.is_set())
            hook_entered.set()

    def job() -> None:
        job_runs.set()
        gate.enter()
        job_runs.clear()

    async def open_the_gate_once_the_exit_waits() -> None:
        await anyio.wait_all_tasks_blocked()
        # A hook that runs too early does so now; give its thread the chance.
        await anyio.to_thread.run_sync(hook_entered.wait, 0.5)
        gate.open()

    async with anyio.create_task_group() as tg:
        async with trio_pool.Pool(Iface, workers=2) as pool:
            await pool.submit(job)
            await wait_in_thread(gate.entered)
            tg.start_soon(open_the_gate_once_the_exit_waits)
    assert seen == [False, False]


async def test_leases_are_served_first_come_first_served(backend: str) -> None:
    order: list[object] = []

    async def lessee(name: object) -> None:
        with anyio.fail_after(TIMEOUT):
            async with pool.lease():
                order.append(name)

    async with trio_pool.Pool(workers=1) as pool, anyio.create_task_group() as tg:
        async with pool.lease():
            for name in range(5):
                tg.start_soon(lessee, name)
                await anyio.wait_all_tasks_blocked()  # each waits before the next comes
        async with pool.lease():  # right after its release: no overtaking the line
            order.append("again")
    assert order == [0, 1, 2, 3, 4, "again"]


async def test_stopping_never_leaves_only_workers_that_may_still_fail_to_load(
    backend: str,
) -> None:
    load = threading.Event()

    class NewOneFails:
        def __init__(self) -> None:
            if trio_pool.current_worker().id == 1:
                assert load.wait(TIMEOUT)
                raise OSError("worker 1 cannot load")

    errors: list[BaseException] = []

    async def add_one() -> None:
        try:
            await pool.add_workers(1)
        except OSError as exc:
            errors.append(exc)

    async with trio_pool.Pool(NewOneFails, workers=1) as pool:
        async with anyio.create_task_group() as tg:
            tg.start_soon(add_one)
            await poll_until(lambda: pool.worker_count == 2)  # worker 1 is loading
            with pytest.raises(ValueError, match="still loading"):
                await pool.stop_workers(1)  # worker 0 is the only loaded one
            load.set()
        assert [str(e) for e in errors] == ["worker 1 cannot load"]
        with anyio.fail_after(TIMEOUT):
            assert await pool.run(worker_id) == 0  # a worker is left to run it


async def test_an_error_exit_while_a_growth_step_starts_raises_only_the_error(
    backend: str,
) -> None:
    # However far the step got (none, its task scheduled, its thread running),
    # a worker the pool stopped before it loaded is no error of its own.
    for checkpoints in range(6):
        with pytest.raises(KeyError, match="body"):
            async with trio_pool.Pool(min_workers=0, max_workers=2) as pool:
                pool.submit_nowait(int)
                for _ in range(checkpoints):
                    await anyio.lowlevel.checkpoint()
                raise KeyError("body")


async def test_stopping_never_leaves_only_workers_that_add_workers_may_take_back(
    backend: str,
) -> None:
    # add_workers(2) has loaded worker 1 and waits for worker 2, whose loader
    # will fail: then it stops worker 1 again. A resize that stopped worker 0
    # meanwhile left the pool with no worker at all, and every later call hung.
    loading = Gate()

    class Iface:
        def __init__(self) -> None:
            if trio_pool.current_worker().id == 2:
                loading.enter()
                raise KeyError("worker 2")

    def held() -> int:
        trio_pool.wait("release", TIMEOUT)
        return trio_pool.current_worker().id

    async with trio_pool.Pool(Iface, workers=1) as pool:

        async def add() -> None:
            with pytest.raises(KeyError):
                await pool.add_workers(2)

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(add)
            await wait_in_thread(loading.entered)
            await poll_until(lambda: pool.statistics().idle == 2)  # workers 0 and 1
            jobs = [await pool.submit(held), await pool.submit(held)]
            await poll_until(lambda: pool.statistics().busy == 2)
            pool.notify(0, "release")  # worker 0 is idle again; worker 1 stays busy
            await poll_until(lambda: pool.statistics().idle == 1)
            with pytest.raises(ValueError, match="remain"):
                await pool.resize(2)  # it would stop worker 0, leaving worker 1 alone
            pool.notify(1, "release")
            loading.open()
        assert sorted([(await job.wait()).unwrap() for job in jobs]) == [0, 1]
        with anyio.fail_after(TIMEOUT):
            assert await pool.run(int, "7") == 7
        assert pool.worker_count == 1


async def test_a_worker_add_workers_may_stop_again_is_never_stopped_by_stop_workers(
    backend: str,
) -> None:
    # add_workers(2) has loaded worker 1 and waits for worker 2, whose loader
    # will fail: then it stops worker 1 again. stop_workers(1) meanwhile chose
    # worker 1 too (the youngest idle one), so both stopped it, and its hook's
    # error was raised by both.
    loading = Gate()

    class Iface:
        def __init__(self) -> None:
            if trio_pool.current_worker().id == 2:
                loading.enter()
                raise KeyError("worker 2")

        def __exit__(self, *exc_info: object) -> None:
            if trio_pool.current_worker().id == 1:
                raise LookupError("hook 1")

    raised: list[BaseException] = []
    async with trio_pool.Pool(Iface, workers=1) as pool:

        async def add() -> None:
            try:
                await pool.add_workers(2)
            except BaseExceptionGroup as group:
                raised.extend(group.exceptions)

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(add)
            await wait_in_thread(loading.entered)
            await poll_until(lambda: pool.statistics().idle == 2)  # workers 0 and 1
            with pytest.raises(ValueError, match="being added"):
                await pool.stop_workers(1)  # worker 1 is add_workers's; worker 0 must stay
            loading.open()
        assert pool.worker_count == 1
    assert sorted(type(e).__name__ for e in raised) == ["KeyError", "LookupError"]


# --- renewal ---------------------------------------------------------------------


def _worker_id() -> int:
    return trio_pool.current_worker().id


async def test_max_jobs_per_worker_renews_workers_and_the_pool_keeps_its_size(
    backend: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="trio_pool")
    log = Log()
    async with trio_pool.Pool(recording_interface(log), "x", workers=2, max_jobs_per_worker=3) as p:
        ran_on: list[int] = []
        for _ in range(12):
            ran_on.append(await p.run(_worker_id))
            assert p.worker_count == 2  # a renewing worker's successor starts at once
        # Nothing queued is lost: a burst, with every worker renewed under it.
        jobs = [p.submit_nowait(_worker_id) for _ in range(20)]
        ran_on += [(await job.wait()).unwrap() for job in jobs]
        stats = p.statistics()
        assert stats.workers_renewed >= 10
        assert stats.completed == 32
    assert all(ran_on.count(worker) <= 3 for worker in set(ran_on))
    loads = sorted(w for w, _ in log.of("load"))
    assert sorted(w for w, _, _ in log.of("exit")) == loads  # each hook once
    assert all(exc_info == (None, None, None) for _, _, exc_info in log.of("exit"))
    renewed = [r for r in caplog.records if "renewed" in r.getMessage()]
    assert renewed
    assert all(r.levelno == logging.INFO for r in renewed)
    assert "max_jobs_per_worker" in renewed[0].getMessage()


async def test_a_leased_worker_is_renewed_only_when_its_lease_ends(backend: str) -> None:
    log = Log()
    async with trio_pool.Pool(recording_interface(log), "x", workers=1, max_jobs_per_worker=2) as p:
        async with p.lease() as worker:
            ids = {await worker.run(_worker_id) for _ in range(5)}
            assert ids == {worker.id}  # past its limit, it stays the lease's
        assert await p.run(_worker_id) != worker.id  # renewed once the lease ended
        assert p.statistics().workers_renewed == 1
    exits = {w: exc_info for w, _, exc_info in log.of("exit")}
    assert exits == {worker.id: (None, None, None), worker.id + 1: (None, None, None)}


async def test_renewal_with_autoscaling_stays_within_its_bounds(backend: str) -> None:
    async with trio_pool.Pool(
        min_workers=1, max_workers=2, idle_timeout=60, max_jobs_per_worker=1
    ) as pool:
        for _ in range(10):
            await pool.run(int)
            assert pool.worker_count <= 2
        assert pool.statistics().workers_renewed >= 9
        assert pool.worker_count >= 1


async def test_a_normal_exit_with_jobs_queued_renews_and_finishes_them_all(backend: str) -> None:
    async with trio_pool.Pool(workers=1, max_jobs_per_worker=1) as pool:
        jobs = [pool.submit_nowait(_worker_id) for _ in range(5)]
    assert len({job.outcome.unwrap() for job in jobs if job.outcome is not None}) == 5


@pytest.mark.parametrize(
    ("value", "error"), [(0, ValueError), (-1, ValueError), ("3", TypeError), (1.5, TypeError)]
)
def test_max_jobs_per_worker_is_checked(value: object, error: type[Exception]) -> None:
    with pytest.raises(error, match="max_jobs_per_worker"):
        trio_pool.Pool(max_jobs_per_worker=value)  # type: ignore[arg-type]


async def test_jobs_queued_when_autoscaling_cannot_start_a_worker_each_get_their_own_outcome(
    backend: str,
) -> None:
    class Unreachable:
        def __init__(self) -> None:
            raise ConnectionError("database unreachable")

    raised: list[BaseException] = []

    async def call(pool: trio_pool.Pool[Any]) -> None:
        try:
            await pool.run(int)
        except ConnectionError as exc:
            raised.append(exc)

    with pytest.raises(ConnectionError):
        async with trio_pool.Pool(Unreachable, min_workers=0, max_workers=1) as pool:
            async with anyio.create_task_group() as tg:
                for _ in range(3):  # queued together, failed together
                    tg.start_soon(call, pool)
    assert len(raised) == 3


async def test_a_resize_while_a_renewed_workers_successor_loads_stops_the_successor(
    backend: str,
) -> None:
    gate = Gate()

    class SlowSuccessors:
        def __init__(self) -> None:
            if trio_pool.current_worker().id >= 2:
                gate.enter()

    async with trio_pool.Pool(SlowSuccessors, workers=2, max_jobs_per_worker=1) as pool:
        async with anyio.create_task_group() as tg:
            await pool.run(int)  # its worker is renewed: a successor starts loading
            await wait_in_thread(gate.entered)
            assert pool.worker_count == 2
            tg.start_soon(pool.resize, 1)  # the loaded worker stays; the successor stops
            await poll_until(lambda: pool.worker_count == 1)
            gate.open()
        assert pool.worker_count == 1
        assert await pool.run(int, "5") == 5


async def test_a_fixed_pool_that_lost_its_workers_fails_queued_jobs_instead_of_hanging(
    backend: str,
) -> None:
    # Its only worker is renewed, and no successor can load: each job then starts a
    # worker again, and fails with the loader's error when that cannot load either.
    class OnlyTheFirstLoads:
        def __init__(self) -> None:
            if trio_pool.current_worker().id > 0:
                raise ConnectionError("database unreachable")

    with pytest.raises(ConnectionError):
        async with trio_pool.Pool(OnlyTheFirstLoads, workers=1, max_jobs_per_worker=1) as pool:
            assert await pool.run(int, "1") == 1  # then it is renewed: the successor fails
            with anyio.fail_after(TIMEOUT):
                for _ in range(2):
                    with pytest.raises(ConnectionError, match="database unreachable"):
                        await pool.run(int, "2")
                with pytest.raises(ConnectionError):  # a lessee too
                    async with pool.lease():
                        pass  # pragma: no cover
            stats = pool.statistics()  # (workers that failed to load may still be leaving)
            assert (stats.queued, stats.failed) == (0, 2)


@pytest.mark.parametrize("cancelled", [False, True])
async def test_a_fixed_pool_whose_added_worker_fails_last_fails_queued_jobs(
    backend: str, cancelled: bool
) -> None:
    # Its only worker is renewed; while the successor loads, a job is queued and
    # add_workers(1) starts another. The successor fails first, while the added
    # worker still loads: the queue waits for that one. Then it fails too, and
    # add_workers raises: the queued job waited for ever, with no worker left
    # (a random program, seed 358 on asyncio).
    successor, added = Gate(), Gate()

    class Iface:
        def __init__(self) -> None:
            worker = trio_pool.current_worker().id
            if worker == 1:
                successor.enter()
                raise ConnectionError("the successor cannot load")
            if worker == 2:
                added.enter()
                raise ConnectionError("the added worker cannot load")

    scope = anyio.CancelScope()  # cancelled, add_workers still waits for the load

    async def add_one() -> None:
        with scope, pytest.raises(BaseException) as raised:  # noqa: PT011 (looked at below)
            await pool.add_workers(1)
        assert "ConnectionError('the added worker" in repr(list(leaves(raised.value)))

    with pytest.raises(ConnectionError, match="successor"):  # kept for the exit
        async with trio_pool.Pool(Iface, workers=1, max_jobs_per_worker=1) as pool:
            assert await pool.run(int, "1") == 1  # then it is renewed: worker 1 loads
            await wait_in_thread(successor.entered)
            job = pool.submit_nowait(int, "2")  # queued: a worker still loads
            async with anyio.create_task_group() as tg:
                tg.start_soon(add_one)
                await wait_in_thread(added.entered)  # worker 2 loads
                if cancelled:
                    scope.cancel()
                successor.open()
                await poll_until(lambda: pool.statistics().workers == 1)  # only worker 2
                await anyio.wait_all_tasks_blocked()  # the pool has seen worker 1 go
                added.open()
            with anyio.fail_after(TIMEOUT):
                result = await job.wait()
            assert isinstance(result, outcome.Error)
            assert isinstance(result.error, ConnectionError)
            assert pool.statistics().queued == 0


class HookError(Exception):
    pass


@pytest.mark.trio
async def test_a_hook_error_is_raised_once_when_add_workers_stops_a_worker_already_retired(
    mock_clock: trio.testing.MockClock,
) -> None:
    # add_workers(2): worker 0 loads, serves and is retired by autoscaling (its
    # hook fails: kept for the exit) while worker 1 loads; worker 1's loader
    # then fails, and add_workers stops the workers that loaded, worker 0
    # included: its hook's error was raised a second time (a random program).
    release = threading.Event()

    class Iface:
        def __init__(self) -> None:
            if trio_pool.current_worker().id == 1:
                release.wait(TIMEOUT)
                raise LookupError("worker 1 cannot load")

        def __exit__(self, *exc_info: object) -> None:
            raise HookError(trio_pool.current_worker().id)

    raised: list[BaseException] = []

    async def add_two() -> None:
        try:
            await pool.add_workers(2)
        except BaseException as exc:
            raised.append(exc)

    pool = trio_pool.Pool(Iface, min_workers=0, max_workers=2, idle_timeout=1)
    with pytest.raises(BaseException) as at_exit:  # noqa: PT011 (counted below)
        async with pool, trio.open_nursery() as nursery:
            nursery.start_soon(add_two)
            await poll_until(lambda: pool.statistics().idle == 1)  # worker 0 has loaded
            assert await pool.run(int, "3") == 3  # it serves, then idles
            mock_clock.jump(2)  # past its idle_timeout: retired
            await poll_until(lambda: pool.statistics().scaled_down == 1)
            release.set()
    hooks = [e for e in [*leaves(raised[0]), *leaves(at_exit.value)] if isinstance(e, HookError)]
    assert [e.args for e in hooks] == [(0,)]
