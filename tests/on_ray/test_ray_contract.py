"""The host contract suite (tests/test_host_contract.py), on RayHost."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import trio_pool

from helpers import TIMEOUT
from test_host_contract import *  # noqa: F403 (the suite's tests, collected here again)
from test_host_contract import MakeHost


@pytest.fixture
def make_host(tmp_path: Path) -> Iterator[MakeHost]:
    yield from MakeHost.fixture("ray", trio_pool.RayHost(grace_period=TIMEOUT), tmp_path)
