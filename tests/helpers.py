"""Gates and handshakes for tests: threads are synchronised, never slept on."""

from __future__ import annotations

import threading

import anyio

import trio_pool

TIMEOUT = 10  # a bug fails fast; nothing here ever waits this long when it works


async def wait_in_thread(event: threading.Event) -> None:
    """Wait, without blocking the loop, for a threading.Event set by a job."""
    assert await anyio.to_thread.run_sync(event.wait, TIMEOUT), "the handshake never came"


class Gate:
    """A job blocks in ``enter()`` until the test calls ``open()``.

    ``entered`` is set once a job is inside, so the test knows it runs.
    With ``cooperative``, the job also stops on ``check_cancelled()``.
    """

    def __init__(self, *, cooperative: bool = False) -> None:
        self.entered = threading.Event()
        self.arrivals = threading.Semaphore(0)
        self._open = threading.Event()
        self._cooperative = cooperative

    def open(self) -> None:
        self._open.set()

    async def wait_arrivals(self, count: int) -> None:
        """Wait until ``count`` more jobs have entered."""
        for _ in range(count):
            assert await anyio.to_thread.run_sync(self.arrivals.acquire, True, TIMEOUT)

    def enter(self, value: object = None) -> object:
        self.entered.set()
        self.arrivals.release()
        while not self._open.wait(0.005 if self._cooperative else TIMEOUT):
            if self._cooperative:
                trio_pool.check_cancelled()
            else:
                raise AssertionError("the gate was never opened")
        return value
