"""``pool.map``: stream results of one function over many items, lazily and boundedly.

Built on the pool's ``submit`` and ``Job`` (and the loop's events): items
are grouped in chunks, each chunk is one job, and at most ``window`` chunks
and :func:`window_items` items are in flight (submitted and not yet
consumed), so neither a huge input nor a slow consumer makes memory grow,
whatever the chunk size.
"""

from __future__ import annotations

import collections
import functools
import itertools
import time
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Generator,
    Iterable,
    Iterator,
    Sized,
)
from types import TracebackType
from typing import TYPE_CHECKING, Any, Generic, NamedTuple, NoReturn, TypeVar, final

import anyio
import outcome

from ._backend import Event, wait_through_cancellation
from ._checks import check_count
from ._exceptions import JobCancelled
from ._in_worker import current_job, operation
from ._job import JobRecord

Submit = Callable[..., Awaitable[JobRecord]]

T = TypeVar("T")


#: Adaptive chunks aim at about this much work each (seconds), and hold at most MAX_CHUNK items.
TARGET_SECONDS = 0.001
MAX_CHUNK = 4096
#: With adaptive chunks, items in flight per place in the queue; an adaptive chunk
#: holds at most an eighth of the window, so that several run at once.
ADAPTIVE_ITEMS = 64
ADAPTIVE_SHARE = 8
CHECK_EVERY = 0.0001  # seconds of work between two looks at the job's cancellation


class ChunkResult(NamedTuple):
    """What one chunk's job returns: a value per item, the errors by index, the time taken."""

    values: list[Any]  # None where the item failed
    errors: dict[int, BaseException]
    seconds: float


def _run_chunk(fn: Callable[..., Any] | str, items: list[Any], spread: bool) -> ChunkResult:
    """One job: ``fn`` over a chunk of items, each error kept by its index (in a worker).

    ``spread``: each item is a tuple of arguments (``map`` over several iterables).

    Before an item, the job's cancellation is looked at if CHECK_EVERY
    seconds have passed since the last look (always before the first item,
    and after a slow one): so a cancelled chunk starts no item after about
    that much work, however cheap its items (a look costs more than a tiny
    item; on a process host it is a system call).
    """
    perf_counter = time.perf_counter
    started = perf_counter()
    values: list[Any] = []
    errors: dict[int, BaseException] = {}
    try:
        if isinstance(fn, str):
            fn = operation(fn)
    except AttributeError as exc:
        return ChunkResult([None] * len(items), dict.fromkeys(range(len(items)), exc), 0.0)
    if spread:
        fn = functools.partial(_spread, fn)
    cancel_requested = current_job("map").cancel_requested
    append, look_at = values.append, started
    for item in items:
        if perf_counter() >= look_at:
            if cancel_requested():  # keep what is done; the rest is cancelled
                done = len(values)
                cancelled = JobCancelled("the caller of this job is gone")
                errors.update(dict.fromkeys(range(done, len(items)), cancelled))
                values.extend([None] * (len(items) - done))
                break
            look_at = perf_counter() + CHECK_EVERY
        try:
            append(fn(item))
        except BaseException as exc:  # captured, as outcome.capture would
            errors[len(values)] = exc
            append(None)
    return ChunkResult(values, errors, perf_counter() - started)


def window_items(window: int, chunksize: int | None) -> int:
    """How many items may be in flight: ``window`` chunks of a fixed size, or of ADAPTIVE_ITEMS."""
    return window * (ADAPTIVE_ITEMS if chunksize is None else chunksize)


def _spread(fn: Callable[..., Any], item: tuple[Any, ...]) -> Any:
    return fn(*item)


async def _zip(
    iterables: tuple[Iterable[Any] | AsyncIterable[Any], ...],
) -> AsyncGenerator[tuple[Any, ...], None]:
    """The items of sync and async iterables, zipped, stopping at the shortest."""
    iterators = [aiter(i) if isinstance(i, AsyncIterable) else iter(i) for i in iterables]
    try:
        while (row := await _next_row(iterators)) is not None:
            yield row
    finally:  # close what was opened, as a finished loop would
        with anyio.CancelScope(shield=True):
            for iterator in iterators:
                if isinstance(iterator, AsyncGenerator):
                    await iterator.aclose()
                elif isinstance(iterator, Generator):
                    iterator.close()


async def _next_row(iterators: list[Iterator[Any] | AsyncIterator[Any]]) -> tuple[Any, ...] | None:
    """One item of each iterator, or None once one of them is exhausted."""
    row: list[Any] = []
    try:
        for iterator in iterators:
            if isinstance(iterator, AsyncIterator):
                row.append(await anext(iterator))
            else:
                row.append(next(iterator))
    except (StopIteration, StopAsyncIteration):
        return None
    return tuple(row)


def next_chunksize(current: int, seconds: float, items: int, largest: int = MAX_CHUNK) -> int:
    """The adaptive size after a chunk of ``items`` took ``seconds``: towards TARGET_SECONDS.

    It at most doubles per step (one quick chunk may be luck), shrinks at
    once, and stays at most ``largest``.
    """
    if items <= 0:
        return current
    per_item = seconds / items
    wanted = largest if per_item <= 0 else int(TARGET_SECONDS / per_item)
    return max(1, min(wanted, 2 * current, largest))


def check_map_arguments(
    chunksize: int | None, iterables: tuple[Iterable[Any] | AsyncIterable[Any], ...]
) -> int | None:
    """``chunksize`` checked; TypeError for an input that is not an iterable."""
    for each in iterables:
        if not isinstance(each, (Iterable, AsyncIterable)):
            raise TypeError(f"items must be an iterable or async iterable, not {each!r}")
    return None if chunksize is None else check_count("chunksize", chunksize)


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
        fn: Callable[..., Any] | str,
        iterables: tuple[Iterable[Any] | AsyncIterable[Any], ...],
        *,
        ordered: bool,
        chunksize: int | None,
        outcomes: bool,
        window: int,
    ) -> None:
        """``chunksize`` None: adaptive, from 1 item towards TARGET_SECONDS of work a chunk.

        ``window``: the most chunks in flight (the pool's ``queue_size``).
        """
        chunksize = check_map_arguments(chunksize, iterables)
        self._submit = submit
        self._new_event = new_event
        self._fn = fn
        self._spread = len(iterables) > 1  # each item: a tuple of arguments
        self._items: Iterable[Any] | AsyncIterable[Any] = iterables[0]
        if self._spread:
            sync = [i for i in iterables if not isinstance(i, AsyncIterable)]
            self._items = (
                zip(*sync, strict=False) if len(sync) == len(iterables) else _zip(iterables)
            )
        self._ordered = ordered
        self._adaptive = chunksize is None
        self._chunksize = 1 if chunksize is None else chunksize  # the next chunk's size
        self._outcomes = outcomes
        self._window = window
        self._window_items = window_items(window, chunksize)
        self._largest = min(MAX_CHUNK, max(1, self._window_items // ADAPTIVE_SHARE))
        self._items_in_flight = 0
        self.done: int = 0
        sizes = [len(i) for i in iterables if isinstance(i, Sized)]
        self.total: int | None = min(sizes) if len(sizes) == len(iterables) else None
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

    if not TYPE_CHECKING:  # for the type checkers, awaiting it stays an error

        def __await__(self) -> NoReturn:
            raise TypeError(
                "pool.map() is not awaited: use `async with pool.map(fn, items) as "
                "results:`, then `async for result in results:`"
            )

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
                interrupted = await wait_through_cancellation(chunk.job.finished()) or interrupted
            self._in_flight.clear()
            self._items_in_flight = 0
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
                try:  # a chunk at a time, taken in C (islice): a tiny item costs the loop little
                    while True:
                        chunk = list(itertools.islice(sync_items, self._chunksize))
                        if len(chunk) < self._chunksize:
                            break  # the last one (or none), sent below
                        await self._send(chunk)
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
        while self._in_flight and (
            len(self._in_flight) >= self._window
            or self._items_in_flight + len(chunk) > self._window_items
        ):
            self._producer_wake = self._new_event()
            await self._producer_wake.wait()
        entry = _Chunk(await self._submit(_run_chunk, self._fn, chunk, self._spread), len(chunk))
        self._in_flight.append(entry)  # even if the block is exiting: it cancels it
        self._items_in_flight += entry.size
        entry.job.add_done_callback(lambda _: self._chunk_done(entry))

    def _chunk_done(self, chunk: _Chunk) -> None:
        result = chunk.job.outcome
        if self._adaptive and isinstance(result, outcome.Value):
            self._chunksize = next_chunksize(
                self._chunksize, result.value.seconds, chunk.size, self._largest
            )
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
        while not self._current:
            chunk = await self._next_chunk()
            if chunk is None:
                raise StopAsyncIteration
            self._current.extend(chunk.outcomes())
        result = self._current.popleft()
        self.done += 1
        if self._outcomes:
            return result  # type: ignore[return-value]  # pyright: ignore[reportReturnType]
        value: T = result.unwrap()
        return value

    def batches(self) -> AsyncIterator[list[T]]:
        """The results a chunk at a time: ``async for batch in results.batches():``.

        Each batch is a list of the results of one chunk, in the same order
        as item by item, with the same error rules: by default the values
        before an item's error come as one batch, and the next step raises
        the error; with ``outcomes=True`` a batch is a list of Outcomes.
        ``done`` counts the items of the batches yielded. Batches save the
        loop a step per item: for tiny items, use them with a large
        ``chunksize``.
        """
        return _Batches[T](self._next_batch)

    async def _next_batch(self) -> list[Any]:
        if self._current:  # what item-by-item iteration left
            results = list(self._current)
            self._current.clear()
        else:
            chunk = await self._next_chunk()
            if chunk is None:
                raise StopAsyncIteration
            clean = None if self._outcomes else chunk.values_if_clean()
            if clean is not None:  # the common case: the worker's list, as it is
                self.done += len(clean)
                return clean
            results = chunk.outcomes()
        if self._outcomes:
            self.done += len(results)
            return results
        for index, result in enumerate(results):
            if isinstance(result, outcome.Error):
                self._current.extend(results[index:])  # the error is the next step
                results = results[:index]
                break
        if not results:
            return [await self.__anext__()]  # raises the error
        self.done += len(results)
        return [result.unwrap() for result in results]

    async def _next_chunk(self) -> _Chunk | None:
        """The next chunk (in order, or as they finish) once it is done; None after the last."""
        if not self._entered:
            raise RuntimeError("use `async with pool.map(...) as results:` first")
        while True:
            if self._closed:
                raise RuntimeError("the `async with pool.map(...)` block has exited")
            chunk = self._next_finished()
            if chunk is not None:
                self._in_flight.remove(chunk)
                self._items_in_flight -= chunk.size
                self._producer_wake.set()
                return chunk
            if self._fed_all and not self._in_flight:
                if self._feed_error is not None:
                    error, self._feed_error = self._feed_error, None
                    raise error
                return None
            await self._consumers_wake.wait()

    def _next_finished(self) -> _Chunk | None:
        if self._ordered:
            if self._in_flight and self._in_flight[0].job.outcome is not None:
                return self._in_flight[0]
            return None
        return self._finished.popleft() if self._finished else None


@final
class _Chunk:
    """A job carrying ``size`` items."""

    __slots__ = ("job", "size")

    def __init__(self, job: JobRecord, size: int) -> None:
        self.job = job
        self.size = size

    def values_if_clean(self) -> list[Any] | None:
        """The values, if no item failed."""
        result = self.job.outcome
        if isinstance(result, outcome.Value) and not result.value.errors:
            values: list[Any] = result.value.values
            return values
        return None

    def outcomes(self) -> list[outcome.Outcome[Any]]:
        result = self.job.outcome
        if isinstance(result, outcome.Value):
            values, errors, _ = result.value
            return [
                outcome.Error(errors[i]) if i in errors else outcome.Value(value)
                for i, value in enumerate(values)
            ]
        # The chunk's job failed as a whole (it was cancelled): so did each item.
        assert isinstance(result, outcome.Error)
        return [outcome.Error(result.error) for _ in range(self.size)]


@final
class _Batches(Generic[T]):
    """``results.batches()``: an async iterator of lists (no async generator to close)."""

    __slots__ = ("_next_batch",)

    def __init__(self, next_batch: Callable[[], Awaitable[list[Any]]]) -> None:
        self._next_batch = next_batch

    def __aiter__(self) -> _Batches[T]:
        return self

    async def __anext__(self) -> list[T]:
        batch: list[T] = await self._next_batch()
        return batch
