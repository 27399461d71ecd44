"""The benchmark runs (a tiny round; timings are never asserted on)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.peers import PEERS, Peer, gather, run_on

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
    for scenario in ("tiny", "latency", "io", "cpu", "map", "map batches", "memory"):
        assert f"| {scenario} | trio_pool (trio) |" in table
    assert "| tiny | trio.to_thread |" in table


@pytest.mark.parametrize("peer", PEERS, ids=lambda peer: peer.name)
def test_every_peer_returns_each_callers_own_result_and_raises_its_error(peer: Peer) -> None:
    async def main() -> list[int]:
        async with peer.open(2) as call:
            results: list[int] = []

            async def one(i: int) -> None:
                results.append(await call(pow, 2, i))

            await gather(50, one)
            with pytest.raises(ZeroDivisionError):
                await call(divmod, 1, 0)
            return sorted(results)

    assert run_on(peer.loop, main) == sorted(2**i for i in range(50))
