"""The Pool-level suite of tests/test_pool_on_every_host.py, on a Ray host.

Its tests are collected here a second time, with ``host`` (and ``far_host``)
naming a :class:`trio_pool.RayHost` on this module's real local cluster.
No actor is left after any test (conftest.py); a Ray actor's process may
outlive its actor for a moment, so the suite's pid check is Ray's own here.
"""

from __future__ import annotations

import pytest

import trio_pool

import test_pool_on_every_host as suite
from helpers import TIMEOUT
from test_pool_on_every_host import (  # collected here, on Ray
    test_a_cancelled_caller_stops_a_cooperative_job,
    test_a_loader_error_keeps_its_type_and_its_traceback,
    test_a_renewed_worker_gets_a_new_interface,
    test_a_worker_is_a_thread_unless_its_host_is_driven_from_the_loop,
    test_an_error_exit_stops_a_cooperative_job_and_tells_the_hook,
    test_broadcast_method_and_a_lease_reset,
    test_calls_map_broadcast_a_lease_and_resize,
    test_define_and_autoscaling,
    test_hook_errors_are_raised_at_the_exit,
    test_job_cancel_reaches_a_running_job,
    test_what_cannot_cross_fails_only_its_job,
)

__all__ = [
    "test_a_cancelled_caller_stops_a_cooperative_job",
    "test_a_loader_error_keeps_its_type_and_its_traceback",
    "test_a_renewed_worker_gets_a_new_interface",
    "test_a_worker_is_a_thread_unless_its_host_is_driven_from_the_loop",
    "test_an_error_exit_stops_a_cooperative_job_and_tells_the_hook",
    "test_broadcast_method_and_a_lease_reset",
    "test_calls_map_broadcast_a_lease_and_resize",
    "test_define_and_autoscaling",
    "test_hook_errors_are_raised_at_the_exit",
    "test_job_cancel_reaches_a_running_job",
    "test_what_cannot_cross_fails_only_its_job",
]

pytestmark = pytest.mark.timeout(120)

suite.HOSTS["ray"] = trio_pool.RayHost(grace_period=TIMEOUT)


@pytest.fixture
def host() -> str:
    return "ray"


@pytest.fixture
def far_host() -> str:
    return "ray"


@pytest.fixture
def pids() -> set[int]:
    """The pids the suite notes; the conftest checks that no actor is left instead."""
    return set()
