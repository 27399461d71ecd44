"""A model per Ray actor, spread over a cluster, fed by pool.map with a progress bar.

Needs Ray: ``python -m pip install '.[ray]' tqdm`` in a checkout of
trio_pool. The cluster here is two Ray nodes on this machine
(``ray.cluster_utils.Cluster``), started and stopped by the example; on a
real cluster, call ``ray.init(address=...)`` instead, and the pool is the
same.
"""

from __future__ import annotations

import os
import random

import ray
import trio
from ray.cluster_utils import Cluster
from tqdm import tqdm

import trio_pool


class Model:
    """Built once per actor (think: weights loaded onto that node's GPU)."""

    def __init__(self, seed: int) -> None:
        rng = random.Random(seed)
        self.weights = [rng.randint(-3, 3) for _ in range(64)]

    def score(self, item: int) -> int:
        rng = random.Random(item)
        return sum(w * rng.randint(0, 9) for w in self.weights)

    def where(self) -> tuple[str, int]:
        return ray.get_runtime_context().get_node_id(), os.getpid()


async def main() -> None:
    host = trio_pool.RayHost(num_cpus=1, scheduling_strategy="SPREAD")
    async with trio_pool.Pool(Model, 7, workers=4, host=host) as pool:
        nodes = {node for node, _ in [o.unwrap() for o in await pool.broadcast("where")]}
        print(f"{pool.worker_count} workers, each a Ray actor, on {len(nodes)} nodes")
        total = 0
        items = range(400)
        async with pool.map("score", items) as scores:
            with tqdm(total=len(items), desc="scoring", unit="item") as progress:
                async for batch in scores.batches():
                    total += sum(batch)
                    progress.update(len(batch))
        print(f"scored {len(items)} items; total {total}")
        print(f"failed jobs: {pool.statistics().failed}")
    print(f"pool closed: {pool.statistics().workers_stopped} actors stopped")


if __name__ == "__main__":
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2})
    cluster.add_node(num_cpus=2)
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, log_to_driver=False)
    try:
        trio.run(main)
    finally:
        ray.shutdown()
        cluster.shutdown()
