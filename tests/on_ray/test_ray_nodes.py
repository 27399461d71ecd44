"""RayHost on a cluster of two nodes on this machine (ray.cluster_utils.Cluster).

SPREAD puts the workers' actors on different nodes; a node that goes away
takes its worker's running job with it (BrokenWorkerError) and the pool
carries on with a replacement on the node that is left.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import outcome
import pytest
import ray
import trio
from conftest import RUNTIME_ENV
from ray.cluster_utils import Cluster

import trio_pool

from helpers import TIMEOUT, FileGate, poll_until

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    # Ray declares a silent node dead after failed health checks (15 s by
    # default): made quicker here, so the test need not wait that long.
    checks = {"health_check_period_ms": 500, "health_check_failure_threshold": 2}
    cluster = Cluster(
        initialize_head=True, head_node_args={"num_cpus": 2, "_system_config": checks}
    )
    try:
        yield cluster
    finally:
        cluster.shutdown()


@pytest.fixture(scope="module", autouse=True)
def ray_cluster(cluster: Cluster) -> Iterator[None]:
    """Replaces conftest's one-node cluster for this module."""
    ray.init(address=cluster.address, log_to_driver=False, runtime_env=RUNTIME_ENV)
    yield
    ray.shutdown()


def node_of_this_actor(release: FileGate) -> str:
    assert release.wait(TIMEOUT), "the test never released the job"
    node: str = ray.get_runtime_context().get_node_id()
    return node


def nodes(pool: trio_pool.Pool[Any]) -> list[str | None]:
    return [w.node_id for w in pool.statistics().worker_states]


@pytest.mark.trio
async def test_spread_workers_and_a_lost_node(cluster: Cluster, tmp_path: Path) -> None:
    head = ray.get_runtime_context().get_node_id()
    second = cluster.add_node(num_cpus=2)
    cluster.wait_for_nodes()
    host = trio_pool.RayHost(num_cpus=1, scheduling_strategy="SPREAD", grace_period=TIMEOUT)
    async with trio_pool.Pool(workers=2, host=host) as pool:
        assert sorted(nodes(pool)) == sorted([head, second.node_id])  # one on each node
        release = FileGate(tmp_path / "release")
        results: list[outcome.Outcome[str]] = []

        async def broadcast() -> None:
            results.extend(await pool.broadcast(node_of_this_actor, release))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(broadcast)
            await poll_until(lambda: pool.statistics().busy == 2)
            cluster.remove_node(second, allow_graceful=False)
            await poll_until(lambda: pool.statistics().workers_died == 1)  # while its job ran
            release.open()
        values = [r.unwrap() for r in results if isinstance(r, outcome.Value)]
        errors = [r.error for r in results if isinstance(r, outcome.Error)]
        assert values == [head]  # the job on the head node finished
        assert len(errors) == 1
        assert isinstance(errors[0], trio_pool.BrokenWorkerError)
        assert f"on node {second.node_id}" in str(errors[0])
        await poll_until(lambda: pool.statistics().idle == 2)  # a replacement, on the head
        assert nodes(pool) == [head, head]
        again = await pool.broadcast(node_of_this_actor, FileGate(tmp_path / "release"))
        assert [r.unwrap() for r in again] == [head, head]
