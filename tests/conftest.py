"""Run every backend-neutral async test three ways, and check for leftover threads.

An ``async def`` test not marked ``trio`` runs under plain ``trio.run``
(pytest-trio), under anyio on trio, and under anyio on asyncio (anyio's
pytest plugin), so no behaviour can silently exist on one backend only.
Tests that need trio itself (MockClock, trio's KeyboardInterrupt handling)
are marked ``@pytest.mark.trio`` and run once.
"""

from __future__ import annotations

import importlib.util
import inspect
import os
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

BACKENDS = ["trio", "anyio-trio", "anyio-asyncio"]

# The RayHost tests need Ray (the `ray` nox session installs it, and starts
# their clusters); without it they are not collected at all, and that session
# fails if it collects none.
collect_ignore = [] if importlib.util.find_spec("ray") is not None else ["on_ray"]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if inspect.iscoroutinefunction(
        metafunc.function
    ) and not metafunc.definition.get_closest_marker("trio"):
        metafunc.parametrize("backend", BACKENDS)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        callspec = getattr(item, "callspec", None)
        is_async = inspect.iscoroutinefunction(getattr(item, "function", None))
        if is_async and callspec is not None and callspec.params.get("backend") == "trio":
            item.add_marker(pytest.mark.trio)


@pytest.fixture(autouse=True)
def anyio_backend(request: pytest.FixtureRequest) -> str | None:
    """Tells anyio's plugin which backend to run the test on (None: not anyio's)."""
    callspec = getattr(request.node, "callspec", None)
    backend = callspec.params.get("backend") if callspec is not None else None
    if not isinstance(backend, str) or not backend.startswith("anyio-"):
        return None
    return str(backend).removeprefix("anyio-")


def pool_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if "-worker-" in t.name]


@pytest.fixture(autouse=True)
def no_pool_thread_left() -> Iterator[None]:
    """Every pool thread has ended (or gone back to a thread cache, renamed)."""
    assert pool_threads() == [], "a pool thread was running before the test"
    yield
    assert pool_threads() == [], "a pool thread was left running"


@pytest.fixture(autouse=True)
def no_interpreter_left() -> Iterator[None]:
    """Every subinterpreter a test's pools made is gone (CPython 3.13+)."""
    yield
    if sys.version_info >= (3, 13):
        import _interpreters  # pyright: ignore

        assert len(_interpreters.list_all()) == 1, "a subinterpreter outlived its pool"


@pytest.fixture
def record(tmp_path: Path) -> Path:
    """A file where a test's interfaces note their loads and exits."""
    return tmp_path / "record"


@pytest.fixture
def pids() -> Iterator[set[int]]:
    """Worker pids a test saw; each must be gone once the test is over."""
    seen: set[int] = set()
    yield seen
    seen.discard(os.getpid())
    for pid in seen:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            continue
        pytest.fail(f"worker process {pid} outlived its pool")
