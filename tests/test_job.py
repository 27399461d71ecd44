"""A Job belongs to the loop that made it: from another thread or loop, each method refuses."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

import anyio
import pytest
import trio

import trio_pool

from helpers import TIMEOUT, Gate, wait_in_thread


def test_a_job_used_from_another_thread_or_loop_refuses_at_once() -> None:
    errors: list[BaseException] = []

    def refused(attempt: Callable[[], object]) -> None:
        try:
            attempt()
        except RuntimeError as exc:
            errors.append(exc)

    def from_another_thread(running: trio_pool.Job[Any], queued: trio_pool.Job[Any]) -> None:
        async def wait_for_both() -> None:
            with anyio.fail_after(TIMEOUT):  # a bug fails instead of hanging
                for job in (running, queued):
                    try:
                        await job.wait()
                    except RuntimeError as exc:  # noqa: PERF203
                        errors.append(exc)

        trio.run(wait_for_both)
        asyncio.run(wait_for_both())
        refused(queued.cancel)  # from a plain thread: the queued job is left in place
        refused(running.cancel)
        refused(lambda: queued.add_done_callback(print))

    async def main() -> tuple[object, object]:
        gate = Gate()
        async with trio_pool.Pool(workers=1) as pool:
            running = await pool.submit(gate.enter, 5)
            queued = await pool.submit(int, "7")
            await wait_in_thread(gate.entered)
            thread = threading.Thread(target=from_another_thread, args=(running, queued))
            thread.start()
            await trio.to_thread.run_sync(thread.join, TIMEOUT)
            assert not thread.is_alive()
            assert not running.done
            assert not queued.done
            gate.open()
            # The owning loop is unharmed: both jobs run and are waited for here.
            return (await running.wait()).unwrap(), (await queued.wait()).unwrap()

    assert trio.run(main) == (5, 7)
    assert len(errors) == 7
    assert all("belongs to the event loop that entered it" in str(e) for e in errors), errors


def test_a_job_has_no_public_constructor() -> None:
    with pytest.raises(TypeError, match=r"trio_pool.Job has no public constructor"):
        trio_pool.Job(int, (), {}, False, None, None)  # type: ignore[arg-type]
