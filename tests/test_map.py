"""pool.map: lazy, bounded, ordered or not, in chunks, with every outcome or the first error."""

from __future__ import annotations

import itertools
import threading
import tracemalloc
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio
import outcome
import pytest

import trio_pool

from helpers import TIMEOUT, Gate, Log, recording_interface, wait_in_thread


async def agen(n: int) -> AsyncIterator[int]:
    for i in range(n):
        await anyio.lowlevel.checkpoint()
        yield i


def square(x: int) -> int:
    return x * x


@pytest.mark.parametrize("chunksize", [1, 3, 100])
async def test_ordered_results_from_any_iterable(backend: str, chunksize: int) -> None:
    async with trio_pool.Pool(workers=3) as pool:
        for items in (list(range(50)), iter(range(50)), agen(50)):
            async with pool.map(square, items, chunksize=chunksize) as results:
                assert [x async for x in results] == [i * i for i in range(50)]
            assert results.done == 50
        assert pool.statistics().failed == 0


async def test_progress_counts(backend: str) -> None:
    async with trio_pool.Pool(workers=2) as pool:
        async with pool.map(square, range(10)) as results:
            assert (results.done, results.total) == (0, 10)
            seen = [(value, results.done) async for value in results]
            assert seen == [(i * i, i + 1) for i in range(10)]
        async with pool.map(square, iter(range(3))) as results:
            assert results.total is None
            assert [x async for x in results] == [0, 1, 4]


async def test_unordered_yields_in_completion_order(backend: str) -> None:
    first = Gate()

    def work(n: int) -> int:
        if n == 0:
            first.enter()
        return n

    async with trio_pool.Pool(workers=2) as pool:
        async with pool.map(work, range(4), ordered=False) as results:
            got = []
            async for value in results:
                got.append(value)
                if len(got) == 3:
                    first.open()  # item 0 finishes only now
            assert got[:3] == [1, 2, 3]
            assert got[3] == 0


async def test_outcomes_mode_and_first_error_mode(backend: str) -> None:
    log = Log()
    held = Gate(cooperative=True)

    def invert(x: int) -> float:
        log.add("ran", x)
        if x == 1:
            held.enter()  # still running when the consumer meets item 0's error
        return 1 / x

    async with trio_pool.Pool(workers=1) as pool:
        async with pool.map(invert, [1, 0, 2], outcomes=True) as results:
            held.open()
            got = [o async for o in results]
        assert got[0] == outcome.Value(1.0)
        assert isinstance(got[1], outcome.Error)
        assert isinstance(got[1].error, ZeroDivisionError)
        assert got[2] == outcome.Value(0.5)

        log.items.clear()
        held = Gate(cooperative=True)
        with pytest.raises(ZeroDivisionError):
            async with pool.map(invert, [0, *range(1, 50)]) as results:
                async for _ in results:
                    pytest.fail("the first item fails")  # pragma: no cover
        # Item 1 may have started (it was then told to stop); the rest never did.
        assert [x for (x,) in log.of("ran")] in ([0], [0, 1])
        assert await pool.run(str, 1) == "1"


async def test_leaving_early_cancels_the_rest_and_the_pool_stays_usable(backend: str) -> None:
    consumed = itertools.count()

    def numbers() -> Iterator[int]:
        for i in itertools.count():  # endless
            next(consumed)
            yield i

    async with trio_pool.Pool(workers=2, queue_size=8) as pool:
        async with pool.map(square, numbers(), chunksize=4) as results:
            async for value in results:
                if value == 100:
                    break
        # Lazily read: at most the window (8 chunks of 4) beyond what was used.
        assert next(consumed) <= 11 + 8 * 4 + 4
        stats = pool.statistics()
        assert (stats.queued, stats.busy) == (0, 0)
        assert stats.submitted == stats.completed + stats.failed + stats.cancelled
        assert await pool.run(str, 2) == "2"


async def test_a_slow_consumer_holds_the_adaptive_reader_back(backend: str) -> None:
    # Quick items grow the adaptive chunks; the window stays bounded in items.
    read = itertools.count()

    def numbers() -> Iterator[int]:
        for i in range(1_000_000):
            next(read)
            yield i

    async with trio_pool.Pool(workers=2, queue_size=8) as pool:
        async with pool.map(square, numbers()) as results:
            async for value in results:
                await anyio.sleep(0.001)  # a consumer slower than the workers
                if value == 100**2:
                    break
        # 101 used; the window is 8 * 64 items, adaptive chunks at most 8 * 8: one of
        # them is being consumed and one is held by the reader while it waits for room.
        assert next(read) <= 101 + 8 * 64 + 2 * 8 * 8


async def test_a_slow_first_item_does_not_let_results_pile_up(backend: str) -> None:
    gate = Gate()
    read = itertools.count()

    def numbers() -> Iterator[int]:
        for i in range(10_000):
            next(read)
            yield i

    def work(n: int) -> int:
        if n == 0:
            gate.enter()
        return n

    async with trio_pool.Pool(workers=4, queue_size=8) as pool:
        # One item a chunk, so that chunks in flight are items read.
        async with pool.map(work, numbers(), chunksize=1) as results:
            iterator = results.__aiter__()
            async with anyio.create_task_group() as tg:

                async def first() -> None:
                    assert await iterator.__anext__() == 0

                tg.start_soon(first)
                await anyio.to_thread.run_sync(gate.entered.wait, TIMEOUT)
                await anyio.wait_all_tasks_blocked()
                # The producer waits: 8 chunks in flight, however fast the others finish.
                assert next(read) <= 8 + 1
                gate.open()
            assert [x async for x in results] == list(range(1, 10_000))


async def test_an_error_in_the_items_comes_after_the_results_before_it(backend: str) -> None:
    def items() -> Iterator[int]:
        yield 1
        yield 2
        raise KeyError("bad input")

    async with trio_pool.Pool(workers=2) as pool:
        got = []
        with pytest.raises(KeyError, match="bad input"):
            async with pool.map(square, items()) as results:
                async for value in results:
                    got.append(value)  # noqa: PERF401
        assert got == [1, 4]


async def test_map_over_operations(backend: str) -> None:
    async with trio_pool.Pool(recording_interface(Log()), "tag", workers=2) as pool:
        async with pool.map("echo", range(3)) as results:
            assert [x async for x in results] == [("tag", i) for i in range(3)]
        pool.define("cube", lambda x: x**3)
        async with pool.map("cube", range(4), chunksize=2) as results:
            assert [x async for x in results] == [0, 1, 8, 27]
        async with pool.map("nope", range(2), outcomes=True) as results:
            errors = [o async for o in results]
        assert all(
            isinstance(o, outcome.Error) and isinstance(o.error, AttributeError) for o in errors
        )


async def test_bad_map_arguments(backend: str) -> None:
    async def coro(x: int) -> int:
        return x  # pragma: no cover

    async with trio_pool.Pool(workers=1) as pool:
        with pytest.raises(ValueError, match="chunksize"):
            pool.map(square, [1], chunksize=0)
        with pytest.raises(TypeError, match="async function"):
            pool.map(coro, [1])
        with pytest.raises(TypeError, match="iterable"):
            pool.map(square, 5)  # type: ignore[call-overload]
        results = pool.map(square, [1])
        with pytest.raises(RuntimeError, match="async with"):
            await results.__anext__()


async def test_cancelling_the_consumer_waits_for_running_chunks(backend: str) -> None:
    gate = Gate(cooperative=True)
    stopped = threading.Event()
    scope = anyio.CancelScope()

    def work(n: int) -> int:
        if n == 0:
            try:
                gate.enter()  # stops only when asked to, through check_cancelled()
            finally:
                stopped.set()
        return n

    async with trio_pool.Pool(workers=2) as pool:
        async with anyio.create_task_group() as tg:

            async def cancel_when_running() -> None:
                await anyio.to_thread.run_sync(gate.entered.wait, TIMEOUT)
                scope.cancel()

            tg.start_soon(cancel_when_running)
            with scope:
                async with pool.map(work, range(100)) as results:
                    async for _ in results:
                        pytest.fail("item 0 never finishes")  # pragma: no cover
        assert scope.cancelled_caught
        assert stopped.is_set()  # the running chunk was asked to stop and waited for
        stats = pool.statistics()
        assert (stats.queued, stats.busy) == (0, 0)
        assert await pool.run(str, 3) == "3"


@pytest.mark.trio  # one backend: a million items under tracemalloc take seconds
async def test_memory_stays_bounded_with_a_slow_consumer() -> None:
    n = 1_000_000

    async with trio_pool.Pool(workers=2) as pool:
        tracemalloc.start()
        try:
            tracemalloc.reset_peak()
            base = tracemalloc.get_traced_memory()[0]
            count = 0
            async with pool.map(abs, range(n), chunksize=1000) as results:
                async for _ in results:
                    count += 1
                    if count % 1000 == 0:
                        await anyio.lowlevel.checkpoint()  # a consumer slower than the workers
            peak = tracemalloc.get_traced_memory()[1] - base
        finally:
            tracemalloc.stop()
    assert count == n
    # A list of the million inputs or results alone would take over 36 MiB.
    assert peak < 16 * 1024 * 1024, f"peak {peak} bytes"


async def test_two_tasks_can_share_one_map_and_iterating_after_exit_fails(backend: str) -> None:
    got: list[int] = []
    async with trio_pool.Pool(workers=2) as pool:
        async with pool.map(square, range(20)) as results:

            async def consume() -> None:
                async for value in results:
                    got.append(value)  # noqa: PERF401

            async with anyio.create_task_group() as tg:
                tg.start_soon(consume)
                tg.start_soon(consume)
        assert sorted(got) == [i * i for i in range(20)]
        with pytest.raises(RuntimeError, match="exited"):
            await results.__anext__()


async def test_leaving_early_closes_what_map_opened_reading(backend: str) -> None:
    closed: list[str] = []

    async def agen() -> Any:
        try:
            for i in range(1000):
                yield i
        finally:
            closed.append("async")

    def gen() -> Any:
        try:
            yield from range(1000)
        finally:
            closed.append("sync")

    async with trio_pool.Pool(workers=2) as pool:
        for items in (agen(), gen()):
            async with pool.map(int, items) as results:
                async for _ in results:
                    break
    assert closed == ["async", "sync"]


# --- batches and the adaptive chunk size ---------------------------------------------


@pytest.mark.parametrize("ordered", [True, False])
async def test_batches_are_the_chunks_results_in_the_same_order(
    backend: str, ordered: bool
) -> None:
    async with trio_pool.Pool(workers=3) as pool:
        async with pool.map(square, range(100), chunksize=7, ordered=ordered) as results:
            batches = [batch async for batch in results.batches()]
            assert results.done == 100
    assert all(len(batch) == 7 for batch in batches[:-1] if ordered)
    flat = [x for batch in batches for x in batch]
    assert (flat if ordered else sorted(flat)) == [i * i for i in range(100)]
    assert sorted(len(batch) for batch in batches) == sorted([7] * 14 + [2])


def fail_on_13(x: int) -> int:
    if x == 13:
        raise LookupError(x)
    return x


async def test_batches_give_the_values_before_an_error_then_raise_it(backend: str) -> None:
    async with trio_pool.Pool(workers=2) as pool:
        async with pool.map(fail_on_13, range(30), chunksize=5) as results:
            got: list[list[int]] = []
            with pytest.raises(LookupError, match="13"):
                async for batch in results.batches():
                    got.append(batch)  # noqa: PERF401 (it must keep what came before)
            assert got == [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9], [10, 11, 12]]
            assert results.done == 14  # the error's item counts, as item by item
        async with pool.map(fail_on_13, range(15), chunksize=5, outcomes=True) as results:
            rows = [batch async for batch in results.batches()]
        assert [len(row) for row in rows] == [5, 5, 5]
        assert isinstance(rows[2][3], outcome.Error)
        assert rows[2][3].error.args == (13,)
        assert [o.unwrap() for o in rows[2] if isinstance(o, outcome.Value)] == [10, 11, 12, 14]


async def test_batches_and_items_can_be_mixed(backend: str) -> None:
    async with trio_pool.Pool(workers=1) as pool:
        async with pool.map(square, range(10), chunksize=4) as results:
            first = await results.__anext__()
            rest = [batch async for batch in results.batches()]
        assert [first, *(x for batch in rest for x in batch)] == [i * i for i in range(10)]
        assert rest[0] == [1, 4, 9]  # what the first chunk had left


async def test_the_default_chunksize_grows_for_cheap_items(backend: str) -> None:
    async with trio_pool.Pool(workers=2) as pool:
        async with pool.map(square, range(20_000)) as results:
            sizes = [len(batch) async for batch in results.batches()]
    assert sizes[0] == 1  # it starts small
    assert max(sizes) > 64  # and grows
    assert max(sizes) <= 4096
    assert sum(sizes) == 20_000


def slow(x: int) -> int:
    threading.Event().wait(0.002)  # more than the millisecond a chunk aims at
    return x


async def test_the_default_chunksize_stays_at_one_for_slow_items(backend: str) -> None:
    async with trio_pool.Pool(workers=4) as pool:
        async with pool.map(slow, range(40)) as results:
            sizes = [len(batch) async for batch in results.batches()]
    assert sizes == [1] * 40  # every item on its own: all workers stay busy


def test_next_chunksize_doubles_at_most_and_shrinks_at_once() -> None:
    from trio_pool._map import MAX_CHUNK, next_chunksize

    assert next_chunksize(1, 0.000001, 1) == 2  # 1 µs an item: it may grow, doubling
    assert next_chunksize(64, 0.000064, 64) == 128
    assert next_chunksize(1000, 0.5, 1000) == 2  # 0.5 ms an item: two fill a millisecond
    assert next_chunksize(100, 1.0, 100) == 1  # slow items: one at a time
    assert next_chunksize(MAX_CHUNK, 0.0, MAX_CHUNK) == MAX_CHUNK
    assert next_chunksize(5, 0.1, 0) == 5
    assert next_chunksize(32, 0.0, 32, largest=48) == 48  # at most an eighth of the window


async def test_a_cancelled_chunk_runs_no_item_after_a_slow_one(backend: str) -> None:
    gate = Gate(cooperative=True)  # item 10 runs until the chunk is cancelled
    ran: list[int] = []

    def work(n: int) -> int:
        ran.append(n)
        if n == 10:
            gate.enter()
        return n

    async with trio_pool.Pool(workers=1) as pool:
        async with pool.map(work, range(100), chunksize=100):
            await wait_in_thread(gate.entered)
        # Leaving the block cancelled the chunk: item 10 saw it, and the 89 after
        # it, in the same job, never ran (cancellation is looked at after a slow item).
        assert ran == list(range(11))


def _add(a: int, b: int) -> int:
    return a + b


async def test_map_over_several_iterables_zips_them_to_the_shortest(backend: str) -> None:
    read: list[str] = []

    def letters() -> Iterator[str]:
        for letter in "abcdefgh":
            read.append(letter)
            yield letter

    async def numbers() -> AsyncIterator[int]:
        for n in range(3):
            yield n

    async with trio_pool.Pool(workers=2) as pool:
        async with pool.map(_add, [1, 2, 3], range(10, 100, 10)) as results:
            assert results.total == 3  # the shortest
            assert [r async for r in results] == [11, 22, 33]
        # Sync and async iterables mixed, out of order; the longer one is not read past need.
        async with pool.map(str.__mul__, letters(), numbers(), ordered=False) as mixed:
            assert mixed.total is None
            assert sorted([r async for r in mixed]) == ["", "b", "cc"]
        assert len(read) <= 4  # three used, and at most the one that found the end
        # An operation by name, several iterables, every Outcome.
        pool.define("add", _add)
        async with pool.map("add", [1, "x"], [2, 3], outcomes=True) as outcomes:
            got = [r async for r in outcomes]
        assert got[0] == outcome.Value(3)
        assert isinstance(got[1], outcome.Error)
        assert isinstance(got[1].error, TypeError)
        with pytest.raises(TypeError, match="items must be an iterable"):
            pool.map(_add, [1], 2)  # type: ignore[call-overload]


async def test_map_over_several_iterables_closes_the_ones_it_opened(backend: str) -> None:
    closed: list[str] = []

    def forever(name: str) -> Iterator[int]:
        try:
            yield from itertools.count()
        finally:
            closed.append(name)

    async def async_forever() -> AsyncIterator[int]:
        try:
            for n in itertools.count():
                yield n
        finally:
            closed.append("async")

    async with trio_pool.Pool(workers=1) as pool:
        async with pool.map(_add, forever("sync"), async_forever()) as results:
            async for value in results:
                if value >= 10:
                    break
    assert sorted(closed) == ["async", "sync"]


async def test_map_checks_its_arguments_before_the_pools_state(backend: str) -> None:
    async with trio_pool.Pool(workers=1) as pool:
        pass
    with pytest.raises(TypeError, match="items must be an iterable"):
        pool.map(str, 5)  # type: ignore[call-overload]
    with pytest.raises(ValueError, match="chunksize"):
        pool.map(str, [1], chunksize=0)
    with pytest.raises(trio_pool.PoolClosedError):
        pool.map(str, [1])
