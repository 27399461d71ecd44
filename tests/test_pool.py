"""The Pool: lifetime, hooks, calling work, errors, threads and logging."""

from __future__ import annotations

import functools
import inspect
import itertools
import logging
import sys
import threading
import traceback
from collections.abc import Callable
from typing import Any

import anyio
import outcome
import pytest
import trio
import trio.testing

import trio_pool

from helpers import (
    TIMEOUT,
    Gate,
    Log,
    poll_until,
    recording_interface,
    wait_in_thread,
)

if sys.version_info < (3, 11):
    from exceptiongroup import BaseExceptionGroup, ExceptionGroup


async def test_async_functions_and_non_callables_are_refused(backend: str) -> None:
    async def coro() -> None:
        pass  # pragma: no cover

    async with trio_pool.Pool(workers=1) as pool:
        with pytest.raises(TypeError, match="async function"):
            await pool.run(coro)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="async function"):
            pool.submit_nowait(coro)
        with pytest.raises(TypeError, match="async function"):
            await pool.run(functools.partial(coro))  # type: ignore[arg-type]

        class Conn:
            async def query(self) -> None:
                pass  # pragma: no cover

            def ping(self) -> str:
                return "pong"

        with pytest.raises(TypeError, match="async function"):  # a bound async method
            await pool.run(Conn().query)  # type: ignore[arg-type]
        assert await pool.run(Conn().ping) == "pong"  # the fast paths: a method, a class
        assert isinstance(await pool.run(Conn), Conn)
        if sys.version_info >= (3, 12):  # a sync def marked as async is refused too

            def marked() -> None:
                pass  # pragma: no cover

            with pytest.raises(TypeError, match="async function"):
                await pool.run(inspect.markcoroutinefunction(marked))
        with pytest.raises(TypeError, match="expected a sync function, not 42"):
            await pool.run(42)  # type: ignore[arg-type]
        # A name is an operation: the error says where names go.
        with pytest.raises(TypeError, match=r"not the name 'query'.*call\('query', ...\)"):
            await pool.run("query")  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="name of an operation"):
            await pool.call(len)  # type: ignore[arg-type]
        # A sync callable that returns a coroutine is caught in the worker.
        with pytest.raises(TypeError, match="returned a coroutine"):
            await pool.run(lambda: coro())
        assert pool.statistics().submitted == 3


async def test_a_pool_is_entered_once_and_only_after_entering_takes_work(backend: str) -> None:
    pool = trio_pool.Pool(workers=1)
    with pytest.raises(RuntimeError, match="enter the pool first"):
        await pool.run(int)
    async with pool:
        pass
    with pytest.raises(RuntimeError, match="only once"):
        async with pool:
            pass  # pragma: no cover


# --- the basic surface ----------------------------------------------------------


async def test_calling_work_every_way(backend: str) -> None:
    log = Log()
    async with trio_pool.Pool(recording_interface(log), "db", workers=2) as pool:
        assert await pool.interface.echo(1) == ("db", 1)
        result = await pool.call("echo", 2)
        assert isinstance(result, outcome.Value)
        assert result.unwrap() == ("db", 2)
        assert await pool.run(len, b"abc") == 3
        assert await pool.run(int, "7", base=8) == 7
        assert await pool.call_method(recording_interface(log).echo, 3) == ("db", 3)
        job = await pool.submit("echo", 4)
        assert (await job.wait()).unwrap() == ("db", 4)
        job = await pool.submit(sorted, [3, 1, 2], reverse=True)
        assert (await job.wait()).unwrap() == [3, 2, 1]
        assert "echo" in dir(pool.interface)


async def test_mapping_and_no_interface(backend: str) -> None:
    log = Log()
    interface = {"double": lambda x: 2 * x, "__exit__": lambda *exc: log.add("exit", exc)}
    async with trio_pool.Pool(interface, workers=2) as pool:
        assert await pool.interface.double(21) == 42
        assert isinstance((await pool.call("__exit__")).error, AttributeError)  # type: ignore[union-attr]
        assert isinstance((await pool.call("triple", 1)).error, AttributeError)  # type: ignore[union-attr]
    assert log.items == [("exit", (None, None, None))] * 2

    async with trio_pool.Pool(workers=1) as pool:
        assert await pool.run(sum, [1, 2]) == 3
        error = (await pool.call("anything")).error  # type: ignore[union-attr]
        assert isinstance(error, AttributeError)
        assert "no interface" in str(error)
        with pytest.raises(AttributeError):
            pool.interface.anything  # noqa: B018


async def test_unknown_and_private_operations(backend: str) -> None:
    async with trio_pool.Pool(recording_interface(Log()), "x", workers=1) as pool:
        with pytest.raises(AttributeError, match="no operation 'nope'"):
            pool.interface.nope  # noqa: B018
        with pytest.raises(AttributeError):
            pool.interface._record  # noqa: B018
        for op in ("nope", "__init__", "_private"):
            result = await pool.call(op)
            assert isinstance(result, outcome.Error)
            assert isinstance(result.error, AttributeError)
        # An operation's own errors come back inside the Outcome too.
        result = await pool.call("echo")
        assert isinstance(result, outcome.Error)
        assert isinstance(result.error, TypeError)


async def test_each_interface_lives_and_dies_in_its_own_thread(backend: str) -> None:
    log = Log()
    async with trio_pool.Pool(recording_interface(log), "db", workers=3) as pool:
        assert sorted(w for w, _ in log.of("load")) == [0, 1, 2]
        seen = {await pool.interface.where() for _ in range(30)}
        assert seen <= {thread for _, thread in log.of("load")}
    loads = dict(log.of("load"))
    exits = log.of("exit")
    assert len(exits) == 3
    for worker, thread, exc_info in exits:
        assert loads[worker] == thread
        assert exc_info == (None, None, None)


async def test_enter_result_is_the_interface_and_exit_runs_on_the_loaded_object(
    backend: str,
) -> None:
    log = Log()

    class Resource:
        def __enter__(self) -> dict[str, Any]:
            log.add("enter", threading.get_ident())
            return {"ping": lambda: "pong"}

        def __exit__(self, *exc_info: Any) -> None:
            log.add("exit", threading.get_ident())

    async with trio_pool.Pool(Resource, workers=1) as pool:
        assert await pool.interface.ping() == "pong"
        assert await pool.run(lambda: trio_pool.current_interface()["ping"]()) == "pong"
    assert log.of("enter") == log.of("exit")
    assert len(log.of("exit")) == 1


# --- errors ----------------------------------------------------------------------


class Custom(BaseException):
    pass


def fails_with_cause() -> None:
    try:
        raise KeyError("root")
    except KeyError as exc:
        raise ValueError("outer") from exc


@pytest.mark.parametrize("error", [KeyboardInterrupt, SystemExit, Custom, GeneratorExit])
async def test_base_exceptions_are_captured_and_the_worker_keeps_serving(
    backend: str, error: type[BaseException]
) -> None:
    def raise_it() -> None:
        raise error("from a job")

    async with trio_pool.Pool(workers=1) as pool:
        job = await pool.submit(raise_it)
        result = await job.wait()
        assert isinstance(result, outcome.Error)
        assert type(result.error) is error
        assert job.worker_id == 0
        assert await pool.run(int, "5") == 5
        stats = pool.statistics()
        assert (stats.workers, stats.failed, stats.completed) == (1, 1, 1)


async def test_errors_keep_their_traceback_and_causes(backend: str) -> None:
    async with trio_pool.Pool(workers=1) as pool:
        with pytest.raises(ValueError, match="outer") as info:
            await pool.run(fails_with_cause)
        assert isinstance(info.value.__cause__, KeyError)
        frames = [frame.name for frame in traceback.extract_tb(info.value.__traceback__)]
        assert "fails_with_cause" in frames
        result = await pool.call_method(lambda _: 1)
        assert result == 1


async def test_a_failing_loader_stops_the_others_and_raises(backend: str) -> None:
    log = Log()
    body_ran = False
    with pytest.raises(OSError, match="cannot load worker 2"):
        async with trio_pool.Pool(recording_interface(log, fail_load={2}), "x", workers=4):
            body_ran = True  # pragma: no cover
    assert not body_ran
    assert sorted(w for w, _ in log.of("load")) == [0, 1, 2, 3]
    exits = log.of("exit")
    assert sorted(w for w, _, _ in exits) == [0, 1, 3]
    for _, _, (exc_type, exc, _tb) in exits:
        assert exc_type is OSError
        assert "worker 2" in str(exc)


async def test_several_failing_loaders_raise_one_error_the_others_as_its_notes(
    backend: str,
) -> None:
    # The type of a failed entry does not depend on the number of workers:
    # `except OSError:` works in a one-worker test and with many in production.
    log = Log()
    with pytest.raises(OSError, match="cannot load worker 0") as info:
        async with trio_pool.Pool(
            recording_interface(log, fail_load={0, 1}), "x", workers=3, name="p"
        ):
            pass  # pragma: no cover
    assert not isinstance(info.value, BaseExceptionGroup)
    assert info.value.__notes__ == [
        "the loader of worker p-worker-1 failed too: OSError('cannot load worker 1')"
    ]
    assert [w for w, _, _ in log.of("exit")] == [2]


async def test_a_loader_failing_the_same_way_in_every_worker_raises_it_once(backend: str) -> None:
    class Unreachable:
        def __init__(self) -> None:
            raise ConnectionError("database unreachable")

    for workers in (1, 3):
        with pytest.raises(ConnectionError, match="database unreachable") as info:
            async with trio_pool.Pool(Unreachable, workers=workers, name="p"):
                pass  # pragma: no cover
        notes = getattr(info.value, "__notes__", [])
        assert notes == [f"the loader of worker p-worker-{i} failed too" for i in range(1, workers)]


async def test_add_workers_raises_one_loader_error_the_others_as_its_notes(backend: str) -> None:
    log = Log()
    async with trio_pool.Pool(recording_interface(log, fail_load={1, 2}), "x", workers=1) as pool:
        with pytest.raises(OSError, match="cannot load worker 1") as info:
            await pool.add_workers(3)  # all or nothing: worker 3 loads, then stops again
        assert len(info.value.__notes__) == 1
        assert pool.worker_count == 1
    assert sorted(w for w, _, _ in log.of("exit")) == [0, 3]


async def test_a_failing_hook_surfaces_at_exit_and_the_others_still_run(backend: str) -> None:
    log = Log()
    with pytest.raises(RuntimeError, match="hook of worker 1 failed"):
        async with trio_pool.Pool(recording_interface(log, fail_exit={1}), "x", workers=3) as pool:
            await pool.interface.echo(1)
    assert sorted(w for w, _, _ in log.of("exit")) == [0, 1, 2]

    log = Log()
    with pytest.raises(ExceptionGroup) as info:
        async with trio_pool.Pool(recording_interface(log, fail_exit={0, 2}), "x", workers=3):
            pass
    assert len(info.value.exceptions) == 2
    assert sorted(w for w, _, _ in log.of("exit")) == [0, 1, 2]


async def test_a_hook_error_joins_the_body_error_in_a_group(backend: str) -> None:
    log = Log()
    with pytest.raises(BaseExceptionGroup) as info:
        async with trio_pool.Pool(recording_interface(log, fail_exit={0}), "x", workers=1):
            raise KeyError("body")
    assert [type(e) for e in info.value.exceptions] == [KeyError, RuntimeError]


# --- lifetime under errors and cancellation -------------------------------------


async def fill_one_worker(
    pool: trio_pool.Pool, gate: Gate, log: Log
) -> tuple[trio_pool.Job[Any], list[trio_pool.Job[Any]]]:
    """One job running on the only worker, behind ``gate``; two queued behind it."""
    running = await pool.submit(gate.enter, "running")
    await wait_in_thread(gate.entered)
    queued = [await pool.submit(log.add, "ran", i) for i in range(2)]
    return running, queued


async def test_body_error_cancels_queued_jobs_and_waits_for_running_ones(backend: str) -> None:
    log, gate = Log(), Gate(cooperative=True)
    with pytest.raises(KeyError, match="body"):
        async with trio_pool.Pool(recording_interface(log), "x", workers=1) as pool:
            running, queued = await fill_one_worker(pool, gate, log)
            raise KeyError("body")
    assert log.of("ran") == []  # queued jobs never started
    for job in queued:
        assert isinstance(job.outcome, outcome.Error)
        assert isinstance(job.outcome.error, trio_pool.JobCancelled)
    # The running job was told to stop, and was waited for.
    assert isinstance(running.outcome, outcome.Error)
    assert isinstance(running.outcome.error, trio_pool.JobCancelled)
    [(_, _, (exc_type, _, _))] = log.of("exit")
    assert exc_type is KeyError
    assert pool.statistics().cancelled == 3


async def test_cancelling_the_enclosing_scope_stops_the_pool(backend: str) -> None:
    log, gate = Log(), Gate(cooperative=True)
    with anyio.CancelScope() as scope:
        async with trio_pool.Pool(recording_interface(log), "x", workers=1) as pool:
            running, queued = await fill_one_worker(pool, gate, log)
            scope.cancel()
            await anyio.sleep_forever()
    assert scope.cancelled_caught
    assert log.of("ran") == []
    assert running.done
    assert all(job.done for job in queued)
    [(_, _, (exc_type, _, _))] = log.of("exit")
    assert exc_type is anyio.get_cancelled_exc_class()


async def test_normal_exit_finishes_every_accepted_job(backend: str) -> None:
    log = Log()
    async with trio_pool.Pool(workers=2, queue_size=100) as pool:
        jobs = [pool.submit_nowait(log.add, "ran", i) for i in range(50)]
    assert sorted(i for (i,) in log.of("ran")) == list(range(50))
    assert all(isinstance(job.outcome, outcome.Value) for job in jobs)
    assert pool.statistics().completed == 50


async def test_cancelled_while_finishing_jobs_at_exit(backend: str) -> None:
    log, gate = Log(), Gate(cooperative=True)

    async def cancel_soon() -> None:
        await anyio.wait_all_tasks_blocked()
        scope.cancel()

    async with anyio.create_task_group() as task_group:
        with anyio.CancelScope() as scope:
            async with trio_pool.Pool(recording_interface(log), "x", workers=1) as pool:
                await fill_one_worker(pool, gate, log)
                # The exit waits for the jobs; the cancellation interrupts that wait.
                task_group.start_soon(cancel_soon)
    assert scope.cancelled_caught
    assert log.of("ran") == []
    assert len(log.of("exit")) == 1


async def test_loading_interrupted_by_cancellation(backend: str) -> None:
    gate = Gate()
    log = Log()

    class Slow:
        def __init__(self) -> None:
            gate.enter()

        def __exit__(self, *exc_info: Any) -> None:
            log.add("exit", exc_info[0])

    with anyio.CancelScope() as scope:
        async with anyio.create_task_group() as tg:

            async def cancel_when_loading() -> None:
                await wait_in_thread(gate.entered)
                scope.cancel()
                gate.open()

            tg.start_soon(cancel_when_loading)
            async with trio_pool.Pool(Slow, workers=2):
                raise AssertionError("the body must not run")  # pragma: no cover
    assert scope.cancelled_caught
    assert log.of("exit") == [(anyio.get_cancelled_exc_class(),)] * 2


# --- backpressure and closing -----------------------------------------------------


async def test_backpressure(backend: str) -> None:
    gate = Gate()
    async with trio_pool.Pool(workers=1, queue_size=2) as pool:
        await pool.submit(gate.enter)
        await wait_in_thread(gate.entered)
        pool.submit_nowait(int)
        pool.submit_nowait(int)
        with pytest.raises(trio.WouldBlock):
            pool.submit_nowait(int)
        with pytest.raises(anyio.WouldBlock):
            pool.submit_nowait(int)
        got_in: list[trio_pool.Job[Any]] = []

        async def submit_one() -> None:
            got_in.append(await pool.submit(str, "late"))

        async with anyio.create_task_group() as tg:
            tg.start_soon(submit_one)
            await anyio.wait_all_tasks_blocked()
            assert got_in == []  # waiting for room
            assert pool.statistics().queued == 2
            gate.open()
        assert (await got_in[0].wait()).unwrap() == "late"


async def test_cancelled_while_waiting_for_room_submits_nothing(backend: str) -> None:
    gate = Gate()
    async with trio_pool.Pool(workers=1, queue_size=1) as pool:
        await pool.submit(gate.enter)
        await wait_in_thread(gate.entered)
        pool.submit_nowait(int)
        with anyio.move_on_after(0):
            await pool.submit(int)
        gate.open()
        assert await pool.run(str, 1) == "1"
        assert pool.statistics().submitted == 3


async def test_waiting_for_room_when_the_pool_closes(backend: str) -> None:
    gate = Gate()
    errors: list[BaseException] = []
    async with anyio.create_task_group() as tg, trio_pool.Pool(workers=1, queue_size=1) as pool:
        await pool.submit(gate.enter)
        await wait_in_thread(gate.entered)
        pool.submit_nowait(int)

        async def late() -> None:
            try:
                await pool.submit(int)
            except trio_pool.PoolClosedError as exc:
                errors.append(exc)

        tg.start_soon(late)
        await anyio.wait_all_tasks_blocked()
        gate.open()
        await pool.aclose()
    assert len(errors) == 1


async def test_use_after_exit_and_idempotent_aclose(backend: str) -> None:
    log = Log()
    async with trio_pool.Pool(recording_interface(log), "x", workers=2) as pool:
        await pool.aclose()
        await pool.aclose()
        assert len(log.of("exit")) == 2
        with pytest.raises(trio_pool.PoolClosedError):
            await pool.run(int)
    await pool.aclose()
    assert len(log.of("exit")) == 2
    for attempt in (pool.run(int), pool.call("echo"), pool.submit(int), pool.interface.echo(1)):
        with pytest.raises(trio.ClosedResourceError):
            await attempt
    with pytest.raises(anyio.ClosedResourceError):
        pool.submit_nowait(int)
    assert "closed" in repr(pool)


async def test_aclose_raises_hook_errors_once(backend: str) -> None:
    async with trio_pool.Pool(recording_interface(Log(), fail_exit={0}), "x", workers=1) as pool:
        with pytest.raises(RuntimeError, match="hook"):
            await pool.aclose()
        await pool.aclose()


# --- threads, workers, statistics, logging -----------------------------------------


async def test_current_worker_ids_names_and_local(backend: str) -> None:
    barrier = threading.Barrier(3, timeout=10)

    def who() -> tuple[int, str, str]:
        worker = trio_pool.current_worker()
        barrier.wait()  # all three workers at once: each job on its own worker
        return worker.id, worker.name, threading.current_thread().name

    def count() -> int:
        local = trio_pool.current_worker().local
        local.calls = getattr(local, "calls", 0) + 1
        return int(local.calls)

    async with trio_pool.Pool(workers=3, name="db") as pool:
        jobs = [await pool.submit(who) for _ in range(3)]
        seen = sorted([(await job.wait()).unwrap() for job in jobs])
        assert seen == [(i, f"db-worker-{i}", f"db-worker-{i}") for i in range(3)]
        assert [w.name for w in pool.statistics().worker_states] == [
            f"db-worker-{i}" for i in range(3)
        ]
    async with trio_pool.Pool(workers=1) as pool:
        assert [await pool.run(count) for _ in range(3)] == [1, 2, 3]


def os_thread_name(native_id: int) -> str:
    """What ``top -H`` and ``py-spy`` show for a thread of this process."""
    with open(f"/proc/self/task/{native_id}/comm") as comm:
        return comm.read().strip()


@pytest.mark.skipif(sys.platform != "linux", reason="reads the names in Linux's /proc")
async def test_worker_threads_have_the_pools_name_at_the_os_level_and_give_it_back(
    backend: str,
) -> None:
    def names() -> tuple[int, str]:
        return threading.get_native_id(), os_thread_name(threading.get_native_id())

    async with trio_pool.Pool(workers=2, name="a-long-pool-name") as pool:
        seen = [o.unwrap() for o in await pool.broadcast(names)]
    # 15 bytes at most (Linux's limit): the pool's name is cut, the id kept.
    assert sorted(name for _, name in seen) == ["a-long-pool-n-0", "a-long-pool-n-1"]
    for native_id, _ in seen:  # back in trio's or anyio's cache, with its old name
        assert not os_thread_name(native_id).startswith("a-long")


def test_os_thread_names_are_cut_on_a_character_boundary() -> None:
    from trio_pool._os_names import short_name

    assert short_name("db", 3) == "db-3"
    assert short_name("ééééééé", 12) == "éééééé-12"  # 12 + 3 bytes
    assert len(short_name("x" * 40, 123456).encode()) == 15


async def test_in_worker_functions_refuse_other_threads(backend: str) -> None:
    for fn in (trio_pool.current_worker, trio_pool.current_interface, trio_pool.check_cancelled):
        with pytest.raises(RuntimeError, match="worker"):
            fn()

    def during_load() -> None:
        trio_pool.current_interface()

    with pytest.raises(RuntimeError, match="loaded"):
        async with trio_pool.Pool(during_load, workers=1):
            pass  # pragma: no cover


async def test_logger_reports_workers_and_hook_errors(
    backend: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="trio_pool")
    with pytest.raises(RuntimeError):
        async with trio_pool.Pool(
            recording_interface(Log(), fail_exit={0}), "x", workers=1, name="logged"
        ):
            pass
    records = [r for r in caplog.records if r.name == "trio_pool"]
    messages = [(r.levelno, r.getMessage()) for r in records]
    assert (logging.DEBUG, "worker logged-worker-0 started") in messages
    assert (logging.DEBUG, "worker logged-worker-0 stopped") in messages
    # The hook's error reaches the caller (it was raised above), so it is
    # logged once, at DEBUG, without its traceback: it is printed only once.
    hook = [(level, m) for level, m in messages if "the exit hook raised" in m]
    assert len(hook) == 1
    level, message = hook[0]
    assert level == logging.DEBUG
    assert message.startswith("worker logged-worker-0: the exit hook raised RuntimeError(")
    assert all(r.levelno < logging.WARNING and r.exc_info is None for r in records)


async def test_a_loader_error_that_reaches_the_caller_is_logged_at_debug_only(
    backend: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="trio_pool")

    def broken() -> None:
        raise LookupError("no such database")

    with pytest.raises(LookupError, match="no such database"):
        async with trio_pool.Pool(broken, workers=1, name="broken"):
            pass
    records = [r for r in caplog.records if r.name == "trio_pool"]
    loads = [r for r in records if "failed to load" in r.getMessage()]
    assert len(loads) == 1
    assert all("LookupError('no such database')" in r.getMessage() for r in loads)
    assert all(r.levelno < logging.WARNING and r.exc_info is None for r in records)


async def test_many_workers_beside_the_default_thread_limiter(backend: str) -> None:
    barrier = threading.Barrier(64, timeout=10)
    async with trio_pool.Pool(workers=64) as pool:
        jobs = [await pool.submit(barrier.wait) for _ in range(64)]  # 64 threads at once
        # Meanwhile unrelated to_thread calls still get threads of their own.
        assert await anyio.to_thread.run_sync(lambda: "free") == "free"
        for job in jobs:
            (await job.wait()).unwrap()
        assert pool.statistics().workers == 64


@pytest.mark.trio
async def test_public_async_methods_are_checkpoints() -> None:
    async with trio_pool.Pool({"op": int}, workers=1) as pool:
        with trio.testing.assert_checkpoints():
            await pool.run(int)
        with trio.testing.assert_checkpoints():
            await pool.call("op")
        with trio.testing.assert_checkpoints():
            await pool.interface.op()
        with trio.testing.assert_checkpoints():
            job = await pool.submit(int)
        await job.wait()
        with trio.testing.assert_checkpoints():
            await job.wait()  # already done
        await pool.aclose()
        with trio.testing.assert_checkpoints():
            await pool.aclose()  # already closed


# --- regressions found in review ---------------------------------------------------


async def test_an_error_exit_cancels_even_while_aclose_finishes_jobs(backend: str) -> None:
    log, gate = Log(), Gate(cooperative=True)
    with pytest.raises(BaseExceptionGroup) as info:
        async with (
            anyio.create_task_group() as tg,
            trio_pool.Pool(recording_interface(log), "x", workers=1) as pool,
        ):
            running, queued = await fill_one_worker(pool, gate, log)
            tg.start_soon(pool.aclose)  # a graceful stop, asked for elsewhere
            await anyio.wait_all_tasks_blocked()
            raise KeyError("body")
    assert [type(e) for e in info.value.exceptions] == [KeyError]
    assert log.of("ran") == []
    assert all(job.done for job in queued)
    assert isinstance(running.outcome, outcome.Error)
    assert isinstance(running.outcome.error, trio_pool.JobCancelled)
    [(_, _, (exc_type, _, _))] = log.of("exit")
    assert exc_type is KeyError


async def test_a_hook_error_after_a_cancellation_is_raised_as_itself(backend: str) -> None:
    with pytest.raises(RuntimeError, match="hook of worker 0"):
        with anyio.CancelScope() as scope:
            async with trio_pool.Pool(recording_interface(Log(), fail_exit={0}), "x", workers=1):
                scope.cancel()
                await anyio.sleep_forever()


async def test_properties_are_not_run_to_find_operations(backend: str) -> None:
    log = Log()

    class Conn:
        def __enter__(self) -> Conn:
            return self

        def __exit__(self, *exc_info: object) -> None:
            log.add("exit")

        @property
        def cursor(self) -> object:
            raise RuntimeError("no cursor open")

        def query(self) -> int:
            return 1

        @staticmethod
        def version() -> str:
            return "1.0"

    async with trio_pool.Pool(Conn, workers=1) as pool:
        assert await pool.interface.query() == 1
        assert await pool.interface.version() == "1.0"
        with pytest.raises(AttributeError):
            pool.interface.cursor  # noqa: B018
    assert log.items == [("exit",)]


async def test_a_done_callback_raising_a_base_exception_breaks_nothing(
    backend: str, caplog: pytest.LogCaptureFixture
) -> None:
    async with trio_pool.Pool(workers=1) as pool:
        job = await pool.submit(int)
        job.add_done_callback(lambda _: sys.exit("bye"))
        other = await pool.submit(str, 2)
        assert (await other.wait()).unwrap() == "2"
        assert job.done
    assert "SystemExit" in caplog.text


async def test_jobs_see_the_callers_context_variables(backend: str) -> None:
    import contextvars

    request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id")
    async with trio_pool.Pool(workers=2) as pool:
        request_id.set("a")
        job = await pool.submit(request_id.get)
        request_id.set("b")
        assert await pool.run(request_id.get) == "b"
        assert (await job.wait()).unwrap() == "a"
        # A job's own changes stay in the job.
        await pool.run(request_id.set, "changed")
        assert request_id.get() == "b"


async def test_interface_operations_are_known_before_any_worker_loads(backend: str) -> None:
    class Db:
        def query(self) -> str:
            return "row"

    async with trio_pool.Pool(Db, min_workers=0, max_workers=1) as pool:
        operation = pool.interface.query  # no worker has loaded yet
        assert await operation() == "row"
        with pytest.raises(AttributeError):
            pool.interface.missing  # noqa: B018


def test_a_pool_used_from_another_event_loop_refuses_at_once() -> None:
    import asyncio

    errors: list[BaseException] = []

    def from_another_thread(pool: trio_pool.Pool, done: threading.Event) -> None:
        async def use_it() -> None:
            for attempt in (pool.run(int), pool.submit(int), pool.aclose()):
                try:
                    await attempt
                except RuntimeError as exc:  # noqa: PERF203
                    errors.append(exc)
            try:
                pool.submit_nowait(int)
            except RuntimeError as exc:
                errors.append(exc)

        try:
            trio.run(use_it)
            asyncio.run(use_it())
        finally:
            done.set()

    async def main() -> int:
        async with trio_pool.Pool(workers=1) as pool:
            done = threading.Event()
            thread = threading.Thread(target=from_another_thread, args=(pool, done))
            thread.start()
            await trio.to_thread.run_sync(done.wait, TIMEOUT)
            thread.join(TIMEOUT)
            return await pool.run(int, "7")  # the owning loop is unharmed

    assert trio.run(main) == 7
    assert len(errors) == 8
    assert all("belongs to the event loop that entered it" in str(e) for e in errors)


@pytest.mark.parametrize("waits_again", [True, False])
def test_a_native_cancel_beside_a_hook_error_is_not_lost(waits_again: bool) -> None:
    import asyncio

    hook_entered, fail_now = threading.Event(), threading.Event()

    class FailingHook:
        def __exit__(self, *exc_info: object) -> None:
            if trio_pool.current_worker().id == 1:
                hook_entered.set()
                assert fail_now.wait(TIMEOUT)
                raise OSError("the hook failed")

    seen: list[str] = []

    async def stopper(pool: trio_pool.Pool) -> None:
        try:
            await pool.stop_workers(1)
        except OSError:
            seen.append("hook error")
        if not waits_again:
            return
        try:
            await asyncio.sleep(0)
        except asyncio.CancelledError:
            seen.append("cancelled")
            raise

    # On 3.11 and 3.12 the request is made again only once the task waits (see
    # the next test): a task that returns first ends with its result.
    deferred = (3, 11) <= sys.version_info < (3, 13)

    async def main() -> None:
        async with trio_pool.Pool(FailingHook, workers=2) as pool:
            task = asyncio.ensure_future(stopper(pool))
            await asyncio.to_thread(hook_entered.wait, TIMEOUT)
            task.cancel()  # a native cancel while stop_workers waits for the hook
            await asyncio.sleep(0)
            fail_now.set()
            if waits_again or not deferred:
                with pytest.raises(asyncio.CancelledError):
                    await task
            else:
                await task

    asyncio.run(asyncio.wait_for(main(), TIMEOUT))
    assert seen == ["hook error", "cancelled"] if waits_again else ["hook error"]


@pytest.mark.skipif(sys.version_info < (3, 11), reason="asyncio.timeout() is new in Python 3.11")
def test_a_native_cancel_taken_back_beside_a_hook_error_is_not_delivered_later() -> None:
    """asyncio.timeout() expires while stop_workers() waits for a failing hook: the
    hook's error is raised, and the timeout takes its cancel back (``uncancel()``).
    No cancellation may strike later (on 3.11 and 3.12 ``uncancel()`` leaves a
    ``cancel()`` already made pending: the random programs found it)."""
    import asyncio

    hook_entered, fail_now = threading.Event(), threading.Event()

    class FailingHook:
        def __exit__(self, *exc_info: object) -> None:
            if trio_pool.current_worker().id == 1:
                hook_entered.set()
                assert fail_now.wait(TIMEOUT)
                raise OSError("the hook failed")

    seen: list[str] = []
    timeouts: list[Any] = []

    async def stopper(pool: trio_pool.Pool) -> None:
        task = asyncio.current_task()
        assert task is not None
        try:
            async with asyncio.timeout(None) as timeout:  # type: ignore[attr-defined]
                timeouts.append(timeout)
                await pool.stop_workers(1)
        except OSError:
            seen.append("hook error")
        seen.append(f"cancelling={task.cancelling()}")
        try:
            await asyncio.sleep(0)
        except asyncio.CancelledError:
            seen.append("cancelled")

    async def main() -> None:
        async with trio_pool.Pool(FailingHook, workers=2) as pool:
            task = asyncio.ensure_future(stopper(pool))
            await asyncio.to_thread(hook_entered.wait, TIMEOUT)
            timeouts[0].reschedule(asyncio.get_running_loop().time())  # it expires now
            for _ in range(5):  # its cancel reaches stop_workers (a few loop iterations)
                await asyncio.sleep(0)
            fail_now.set()
            await task

    asyncio.run(asyncio.wait_for(main(), TIMEOUT))
    assert seen == ["hook error", "cancelling=0"]


class CtrlCAt:
    """Raises KeyboardInterrupt at the ``n``-th wait on a pool event in the test's own task."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, n: int) -> None:
        from trio_pool import _backend

        self.waits = 0
        self.fired = False
        self._task = anyio.get_current_task().id
        for cls in (_backend._Trio, _backend._Asyncio):
            real_event = cls.event

            def event(backend: Any, real_event: Any = real_event) -> Any:
                return _Interruptible(real_event(backend), self, n)

            monkeypatch.setattr(cls, "event", event)

    def arrive(self, n: int) -> None:
        if anyio.get_current_task().id != self._task:
            return
        self.waits += 1
        if self.waits == n:
            self.fired = True
            raise KeyboardInterrupt


class _Interruptible:
    def __init__(self, event: Any, injector: CtrlCAt, n: int) -> None:
        self._event, self._injector, self._n = event, injector, n

    def set(self) -> None:
        self._event.set()

    def is_set(self) -> bool:
        return bool(self._event.is_set())

    async def wait(self) -> None:
        self._injector.arrive(self._n)
        await self._event.wait()


async def test_ctrl_c_at_each_await_of_entering_and_leaving(
    backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for n in itertools.count(1):
        log = Log()
        pool = trio_pool.Pool(recording_interface(log), "x", workers=2)
        with monkeypatch.context() as patch:
            injector = CtrlCAt(patch, n)
            with anyio.fail_after(TIMEOUT):
                try:
                    async with pool:
                        await pool.run(int)
                except KeyboardInterrupt:
                    assert injector.fired
        loaded = sorted(w for w, *_ in log.of("load"))
        assert sorted(w for w, *_ in log.of("exit")) == loaded  # each hook once
        assert pool.statistics().workers == 0
        if not injector.fired:  # past the last await: every one was tried
            assert n > 2
            break


async def refused_in_another_thread(*attempts: Callable[[], object]) -> list[RuntimeError]:
    """Make each attempt in a thread with no event loop; return the RuntimeErrors raised."""
    errors: list[RuntimeError] = []

    def there() -> None:
        for attempt in attempts:
            try:
                attempt()
            except RuntimeError as exc:  # noqa: PERF203
                errors.append(exc)

    thread = threading.Thread(target=there)
    thread.start()
    await trio.to_thread.run_sync(thread.join, TIMEOUT)
    return errors


def test_undefine_from_another_thread_refuses_at_once() -> None:
    async def main() -> tuple[list[RuntimeError], int]:
        async with trio_pool.Pool(workers=1) as pool:
            pool.define("double", lambda n: 2 * n)
            errors = await refused_in_another_thread(lambda: pool.undefine("double"))
            doubled: int = await pool.interface.double(4)  # still defined
            return errors, doubled

    errors, doubled = trio.run(main)
    assert doubled == 8
    assert len(errors) == 1
    assert "belongs to the event loop that entered it" in str(errors[0])


async def test_an_error_exit_cancels_the_queue_before_a_worker_can_stop_as_if_normally(
    backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from trio_pool._handoff import Handoff

    gate = Gate()
    hook_ran = threading.Event()
    hooks: list[object] = []
    real_stop = Handoff.stop
    calls: list[object] = []

    def stop(self: Handoff, slots: Any, *, cancel: Any = None) -> Any:
        removed = real_stop(self, slots, cancel=cancel)
        if not calls:  # the pool's first step of stopping: the running job ends right now
            calls.append(cancel)
            gate.open()
            assert hook_ran.wait(TIMEOUT)  # the worker has closed before the pool goes on
        return removed

    monkeypatch.setattr(Handoff, "stop", stop)

    class Hooked:
        def __exit__(self, *exc_info: object) -> None:
            hooks.append(exc_info[0])
            hook_ran.set()

    ran: list[str] = []
    with pytest.raises(ZeroDivisionError):
        async with trio_pool.Pool(Hooked, workers=1) as pool:
            running = await pool.submit(gate.enter)
            queued = await pool.submit(ran.append, "the queued job")
            await wait_in_thread(gate.entered)
            1 / 0  # noqa: B018
    assert hooks == [ZeroDivisionError]  # not None: the worker stopped because of the error
    assert ran == []  # an error exit starts no queued job
    assert running.done
    assert queued.outcome is not None
    assert isinstance(queued.outcome.error, trio_pool.JobCancelled)  # type: ignore[union-attr]


async def test_a_cancellation_once_the_workers_stop_normally_leaves_their_hooks_alone(
    backend: str,
) -> None:
    # Every accepted job has finished and the workers are stopping: a cancellation of
    # aclose() now has nothing to cancel, and must not tell a hook something else.
    gate = Gate()
    hooks: list[tuple[int, object]] = []

    class SlowSecondLoader:
        def __init__(self) -> None:
            if trio_pool.current_worker().id == 1:
                gate.enter()

        def __exit__(self, *exc_info: object) -> None:
            hooks.append((trio_pool.current_worker().id, exc_info[0]))

    async with anyio.create_task_group() as tg:
        async with trio_pool.Pool(SlowSecondLoader, workers=1) as pool:
            tg.start_soon(pool.add_workers, 1)
            await wait_in_thread(gate.entered)  # worker 1 is loading
            with anyio.CancelScope() as scope:

                async def cancel_once_worker_0_has_stopped() -> None:
                    await poll_until(lambda: pool.statistics().workers == 1)
                    scope.cancel()
                    gate.open()

                tg.start_soon(cancel_once_worker_0_has_stopped)
                await pool.aclose()
            assert scope.cancelled_caught  # the cancellation is raised, once all have ended
    assert sorted(hooks) == [(0, None), (1, None)]
    assert pool.statistics().workers == 0


def test_resize_to_the_current_size_from_another_thread_refuses_at_once() -> None:
    import asyncio

    async def main() -> list[RuntimeError]:
        async with trio_pool.Pool(workers=1) as pool:
            return await refused_in_another_thread(  # nothing to change, from a second loop
                lambda: asyncio.run(pool.resize(1)),
                lambda: asyncio.run(pool.ensure(at_least=1)),
            )

    errors = trio.run(main)
    assert len(errors) == 2
    assert all("belongs to the event loop that entered it" in str(e) for e in errors)


class _Db:
    def __init__(self, tag: str = "") -> None:
        self.tag = tag

    def query(self, sql: str) -> str:
        return f"{self.tag}:{sql}"

    @staticmethod
    def plain(sql: str) -> str:
        return sql  # pragma: no cover


class _SubDb(_Db):
    def query(self, sql: str) -> str:
        return "sub:" + super().query(sql)


class _Other:
    def query(self, sql: str) -> str:
        return sql  # pragma: no cover


def _query_function(db: _Db, sql: str) -> str:
    return db.query(sql)


async def test_call_method_refuses_a_bound_method_or_another_classs_method(backend: str) -> None:
    async with trio_pool.Pool(_SubDb, "x", workers=1) as pool:
        with pytest.raises(TypeError, match=r"_Db.query is a bound method: pass _Db.query"):
            await pool.call_method(_Db("y").query, "a")  # type: ignore[arg-type]
        with pytest.raises(TypeError, match=r"_Other.query is not a method of _SubDb"):
            await pool.call_method(_Other.query, "a")  # type: ignore[arg-type]
        with pytest.raises(TypeError, match=r"_Other.query is not a method of _SubDb"):
            await pool.broadcast_method(_Other.query, "a")  # type: ignore[arg-type]
        async with pool.lease() as worker:
            with pytest.raises(TypeError, match=r"_Other.query is not a method of _SubDb"):
                await worker.call_method(_Other.query, "a")  # type: ignore[arg-type]
        # A base's method, the class's own and a plain function of the interface are fine.
        assert await pool.call_method(_Db.query, "a") == "x:a"
        assert await pool.call_method(_SubDb.query, "a") == "sub:x:a"
        assert await pool.call_method(_query_function, "a") == "sub:x:a"


async def test_errors_that_point_the_way(backend: str) -> None:
    with pytest.raises(TypeError, match=r"functools.partial\(Interface, \.\.\., timeout=\.\.\.\)"):
        trio_pool.Pool(_Db, "x", timeout=5)  # type: ignore[call-overload]
    async with trio_pool.Pool(_Db, "x", workers=1) as pool:
        with pytest.raises(TypeError, match=r"use `async with pool.map\(fn, items\) as results:`"):
            await pool.map(str, [1])  # type: ignore[misc]
        with pytest.raises(AttributeError, match="'_secret' is not an operation: names starting"):
            pool.interface._secret  # noqa: B018
        # One wording for an unknown operation, by attribute and by name.
        with pytest.raises(AttributeError, match=r"^the interface has no operation 'nope'$"):
            pool.interface.nope  # noqa: B018
        error = (await pool.call("nope")).error  # type: ignore[union-attr]
        assert str(error) == "the interface has no operation 'nope'"
        error = (await pool.call("_secret")).error  # type: ignore[union-attr]
        assert "'_secret' is not an operation: names starting" in str(error)


def test_the_foreign_loop_error_names_what_works() -> None:
    async def main() -> list[RuntimeError]:
        async with trio_pool.Pool(workers=1) as pool:
            return await refused_in_another_thread(lambda: pool.submit_nowait(int))

    errors = trio.run(main)
    (error,) = errors
    assert "trio.from_thread.run(pool.run, fn, trio_token=token)" in str(error)
    assert "anyio.from_thread.run(pool.run, fn)" in str(error)
    assert "trio_pool.from_loop(pool.run, fn)" in str(error)


def _slow_job(gate: Gate) -> object:
    return gate.enter()


@pytest.mark.trio
async def test_an_exit_that_waits_long_for_running_jobs_says_which(
    mock_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="trio_pool")
    gate = Gate()

    def warned() -> list[str]:
        return [r.getMessage() for r in caplog.records if "exit has waited" in r.getMessage()]

    async with trio.open_nursery() as nursery:
        async with trio_pool.Pool(workers=1, name="p") as pool:
            await pool.submit(_slow_job, gate)
            await wait_in_thread(gate.entered)
            nursery.start_soon(pool.aclose)
            await poll_until(lambda: "closing" in repr(pool))
            mock_clock.jump(9)
            await trio.testing.wait_all_tasks_blocked()
            assert warned() == []
            mock_clock.jump(1)
            await poll_until(lambda: bool(warned()))
            gate.open()
    (message,) = warned()
    assert "waited 10 s for 1 running jobs: _slow_job on p-worker-0" in message
