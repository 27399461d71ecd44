"""Tutorial, step 2: the same call in a thread, with trio.to_thread.run_sync."""

import time

import trio


def lookup(key: str) -> str:
    time.sleep(0.2)
    return key.upper()


async def heartbeat(ticks: list[float]) -> None:
    while True:
        ticks.append(trio.current_time())
        await trio.sleep(0.01)


async def main() -> None:
    ticks: list[float] = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(heartbeat, ticks)
        await trio.sleep(0.05)
        before = len(ticks)
        value = await trio.to_thread.run_sync(lookup, "a")  # the loop keeps running
        print(value, "- heartbeats ran during the call:", len(ticks) > before)
        nursery.cancel_scope.cancel()


if __name__ == "__main__":
    trio.run(main)
