"""examples/ray_cluster.py runs as a user would run it, and leaves nothing behind.

It starts (and stops) its own two-node cluster, so this module needs none.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers import TIMEOUT
from test_examples import EXAMPLES, ON_RAY


@pytest.fixture(scope="module", autouse=True)
def ray_cluster() -> None:
    """Replaces conftest's cluster: the example brings its own."""


@pytest.fixture(autouse=True)
def no_actor_left() -> None:
    """Replaces conftest's check: the example's processes are checked below."""


def in_session(sid: int) -> list[int]:
    """The live processes of session ``sid`` (the example and all Ray started for it).

    A zombie has ended already (its new parent, init, has not reaped it yet).
    """
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            state, _ppid, _pgrp, session = stat.read_text().rsplit(")", 1)[1].split()[:4]
        except OSError:  # it ended meanwhile
            continue
        if int(session) == sid and state != "Z":
            found.append(int(stat.parent.name))
    return found


def left_after_a_moment(sid: int) -> list[int]:
    """What is still running of session ``sid`` once processes ending now are gone."""
    deadline = time.monotonic() + TIMEOUT
    while (left := in_session(sid)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return left


def stop_what_is_left(sid: int) -> list[int]:
    """Kill, by pid, what is still running of session ``sid``; return those pids."""
    left = left_after_a_moment(sid)
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    return left


def run_in_own_session(command: list[str], cwd: Path) -> tuple[int, str, str, list[int]]:
    """Run ``command`` as a session of its own; its exit code, output, and what it left.

    What it left running is killed, by pid, so that a failing run leaves nothing either.
    """
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=cwd,
        start_new_session=True,  # so that whatever it starts can be found, and stopped
    )
    try:
        stdout, stderr = process.communicate(timeout=300)
    finally:
        process.kill()
        process.wait()
    return process.returncode, stdout, stderr, stop_what_is_left(process.pid)


@pytest.mark.parametrize("name", sorted(ON_RAY))
def test_ray_example(name: str, tmp_path: Path) -> None:
    code, stdout, stderr, left = run_in_own_session(
        [sys.executable, str(EXAMPLES / name)], tmp_path
    )
    assert code == 0, stderr
    assert "400/400" in stderr  # the progress bar reached the end
    lines = stdout.splitlines()
    for expected in ON_RAY[name]:
        assert expected in lines
    assert left == [], "the example left processes running"
