"""One real local Ray cluster per test module, and no actor left after any test.

A module may bring its own cluster by defining a ``ray_cluster`` fixture
(the multi-node tests do). Ray's own state (``ray._private.state``, which
needs no dashboard) says which actors are alive.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import ray

from helpers import TIMEOUT

#: The actors import the tests' modules (their functions are pickled by name), as a
#: program's own modules must be importable on every node.
TEST_DIRS = os.pathsep.join(str(Path(__file__).parents[i]) for i in (0, 1))
RUNTIME_ENV = {"env_vars": {"PYTHONPATH": TEST_DIRS}}


@pytest.fixture(scope="module", autouse=True)
def ray_cluster() -> Iterator[None]:
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, runtime_env=RUNTIME_ENV)
    yield
    ray.shutdown()


def live_actors() -> list[str]:
    from ray._private import state  # private: the only look without a dashboard

    return [
        actor_id
        for actor_id, actor in state.actors().items()  # pyright: ignore[reportUnknownVariableType, reportUnknownMemberType]
        if actor["State"] != "DEAD"
    ]


@pytest.fixture(autouse=True)
def no_actor_left(ray_cluster: None) -> Iterator[None]:
    """Every actor a test's pools made is dead once the test is over."""
    assert live_actors() == [], "an actor was alive before the test"
    yield
    deadline = time.monotonic() + TIMEOUT  # ray.kill is asynchronous: give it a moment
    while live := live_actors():
        if time.monotonic() > deadline:
            pytest.fail(f"actors {live} outlived their pool")
        time.sleep(0.01)
