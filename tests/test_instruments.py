"""Instruments: what the pool tells them, in which thread and order; one that raises."""

from __future__ import annotations

import contextvars
import logging
import os
import threading
from typing import Any

import anyio
import outcome
import pytest

import trio_pool

from helpers import TIMEOUT, Gate, poll_until, wait_in_thread

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")


class Recorder(trio_pool.Instrument):
    def __init__(self) -> None:
        self.events: list[tuple[Any, ...]] = []
        self.threads: set[int] = set()

    def _note(self, *event: Any) -> None:
        self.events.append(event)
        self.threads.add(threading.get_ident())

    def job_submitted(self, job: trio_pool.Job[Any]) -> None:
        self._note("submitted", job, request_id.get())

    def job_started(self, job: trio_pool.Job[Any]) -> None:
        self._note("started", job)

    def job_finished(self, job: trio_pool.Job[Any]) -> None:
        self._note("finished", job)

    def worker_started(self, worker: trio_pool.WorkerStatistics) -> None:
        self._note("worker_started", worker.id)

    def worker_stopped(self, worker: trio_pool.WorkerStatistics, reason: str) -> None:
        self._note("worker_stopped", worker.id, reason)

    def of(self, kind: str) -> list[tuple[Any, ...]]:
        return [e[1:] for e in self.events if e[0] == kind]


async def test_instruments_hear_of_jobs_and_workers_in_order_in_the_loops_thread(
    backend: str,
) -> None:
    recorder = Recorder()
    gate = Gate()
    loop_thread = threading.get_ident()
    async with trio_pool.Pool(workers=2, instruments=[recorder], max_jobs_per_worker=3) as pool:
        request_id.set("r-1")
        assert await pool.run(str, 1) == "1"
        running = await pool.submit(gate.enter)
        await wait_in_thread(gate.entered)
        busy = await pool.submit(gate.enter)  # the other worker
        await gate.wait_arrivals(1)
        queued = await pool.submit(int)
        assert queued.cancel()
        gate.open()
        await running.wait()
        await busy.wait()
        await pool.resize(1)
        for _ in range(4):
            await pool.run(int)
    assert recorder.threads == {loop_thread}
    jobs = [job for job, _ in recorder.of("submitted")]
    assert len(jobs) == 8
    assert {context for _, context in recorder.of("submitted")} == {"r-1"}  # the caller's
    started = [job for (job,) in recorder.of("started")]
    finished = [job for (job,) in recorder.of("finished")]
    assert set(finished) == set(jobs)
    assert set(started) == set(jobs) - {queued}  # the cancelled one never started
    for job in started:  # each started before it finished, with its times in order
        assert recorder.events.index(("started", job)) < recorder.events.index(("finished", job))
        assert job.submitted_at <= job.started_at <= job.finished_at  # type: ignore[operator]
    assert queued.started_at is None
    assert queued.finished_at is not None
    reasons = {reason for _, reason in recorder.of("worker_stopped")}
    assert reasons == {"stopped", "renewed"}
    assert sorted(w for (w,) in recorder.of("worker_started")) == sorted(
        w for w, _ in recorder.of("worker_stopped")
    )


class Broken(trio_pool.Instrument):
    def __init__(self) -> None:
        self.calls = 0

    def job_finished(self, job: trio_pool.Job[Any]) -> None:
        self.calls += 1
        raise ValueError("the instrument is broken")


async def test_an_instrument_that_raises_is_logged_and_removed_and_the_job_goes_on(
    backend: str, caplog: pytest.LogCaptureFixture
) -> None:
    broken, recorder = Broken(), Recorder()
    async with trio_pool.Pool(workers=1, instruments=[broken, recorder]) as pool:
        assert await pool.run(str, 1) == "1"
        assert await pool.run(str, 2) == "2"
    assert broken.calls == 1
    assert len(recorder.of("finished")) == 2  # the others still hear
    (record,) = [r for r in caplog.records if "instrument" in r.getMessage()]
    assert record.levelno == logging.ERROR
    assert record.exc_info is not None
    assert "job_finished" in record.getMessage()


async def test_adding_and_removing_instruments(backend: str) -> None:
    recorder = Recorder()
    pool = trio_pool.Pool(workers=1)
    pool.add_instrument(recorder)  # before entering
    pool.add_instrument(recorder)  # once only
    async with pool:
        await pool.run(int)
        pool.remove_instrument(recorder)
        await pool.run(int)
        with pytest.raises(KeyError):
            pool.remove_instrument(recorder)
        with pytest.raises(TypeError, match=r"trio_pool\.Instrument"):
            pool.add_instrument(object())  # type: ignore[arg-type]
    assert len(recorder.of("finished")) == 1
    with pytest.raises(TypeError, match="instruments must be an iterable"):
        trio_pool.Pool(instruments=Recorder())  # type: ignore[arg-type]


def _die() -> None:
    os._exit(3)


async def test_a_worker_process_that_dies_is_reported_as_died(backend: str) -> None:
    recorder = Recorder()
    host = trio_pool.ProcessHost()
    async with trio_pool.Pool(workers=1, host=host, instruments=[recorder]) as pool:
        with pytest.raises(trio_pool.BrokenWorkerError):
            await pool.run(_die)
        await poll_until(lambda: pool.statistics().workers_died == 1)
        await pool.run(int)  # the replacement
    assert [reason for _, reason in recorder.of("worker_stopped")] == ["died", "stopped"]


async def test_a_worker_is_told_started_before_it_stops_while_its_batch_still_loads(
    backend: str,
) -> None:
    # add_workers(2) waits for both loads; the first serves (and is renewed)
    # meanwhile. worker_started once came only when the whole batch had loaded.
    release = threading.Event()

    class SlowSecond:
        def __init__(self) -> None:
            if trio_pool.current_worker().id == 2:
                release.wait(TIMEOUT)

    recorder = Recorder()

    def first_renewed() -> bool:
        return (1, "renewed") in recorder.of("worker_stopped")

    pool = trio_pool.Pool(SlowSecond, workers=1, max_jobs_per_worker=1, instruments=[recorder])
    async with pool, anyio.create_task_group() as tg:
        tg.start_soon(pool.add_workers, 2)
        await poll_until(
            lambda: any(
                w.id == 1 and w.state != "starting" for w in pool.statistics().worker_states
            )
        )
        while not first_renewed():  # worker 1 serves a job, then stops to be renewed
            await pool.run(int)
        release.set()
    for worker_id, reason in recorder.of("worker_stopped"):
        stopped = recorder.events.index(("worker_stopped", worker_id, reason))
        assert ("worker_started", worker_id) in recorder.events[:stopped], recorder.events


class CancelsOnSubmit(Recorder):
    def job_submitted(self, job: trio_pool.Job[Any]) -> None:
        super().job_submitted(job)
        job.cancel()  # it is queued: it completes here, before submit returns


async def test_an_instrument_and_the_caller_see_one_job_object_even_if_it_ends_at_once(
    backend: str,
) -> None:
    instrument = CancelsOnSubmit()
    async with trio_pool.Pool(workers=1, instruments=[instrument]) as pool:
        job = pool.submit_nowait(int, "1")
        assert job.done
        [(submitted, _)] = instrument.of("submitted")
        [(finished,)] = instrument.of("finished")
        assert submitted is job
        assert finished is job


def test_a_start_posted_after_the_jobs_end_tells_nobody() -> None:
    # A worker posts a job's start; its end can reach the loop first. If no
    # instrument cared at the end, one added meanwhile hears nothing of it.
    from loopless import Loop

    from trio_pool._instruments import Instruments

    instruments = Instruments()
    record = Loop().job()
    record.started_at = record.submitted_at
    record.finish(outcome.Value(0))
    late = Recorder()
    instruments.add(late)
    instruments.started(record)  # the worker's post, run only now
    assert late.events == []
