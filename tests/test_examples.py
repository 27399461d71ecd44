"""Every file in examples/ runs, offline, and prints what it promises."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).parent.parent / "examples"
EXPECTED = {
    "hash_files.py": ["hashed 200 files; combined digest 915cfb2e56ecba59"],
    "shared_state.py": [
        "'the': 40, 'runs': 40, 'state': 20",
        "60 log lines: 30 from tasks, 30 from workers",
    ],
    "anyio_asyncio.py": [
        "running on asyncio",
        "slow job cancelled by the deadline: True",
        "completed=8 cancelled=1",
    ],
    "process_pool.py": [
        "scores: [501050, 500200, 499350, 498500, 497650, 501850, 501000, 500150]",
        "worker processes: 2 | the pool's own among them: False",
        "the crashed job: BrokenWorkerError",
        "the pool goes on: 10021",
        "workers=2 workers_died=1",
        "all worker processes stopped",
    ],
    "metrics_prometheus.py": [
        'trio_pool_jobs_total{outcome="value",pool="scores"} 19.0',
        'trio_pool_jobs_total{outcome="ValueError",pool="scores"} 1.0',
        'trio_pool_queue_seconds_count{pool="scores"} 20.0',
        'trio_pool_run_seconds_count{pool="scores"} 20.0',
        'trio_pool_workers_stopped_total{pool="scores",reason="renewed"} 1.0',
        'trio_pool_workers{pool="scores",state="idle"} 1.0',
    ],
    "tracing_opentelemetry.py": [
        "3 job spans",
        "each a child of the request's span: True",
        "workers: [0, 0, 0]",
        "outcomes: ['value', 'value', 'ValueError']",
    ],
    "quickstart.py": ["digest: 2cf24dba5fb0a30e", "jobs: [0, 1, 4, 9, 16]", "all workers stopped"],
    "web_service.py": [
        "pool open: 4 workers",
        "after 30 transfers: {'alice': 120, 'bob': 90, 'carol': 90}, total 300",
        "the abandoned slow request's job was cancelled",
        "pool closed: 4 workers stopped; jobs: 36 completed, 0 failed, 1 cancelled",
        "in the file after shutdown: 30 transfers, total 300",
    ],
    "sqlite_per_worker.py": [
        "merged 10 visits of index into home",
        "home during the transaction, seen from another worker: 20; after: 40",
        "about: 10 visits",
        "blog: 10 visits",
        "home: 40 visits",
        "4 connections, one per worker thread",
    ],
    "interpreters.py": [
        "scores: [1090940, 1131380, 1157360, 1189620, 1199280, 1201280, 1203280, 1170020]",
        "workers: [0, 1] | all in this process: True",
        "the endless job was cancelled; the pool goes on: 4920",
        "a parser closed in its own subinterpreter",
    ],
}
#: Examples that need CPython 3.13 (its subinterpreters): before, they say so and exit.
NEEDS_3_13 = {"interpreters.py"}


#: Examples that need Ray: tests/on_ray/test_ray_example.py checks them.
ON_RAY = {
    "ray_cluster.py": [
        "4 workers, each a Ray actor, on 2 nodes",
        "scored 400 items; total -67431",
        "failed jobs: 0",
        "pool closed: 4 actors stopped",
    ]
}


def test_every_example_is_checked() -> None:
    assert sorted(p.name for p in EXAMPLES.glob("*.py")) == sorted([*EXPECTED, *ON_RAY])


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_example(name: str, tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / name)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        check=False,
    )
    if name in NEEDS_3_13 and sys.version_info < (3, 13):
        assert result.returncode == 1
        assert result.stderr == "subinterpreter workers need CPython 3.13 or later\n"
        return
    assert result.returncode == 0, result.stderr
    if name == "hash_files.py":
        assert "200/200" in result.stderr  # the progress bar reached the end
    elif name == "process_pool.py":  # the trio_pool logger warns of the death, once
        assert re.fullmatch(
            r"worker (trio_pool-1-worker-\d)'s process \(pid \d+\) died while running a job: "
            r"it was killed by SIGKILL\nworker \1: starting a replacement\n",
            result.stderr,
        ), result.stderr
    else:
        assert result.stderr == ""
    lines = result.stdout.splitlines()
    for expected in EXPECTED[name]:
        assert expected in lines
