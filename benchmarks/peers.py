"""The ways off the event loop that the benchmark compares, behind one face.

Each peer is an async context manager, entered inside its own event loop,
that yields ``call``: an async function running ``fn(*args)`` in a thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import anyio
import outcome
import sniffio
import trio

import trio_pool

Call = Callable[..., Awaitable[Any]]


@dataclass(frozen=True)
class Peer:
    name: str
    loop: str  # "trio" or "asyncio"
    open: Callable[[int], contextlib.AbstractAsyncContextManager[Call]]
    is_pool: bool = False


@contextlib.asynccontextmanager
async def _pool(workers: int) -> AsyncIterator[Call]:
    async with trio_pool.Pool(workers=workers) as pool:
        yield pool.run


@contextlib.asynccontextmanager
async def _trio_to_thread(workers: int) -> AsyncIterator[Call]:
    limiter = trio.CapacityLimiter(workers)

    async def call(fn: Callable[..., Any], *args: Any) -> Any:
        return await trio.to_thread.run_sync(fn, *args, limiter=limiter)

    yield call


@contextlib.asynccontextmanager
async def _anyio_to_thread(workers: int) -> AsyncIterator[Call]:
    limiter = anyio.CapacityLimiter(workers)

    async def call(fn: Callable[..., Any], *args: Any) -> Any:
        return await anyio.to_thread.run_sync(fn, *args, limiter=limiter)

    yield call


@contextlib.asynccontextmanager
async def _run_in_executor(workers: int) -> AsyncIterator[Call]:
    loop = asyncio.get_running_loop()
    with ThreadPoolExecutor(workers) as executor:

        async def call(fn: Callable[..., Any], *args: Any) -> Any:
            return await loop.run_in_executor(executor, fn, *args)

        yield call


@contextlib.asynccontextmanager
async def _asyncio_to_thread(workers: int) -> AsyncIterator[Call]:
    loop = asyncio.get_running_loop()
    executor = ThreadPoolExecutor(workers)
    loop.set_default_executor(executor)
    yield asyncio.to_thread


@contextlib.asynccontextmanager
async def _threads(
    workers: int, jobs: queue.SimpleQueue[Any], run: Callable[[Any], None]
) -> AsyncIterator[None]:
    """``workers`` dedicated threads, each running ``run(job)`` for every job it takes."""

    def worker() -> None:
        while (job := jobs.get()) is not None:
            run(job)

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(workers)]
    for thread in threads:
        thread.start()
    try:
        yield
    finally:
        for _ in threads:
            jobs.put(None)
        for thread in threads:
            thread.join()


class _Coalescer:
    """Results from threads, handed to the loop in batches: one post per batch, not per result."""

    def __init__(
        self, post: Callable[[Callable[[], object]], object], deliver: Callable[[Any, Any], None]
    ) -> None:
        self._post = post
        self._deliver = deliver
        self._lock = threading.Lock()
        self._pending: list[tuple[Any, Any]] = []

    def add(self, waiter: Any, result: Any) -> None:  # a worker thread
        with self._lock:
            self._pending.append((waiter, result))
            first = len(self._pending) == 1
        if first:  # the list went from empty to not: one wake-up for all that follow
            self._post(self._flush)

    def _flush(self) -> None:  # the loop
        with self._lock:
            batch, self._pending = self._pending, []
        for waiter, result in batch:
            self._deliver(waiter, result)


@contextlib.asynccontextmanager
async def _floor_trio(workers: int) -> AsyncIterator[Call]:
    """The fastest honest handoff we could write for trio (no cancellation, no statistics)."""
    token = trio.lowlevel.current_trio_token()
    results = _Coalescer(token.run_sync_soon, trio.lowlevel.reschedule)
    jobs: queue.SimpleQueue[Any] = queue.SimpleQueue()

    def run(job: Any) -> None:
        fn, args, task = job
        results.add(task, outcome.capture(fn, *args))

    async def call(fn: Callable[..., Any], *args: Any) -> Any:
        jobs.put((fn, args, trio.lowlevel.current_task()))
        return await trio.lowlevel.wait_task_rescheduled(lambda _: trio.lowlevel.Abort.FAILED)

    async with _threads(workers, jobs, run):
        yield call


@contextlib.asynccontextmanager
async def _floor_asyncio(workers: int) -> AsyncIterator[Call]:
    """The same for asyncio: a Future per call, results coalesced into call_soon_threadsafe."""
    loop = asyncio.get_running_loop()
    results = _Coalescer(
        loop.call_soon_threadsafe, lambda future, result: future.set_result(result)
    )
    jobs: queue.SimpleQueue[Any] = queue.SimpleQueue()

    def run(job: Any) -> None:
        fn, args, future = job
        results.add(future, outcome.capture(fn, *args))

    async def call(fn: Callable[..., Any], *args: Any) -> Any:
        future = loop.create_future()
        jobs.put((fn, args, future))
        return (await future).unwrap()

    async with _threads(workers, jobs, run):
        yield call


@contextlib.asynccontextmanager
async def _post_per_result(workers: int) -> AsyncIterator[Call]:
    """Dedicated threads, a SimpleQueue, each result posted back on its own to set an event."""
    if sniffio.current_async_library() == "trio":
        token = trio.lowlevel.current_trio_token()
        post: Callable[[Callable[[], object]], object] = token.run_sync_soon
        make_event: Callable[[], Any] = trio.Event
    else:
        post = asyncio.get_running_loop().call_soon_threadsafe
        make_event = asyncio.Event
    jobs: queue.SimpleQueue[Any] = queue.SimpleQueue()

    def run(job: Any) -> None:
        fn, args, slot, event = job
        slot.append(outcome.capture(fn, *args))
        post(event.set)

    async def call(fn: Callable[..., Any], *args: Any) -> Any:
        slot: list[outcome.Outcome[Any]] = []
        event = make_event()
        jobs.put((fn, args, slot, event))
        await event.wait()
        return slot[0].unwrap()

    async with _threads(workers, jobs, run):
        yield call


PEERS = [
    Peer("trio_pool (trio)", "trio", _pool, is_pool=True),
    Peer("trio_pool (asyncio)", "asyncio", _pool, is_pool=True),
    Peer("trio.to_thread", "trio", _trio_to_thread),
    Peer("anyio.to_thread (trio)", "trio", _anyio_to_thread),
    Peer("anyio.to_thread (asyncio)", "asyncio", _anyio_to_thread),
    Peer("run_in_executor", "asyncio", _run_in_executor),
    Peer("asyncio.to_thread", "asyncio", _asyncio_to_thread),
    Peer("floor (trio)", "trio", _floor_trio),
    Peer("floor (asyncio)", "asyncio", _floor_asyncio),
    Peer("post per result (trio)", "trio", _post_per_result),
    Peer("post per result (asyncio)", "asyncio", _post_per_result),
]


def run_on(loop: str, async_fn: Callable[[], Awaitable[Any]]) -> Any:
    """Run ``async_fn()`` in a fresh event loop of the given kind."""
    if loop == "trio":
        return trio.run(async_fn)
    return asyncio.run(async_fn())  # type: ignore[arg-type]


async def gather(n: int, task: Callable[[int], Awaitable[None]]) -> None:
    """Run ``task(i)`` for i in range(n) concurrently, on either loop."""
    async with anyio.create_task_group() as tg:
        for i in range(n):
            tg.start_soon(task, i)
