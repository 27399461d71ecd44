"""The benchmark runs (a tiny round; timings are never asserted on)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parent.parent


def test_the_benchmark_runs(tmp_path: Path) -> None:
    out = tmp_path / "results"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks",
            "--rounds",
            "1",
            "--scale",
            "0.005",
            "--no-plot",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    table = out.with_suffix(".md").read_text()
    for scenario in ("tiny", "latency", "io", "cpu", "map", "memory"):
        assert f"| {scenario} | trio_pool (trio) |" in table
    assert "| tiny | trio.to_thread |" in table
