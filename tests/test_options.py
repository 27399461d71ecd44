"""The pool's options: a wrong one is a clear TypeError or ValueError before any thread starts."""

from __future__ import annotations

from typing import Any

import pytest

import trio_pool


@pytest.mark.parametrize(
    ("workers", "error"),
    [(0, ValueError), (-1, ValueError), (1.5, TypeError), ("4", TypeError), (True, TypeError)],
)
def test_bad_worker_counts(workers: object, error: type[Exception]) -> None:
    with pytest.raises(error, match="workers"):
        trio_pool.Pool(workers=workers)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"queue_size": 0}, ValueError, "queue_size"),
        ({"queue_size": 2.0}, TypeError, "queue_size"),
        ({"abandon_on_cancel": 1}, TypeError, "abandon_on_cancel"),
        ({"name": 3}, TypeError, "name"),
    ],
)
def test_bad_options(kwargs: dict[str, Any], error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        trio_pool.Pool(**kwargs)


def test_bad_interfaces() -> None:
    with pytest.raises(TypeError, match="interface must be"):
        trio_pool.Pool(42)
    with pytest.raises(TypeError, match="arguments"):
        trio_pool.Pool(None, "app.db")
    with pytest.raises(TypeError, match="maps names to functions"):
        trio_pool.Pool({"query": "not a function"})


def test_default_workers_follow_thread_pool_executor() -> None:
    import os

    assert trio_pool.Pool()._options.initial == min(32, (os.cpu_count() or 1) + 4)
