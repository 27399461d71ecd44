"""Stand-ins for the event loop, for tests of the parts that need none."""

from __future__ import annotations

import contextvars
from collections.abc import Callable, Generator
from typing import Any

import outcome

from trio_pool._handoff import Delivery, Handoff
from trio_pool._job import JobRecord


class FakeEvent:
    """An event awaited by driving the coroutine by hand (``coro.send(None)``)."""

    def __init__(self) -> None:
        self._set = False

    def set(self) -> None:
        self._set = True

    def is_set(self) -> bool:
        return self._set

    def wait(self) -> _Wait:
        return _Wait(self)


class _Wait:
    def __init__(self, event: FakeEvent) -> None:
        self._event = event

    def __await__(self) -> Generator[None, None, None]:
        while not self._event.is_set():
            yield


class Loop:
    """What a handoff posts, run when the test says so; what it delivers, kept."""

    def __init__(self, handoff: type[Handoff] = Handoff) -> None:
        self.posted: list[Callable[[], object]] = []
        self.delivered: Delivery = []
        self.on_deliver: Callable[[], None] = lambda: None
        self.handoff = handoff(self.posted.append, self._deliver)

    def _deliver(self, batch: Delivery) -> None:
        self.delivered.extend(batch)
        self.on_deliver()

    def run_posted(self) -> int:
        """Run what was posted so far; return how many callbacks that was.

        Safe while worker threads post more (each callback is taken out on its own).
        """
        count = len(self.posted)
        for _ in range(count):
            self.posted.pop(0)()
        return count

    def job(self, fn: Callable[..., Any] = int, *args: Any) -> JobRecord:
        return JobRecord(
            fn,
            args,
            {},
            False,
            contextvars.copy_context(),
            self,
        )

    # The jobs' owner.
    event = FakeEvent

    def cancel(self, job: JobRecord) -> bool:
        return self.handoff.cancel(job)

    def check_loop(self) -> None:
        pass  # the test's thread is the loop

    def results(self) -> list[outcome.Outcome[Any]]:
        return [result for _, result in self.delivered]


def pending(coro: Any) -> bool:
    """Drive ``coro`` one step: True if it waits, False if it has returned."""
    try:
        coro.send(None)
    except StopIteration:
        return False
    return True
