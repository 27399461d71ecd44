"""A pool's lifetime, checked: normal exit, exit by an error, by a cancellation."""

import threading

import trio

import trio_pool


class Resource:
    """Records where its hooks run and what the exit hook is told."""

    def __init__(self) -> None:
        self.thread = threading.current_thread()

    def __exit__(self, exc_type: type[BaseException] | None, *rest: object) -> None:
        assert threading.current_thread() is self.thread  # the hook runs in its worker
        print("  exit hook, in the worker thread; told:", exc_type and exc_type.__name__)


def wait_for(gate: threading.Event, started: threading.Event | None = None) -> str:
    if started is not None:
        started.set()
    gate.wait(10)
    return "done"


async def main() -> None:
    print("normal exit:")
    gate = threading.Event()
    async with trio_pool.Pool(Resource, workers=1) as pool:
        job = await pool.submit(wait_for, gate)
        gate.set()
    # The block waited for the accepted job before the hook ran.
    print("  the submitted job:", job.outcome)

    print("exit by an error:")
    gate, started = threading.Event(), threading.Event()
    try:
        async with trio_pool.Pool(Resource, workers=1) as pool:
            running = await pool.submit(wait_for, gate, started)
            queued = await pool.submit(str, "never runs")
            await trio.to_thread.run_sync(started.wait)  # the first job now runs
            gate.set()  # it ignores check_cancelled(), ends on its own, and is waited for
            raise KeyError("boom")
    except KeyError as exc:
        print("  the block raised:", repr(exc))
    print("  the running job:", running.outcome)
    print("  the queued job:", queued.outcome)

    print("exit by a cancellation:")
    with trio.move_on_after(0.1):
        async with trio_pool.Pool(Resource, workers=1) as pool:
            await trio.sleep_forever()

    print("after exit:")
    try:
        await pool.run(str, 1)
    except trio_pool.PoolClosedError as exc:
        print("  PoolClosedError:", exc)


if __name__ == "__main__":
    trio.run(main)
