"""Worker processes: GIL-bound Python work in parallel, a model per process, a crash survived.

Each of the two workers loads its own "model" in its own child process
(here a table of word weights built in pure Python, as a parser or a
pure-Python model would be). Scoring is pure Python too, so on threads it
would run one at a time under the GIL; in processes it runs in parallel.
One job kills its own process: that job fails with BrokenWorkerError, the
pool starts a replacement (the loader runs again) and the block carries on.

Run it: python examples/process_pool.py
"""

from __future__ import annotations

import os
import signal

import outcome
import trio

import trio_pool


class Model:
    """Built once per worker process; its exit hook runs in that process."""

    def __init__(self, vocabulary_size: int) -> None:
        self.weights = {f"w{i}": (i * 7919) % 101 for i in range(vocabulary_size)}
        self.pid = os.getpid()

    def score(self, words: list[str], rounds: int) -> int:
        total = 0
        for _ in range(rounds):  # pure Python: it holds the GIL throughout
            total += sum(self.weights.get(word, 0) for word in words)
        return total

    def __exit__(self, *exc_info: object) -> None:
        pass


def crash() -> None:
    os.kill(os.getpid(), signal.SIGKILL)  # as a segfault or the OOM killer would


async def main() -> None:
    documents = [[f"w{(d * 31 + i) % 500}" for i in range(200)] for d in range(8)]
    host = trio_pool.ProcessHost()
    async with trio_pool.Pool(Model, 500, workers=2, host=host) as pool:
        async with pool.map(pool_score, documents) as results:
            scores = [score async for score in results]
        print("scores:", scores)
        pids = {w.pid for w in pool.statistics().worker_states}
        print("worker processes:", len(pids), "| the pool's own among them:", os.getpid() in pids)

        job = await pool.submit(crash)
        result = await job.wait()
        assert isinstance(result, outcome.Error)
        print("the crashed job:", type(result.error).__name__)
        print("the pool goes on:", await pool.interface.score(documents[0], 1))
        while pool.statistics().workers_died == 0 or pool.worker_count < 2:  # noqa: ASYNC110
            await trio.sleep(0.01)  # the replacement starts once the dead worker's thread ends
        stats = pool.statistics()
        print(f"workers={stats.workers} workers_died={stats.workers_died}")
    print("all worker processes stopped")


def pool_score(doc: list[str]) -> int:
    """Runs in a worker process: the model there is current_interface()."""
    model: Model = trio_pool.current_interface()
    return model.score(doc, 50)


if __name__ == "__main__":  # needed: worker processes import this file (as multiprocessing does)
    trio.run(main)
