"""benchmarks/on_ray.py runs (one quick round; timings are never asserted on).

Every peer checks that each call's result is its own; the run starts its own
Ray, so this module needs none.
"""

from __future__ import annotations

import sys
from pathlib import Path

from test_ray_example import no_actor_left, ray_cluster, run_in_own_session

ROOT = Path(__file__).parents[2]
__all__ = ["no_actor_left", "ray_cluster"]  # conftest's, replaced: this module needs no Ray


def test_the_ray_benchmark_runs(tmp_path: Path) -> None:
    out = tmp_path / "ray.md"
    command = [sys.executable, "-m", "benchmarks.on_ray", "--rounds", "1", "--quick"]
    code, _, stderr, left = run_in_own_session([*command, "--out", str(out)], ROOT)
    assert code == 0, stderr
    assert left == [], "the benchmark left processes running"
    table = out.read_text()
    for peer in [
        "bare actor call",
        "trio_pool RayHost",
        "bare actor calls, pipelined",
        "ActorPool.map",
        "trio_pool RayHost (pool.call)",
        "trio_pool RayHost (pool.map)",
        "trio_pool RayHost, 4 calls in flight (pool.call)",
        "trio_pool RayHost, 4 calls in flight (pool.map)",
    ]:
        assert f" | {peer} | " in table
    assert "| latency at most 1.2x a bare actor call |" in table
