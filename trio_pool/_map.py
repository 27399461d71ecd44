"""``pool.map``: stream results of one function over many items, lazily and boundedly.

Built on the pool's ``submit`` and ``Job`` (and the loop's events): items
are grouped in chunks, each chunk is one job, and at most ``window`` chunks
are in flight (submitted and not yet consumed), so neither a huge input nor
a slow consumer makes memory grow.
"""

from __future__ import annotations

import collections
from collections.abc import (
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Sized,
)
from types import TracebackType
from typing import Any, Generic, TypeVar, final

import anyio
import outcome

from ._backend import Event, wait_through_cancellation
from ._exceptions import JobCancelled
from ._in_worker import check_cancelled, operation
from ._job import Job

Submit = Callable[..., Awaitable[Job[Any]]]

T = TypeVar("T")


def _run_chunk(fn: Callable[[Any], Any] | str, items: list[Any]) -> list[outcome.Outcome[Any]]:
    """One job: ``fn`` over a chunk of items, each result captured (in a worker)."""
    if isinstance(fn, str):
        try:
            fn = operation(fn)
        except AttributeError as exc:
            return [outcome.Error(exc) for _ in items]
    results: list[outcome.Outcome[Any]] = []
    for item in items:
        try:
            check_cancelled()
        except JobCancelled as exc:  # keep what is done; the rest is cancelled
            results.extend(outcome.Error(exc) for _ in range(len(items) - len(results)))
            break
        results.append(outcome.capture(fn, item))
    return results


@final
class MapResults(Generic[T]):
    """The results of :meth:`Pool.map`: ``async with`` it, then ``async for`` over it.

    Attributes:
        done: Items whose results have been yielded so far.
        total: The number of items, if the iterable has a length; else None.

    There is no public constructor.
    """

    def __init__(
        self,
        submit: Submit,
        new_event: Callable[[], Event],
        fn: Callable[[Any], Any] | str,
        items: Iterable[Any] | AsyncIterable[Any],
        *,
        ordered: bool,
        chunksize: int,
        outcomes: bool,
        window: int,
    ) -> None:
        self._submit = submit
        self._new_event = new_event
        self._fn = fn
        self._items = items
        self._ordered = ordered
        self._chunksize = chunksize
        self._outcomes = outcomes
        self._window = window
        self.done: int = 0
        self.total: int | None = len(items) if isinstance(items, Sized) else None
        self._in_flight: collections.deque[_Chunk] = collections.deque()
        self._finished: collections.deque[_Chunk] = collections.deque()
        self._current: collections.deque[outcome.Outcome[Any]] = collections.deque()
        self._fed_all = False
        self._feed_error: BaseException | None = None
        self._entered = False
        self._closed = False

    def __repr__(self) -> str:
        total = "?" if self.total is None else self.total
        return f"<trio_pool.MapResults {self.done}/{total}>"

    async def __aenter__(self) -> MapResults[T]:
        if self._entered:
            raise RuntimeError("a map's results can be entered only once")
        self._entered = True
        self._consumers_wake = self._new_event()
        self._producer_wake = self._new_event()
        self._task_group = anyio.create_task_group()
        await self._task_group.__aenter__()
        self._task_group.start_soon(self._feed)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Stop feeding, cancel queued chunks, wait for running ones."""
        self._closed = True
        self._task_group.cancel_scope.cancel()
        try:
            await self._task_group.__aexit__(None, None, None)  # the feeder has stopped
        finally:
            interrupted: BaseException | None = None
            for chunk in self._in_flight:
                chunk.job.cancel()
            for chunk in self._in_flight:
                interrupted = await wait_through_cancellation(chunk.job._get_event()) or interrupted
            self._in_flight.clear()
            self._finished.clear()
            self._current.clear()
            self._wake_consumers()  # any other task iterating finds the block closed
        if interrupted is not None and exc is None:
            raise interrupted  # a native asyncio cancellation that came while we waited
        # The body's own exception, if any, propagates as itself.

    # --- feeding ----------------------------------------------------------

    async def _feed(self) -> None:
        chunk: list[Any] = []
        try:
            if isinstance(self._items, AsyncIterable):
                items = aiter(self._items)
                try:
                    async for item in items:
                        chunk.append(item)
                        if len(chunk) >= self._chunksize:
                            await self._send(chunk)
                            chunk = []
                finally:  # left early: close what we opened, as a finished loop would be
                    aclose = getattr(items, "aclose", None)
                    if aclose is not None:
                        with anyio.CancelScope(shield=True):
                            await aclose()
            else:
                sync_items = iter(self._items)
                try:
                    for item in sync_items:
                        chunk.append(item)
                        if len(chunk) >= self._chunksize:
                            await self._send(chunk)
                            chunk = []
                finally:
                    close = getattr(sync_items, "close", None)
                    if close is not None:
                        close()
            if chunk:
                await self._send(chunk)
        except anyio.get_cancelled_exc_class():
            raise
        except BaseException as exc:  # the iterable failed, or the pool closed
            self._feed_error = exc
        self._fed_all = True
        self._wake_consumers()

    async def _send(self, chunk: list[Any]) -> None:
        while len(self._in_flight) >= self._window:
            self._producer_wake = self._new_event()
            await self._producer_wake.wait()
        entry = _Chunk(await self._submit(_run_chunk, self._fn, chunk), len(chunk))
        self._in_flight.append(entry)  # even if the block is exiting: it cancels it
        entry.job.add_done_callback(lambda _: self._chunk_done(entry))

    def _chunk_done(self, chunk: _Chunk) -> None:
        if not self._ordered:
            self._finished.append(chunk)
        self._wake_consumers()

    def _wake_consumers(self) -> None:
        """Wake every task waiting in __anext__ (several may share the results)."""
        event, self._consumers_wake = self._consumers_wake, self._new_event()
        event.set()

    # --- consuming --------------------------------------------------------

    def __aiter__(self) -> AsyncIterator[T]:
        return self

    async def __anext__(self) -> T:
        if not self._entered:
            raise RuntimeError("use `async with pool.map(...) as results:` first")
        while not self._current:
            if self._closed:
                raise RuntimeError("the `async with pool.map(...)` block has exited")
            chunk = self._next_finished()
            if chunk is not None:
                self._in_flight.remove(chunk)
                self._producer_wake.set()
                self._current.extend(chunk.outcomes())
                continue
            if self._fed_all and not self._in_flight:
                if self._feed_error is not None:
                    error, self._feed_error = self._feed_error, None
                    raise error
                raise StopAsyncIteration
            await self._consumers_wake.wait()
        result = self._current.popleft()
        self.done += 1
        if self._outcomes:
            return result  # type: ignore[return-value]  # pyright: ignore[reportReturnType]
        value: T = result.unwrap()
        return value

    def _next_finished(self) -> _Chunk | None:
        if self._ordered:
            if self._in_flight and self._in_flight[0].job.done:
                return self._in_flight[0]
            return None
        return self._finished.popleft() if self._finished else None


@final
class _Chunk:
    """A job carrying ``size`` items."""

    __slots__ = ("job", "size")

    def __init__(self, job: Job[list[outcome.Outcome[Any]]], size: int) -> None:
        self.job = job
        self.size = size

    def outcomes(self) -> list[outcome.Outcome[Any]]:
        result = self.job.outcome
        if isinstance(result, outcome.Value):
            values: list[outcome.Outcome[Any]] = result.value
            return values
        # The chunk's job failed as a whole (it was cancelled): so did each item.
        assert isinstance(result, outcome.Error)
        return [outcome.Error(result.error) for _ in range(self.size)]
