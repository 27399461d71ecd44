"""One worker's thread body against a host, without an event loop."""

from __future__ import annotations

import threading
from typing import Any

import outcome
from loopless import FakeEvent, Loop

import trio_pool
from trio_pool._handoff import Phase
from trio_pool._hosts._base import ExcInfo, HostDied
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
