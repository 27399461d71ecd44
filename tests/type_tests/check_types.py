"""What mypy and pyright infer for the public API (checked, never run)."""

from __future__ import annotations

from typing import Any

import outcome
from typing_extensions import assert_type

import trio_pool


class Db:
    def query(self, sql: str, *params: object) -> list[tuple[int, ...]]:
        return []


def add(a: int, b: int) -> int:
    return a + b


async def check(pool: trio_pool.Pool) -> None:
    assert_type(await pool.run(add, 1, 2), int)
    assert_type(await pool.call_method(Db.query, "select 1"), list[tuple[int, ...]])
    assert_type(await pool.call("query", "select 1"), outcome.Outcome[Any])
    job = await pool.submit(add, 1, 2)
    assert_type(job, trio_pool.Job[int])
    assert_type(await job.wait(), outcome.Outcome[int])
    assert_type(job.outcome, outcome.Outcome[int] | None)
    assert_type(pool.submit_nowait("query"), trio_pool.Job[Any])
    assert_type(job.worker_id, int | None)
    assert_type(pool.statistics().busy, int)
    assert_type(trio_pool.current_worker().id, int)
    await pool.run(add, 1, "2")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    await pool.call_method(Db.query, 1)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
