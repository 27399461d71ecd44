"""One worker's body against a host: a thread without an event loop, or a task on one."""

from __future__ import annotations

import threading
from typing import Any

import anyio
import outcome
import pytest
from loopless import FakeEvent, Loop

import trio_pool
from trio_pool._backend import LoopBell
from trio_pool._handoff import Phase
from trio_pool._hosts._base import NO_EXC, ExcInfo, HostDied, LoopHost, LoopJobView, Where
from trio_pool._in_worker import JobView, WorkerInfo
from trio_pool._worker import Worker

from helpers import TIMEOUT


class DyingHost:
    """A host whose far side dies during its first call."""

    def __init__(self) -> None:
        self.calls = 0
        self.closed: list[ExcInfo] = []

    @property
    def operations(self) -> frozenset[str]:
        return frozenset()

    @property
    def pid(self) -> int | None:
        return None

    def load(self, worker: WorkerInfo) -> None:
        pass

    def execute(
        self,
        fn: Any,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        with_interface: bool,
        job: JobView,
    ) -> outcome.Outcome[Any]:
        self.calls += 1
        if self.calls == 1:
            raise HostDied(trio_pool.BrokenWorkerError("the child process was killed"))
        return outcome.Value(self.calls)

    def interrupt(self) -> None:
        pass

    def renewal_due(self) -> str | None:
        return None

    def close(self, exc_info: ExcInfo) -> BaseException | None:
        self.closed.append(exc_info)
        return None


def test_a_worker_whose_host_dies_fails_its_job_and_leaves_without_closing() -> None:
    loop = Loop()
    host = DyingHost()
    exited: list[Worker] = []
    worker = Worker(
        WorkerInfo(3, "pool-worker-3"),
        host,
        loop.handoff,
        post=loop.posted.append,
        loaded=FakeEvent(),
        exited=FakeEvent(),
        on_exit=exited.append,
        on_renew=exited.append,
        route=lambda job, call: None,
        os_name="pool-3",
    )
    doomed, left, shared = loop.job(), loop.job(), loop.job()
    loop.handoff.put(doomed, worker.slot)  # its own jobs come first
    loop.handoff.put(left, worker.slot)
    loop.handoff.put(shared)
    thread = threading.Thread(target=worker.main)
    thread.start()
    thread.join(TIMEOUT)
    assert not thread.is_alive()
    while loop.run_posted():
        pass
    assert worker.loaded.is_set()
    assert exited == [worker]
    assert [job for job, _ in loop.delivered] == [doomed]
    died = loop.results()[0]
    assert isinstance(died, outcome.Error)
    assert isinstance(died.error, trio_pool.BrokenWorkerError)
    assert worker.died
    assert host.calls == 1
    assert host.closed == []  # nothing is left to close
    assert worker.slot.phase is Phase.STOPPED
    assert loop.handoff.take_direct(worker.slot) == [left]  # the worker set finishes it
    assert loop.handoff.queued == 1  # the shared job waits for another worker


class GatedHost(LoopHost):
    """A loop-driven host with two calls in flight; each call waits for its gate.

    A call whose gate opens after ``die`` is set raises HostDied, as a
    Ray actor's calls do once it is gone, and so does a call sent then.
    """

    def __init__(self) -> None:
        self.gates: list[anyio.Event] = []
        self.die = False
        self.closed: list[ExcInfo] = []

    @property
    def operations(self) -> frozenset[str]:
        return frozenset()

    @property
    def calls_in_flight(self) -> int:
        return 2

    def where(self) -> Where:
        return Where("actor")

    async def load(self, worker: WorkerInfo) -> None:
        pass

    async def execute(
        self,
        fn: Any,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        with_interface: bool,
        job: LoopJobView,
    ) -> outcome.Outcome[Any]:
        if not self.die:  # (a call sent to a dead far side fails at once)
            gate = anyio.Event()
            self.gates.append(gate)
            await gate.wait()
        if self.die:
            raise HostDied(trio_pool.BrokenWorkerError("the actor is gone"))
        return outcome.Value(args[0])

    def interrupt(self) -> None:
        pass

    def renewal_due(self) -> str | None:
        return None

    def kill(self) -> bool:
        return True

    async def close(self, exc_info: ExcInfo) -> BaseException | None:
        self.closed.append(exc_info)
        return None


def on_the_loop(loop: Loop, host: GatedHost) -> Worker:
    return Worker(
        WorkerInfo(0, "pool-worker-0"),
        host,
        loop.handoff,
        post=loop.posted.append,
        loaded=anyio.Event(),
        exited=anyio.Event(),
        on_exit=lambda worker: None,
        on_renew=lambda worker: None,
        route=lambda job, call: None,
        os_name="pool-0",
        new_event=anyio.Event,
    )


@pytest.mark.parametrize("backend", ["trio", "asyncio"])
def test_a_worker_with_calls_in_flight_runs_them_at_once_and_closes_once(backend: str) -> None:
    async def main() -> None:
        loop, host = Loop(), GatedHost()
        worker = on_the_loop(loop, host)
        first, second = loop.job(int, 1), loop.job(int, 2)
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(worker.run_on_loop)
            loop.handoff.put(first)
            loop.handoff.put(second)
            await anyio.wait_all_tasks_blocked()
            assert len(host.gates) == 2  # both calls out at once
            assert worker.slot.running == [first, second]
            host.gates[1].set()  # the second ends first: delivered at once
            await anyio.wait_all_tasks_blocked()
            assert loop.delivered == [(second, outcome.Value(2))]
            loop.handoff.stop([worker.slot])
            await anyio.wait_all_tasks_blocked()
            assert host.closed == []  # its hook waits for the call still out
            host.gates[0].set()
        assert loop.delivered[1:] == [(first, outcome.Value(1))]
        assert host.closed == [NO_EXC]
        assert worker.slot.phase is Phase.STOPPED

    anyio.run(main, backend=backend)


@pytest.mark.parametrize("backend", ["trio", "asyncio"])
def test_a_worker_called_for_a_job_as_its_host_dies_stops_whole(backend: str) -> None:
    async def main() -> None:
        loop, host = Loop(), GatedHost()
        worker = on_the_loop(loop, host)
        out, called = loop.job(int, 1), loop.job(int, 2)
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(worker.run_on_loop)
            loop.handoff.put(out)
            await anyio.wait_all_tasks_blocked()  # one call out, one lane waits for a job
            host.die = True
            host.gates[0].set()  # the call out fails...
            loop.handoff.put(called)  # ...as the waiting lane is called for a job
        loop.run_posted()
        assert worker.died
        assert worker.slot.phase is Phase.STOPPED
        assert worker.slot.running == []
        results = dict(loop.delivered)
        assert isinstance(results[out], outcome.Error)
        assert isinstance(results[out].error, trio_pool.BrokenWorkerError)
        if called in results:  # taken as the host died (the order the loop ran them in)
            assert isinstance(results[called], outcome.Error)
        else:  # or left for another worker, and no wake-up is thought on its way to one
            assert loop.handoff.queued == 1
            other = loop.handoff.new_slot(1, LoopBell(anyio.Event))
            loop.handoff.loaded(other, ok=True)
            assert await loop.handoff.take_on_loop(other, []) is called
        assert host.closed == []

    anyio.run(main, backend=backend)
