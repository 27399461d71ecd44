"""Calling back into the event loop from a job: from_loop, and notify/wait."""

import trio

import trio_pool


def crunch(send: trio.MemorySendChannel[int], count: int) -> str:
    """A long job that reports progress to a task on the loop."""
    for step in range(1, count + 1):
        trio_pool.check_cancelled()
        # Runs `await send.send(step)` on the loop, in the caller's task and
        # cancel scope; the worker blocks until it returns (backpressure).
        trio_pool.from_loop(send.send, step)
    return "crunched"


def ask_for_approval(send: trio.MemorySendChannel[int]) -> str:
    """A job that tells the loop where it runs, then waits for a notify."""
    trio_pool.from_loop(send.send, trio_pool.current_worker().id)
    (answer,) = trio_pool.wait("approval", timeout=10)  # blocks this worker only
    return f"approved: {answer}"


async def main() -> None:
    async with trio_pool.Pool(workers=2) as pool:
        send, receive = trio.open_memory_channel[int](0)
        async with trio.open_nursery() as nursery:

            async def progress() -> None:
                async with receive:
                    async for step in receive:
                        print("progress:", step)

            nursery.start_soon(progress)
            async with send:
                print(await pool.run(crunch, send, 3))

        send, receive = trio.open_memory_channel[int](1)
        job = await pool.submit(ask_for_approval, send)
        worker_id = await receive.receive()
        pool.notify(worker_id, "approval", "yes")
        print((await job.wait()).unwrap())


if __name__ == "__main__":
    trio.run(main)
