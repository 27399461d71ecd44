"""Leases racing the pool's close, and a reset racing a native asyncio cancellation."""

from __future__ import annotations

import asyncio

import anyio
import pytest

import trio_pool

from helpers import TIMEOUT, Gate, poll_until, wait_in_thread


async def test_a_lease_whose_worker_is_busy_as_the_pool_begins_closing_is_refused(
    backend: str,
) -> None:
    gate = Gate()
    resets: list[object] = []
    entry: list[str] = []
    async with anyio.create_task_group() as tg:
        async with trio_pool.Pool(workers=1) as pool:
            job = pool.submit_nowait(gate.enter, "shared")
            await wait_in_thread(gate.entered)

            async def lessee() -> None:
                try:
                    async with pool.lease(reset=resets.append):
                        entry.append("entered")
                except trio_pool.PoolClosedError:
                    entry.append("refused")

            tg.start_soon(lessee)
            # The busy worker is leased; the lessee waits for its shared job to end.
            await poll_until(lambda: pool.statistics().worker_states[0].leased)
            tg.start_soon(pool.aclose)  # a normal close starts meanwhile
            await poll_until(lambda: "closing" in repr(pool))
            gate.open()
    assert entry == ["refused"]  # the pool's leases ended: nothing to reset, nothing shared
    assert resets == []
    assert job.outcome is not None
    assert job.outcome.unwrap() == "shared"


def test_a_native_cancel_while_a_reset_runs_does_not_lose_the_resets_error() -> None:
    gate = Gate()

    def failing_reset(interface: object) -> None:
        gate.enter()
        raise OSError("the reset failed")

    async def main() -> None:
        async with trio_pool.Pool(workers=1) as pool:

            async def lessee() -> None:
                async with pool.lease(reset=failing_reset):
                    pass

            task = asyncio.ensure_future(lessee())
            await wait_in_thread(gate.entered)
            task.cancel()  # lands while the lease waits for its reset
            await asyncio.sleep(0)
            gate.open()
            # The reset's error wins over the cancellation, as in an asyncio.TaskGroup.
            with pytest.raises(OSError, match="the reset failed"):
                await task
            assert not pool.statistics().worker_states[0].leased
            assert await pool.run(int, "3") == 3

    asyncio.run(asyncio.wait_for(main(), TIMEOUT))


def test_a_native_cancel_while_a_reset_runs_is_raised_when_the_reset_succeeds() -> None:
    gate = Gate()

    async def main() -> None:
        async with trio_pool.Pool(workers=1) as pool:

            async def lessee() -> None:
                async with pool.lease(reset=gate.enter):
                    pass

            task = asyncio.ensure_future(lessee())
            await wait_in_thread(gate.entered)
            task.cancel()
            await asyncio.sleep(0)
            gate.open()
            with pytest.raises(asyncio.CancelledError):
                await task

    asyncio.run(asyncio.wait_for(main(), TIMEOUT))
