"""Tutorial, step 1: a blocking call on the event loop stops every task."""

import time

import trio


def lookup(key: str) -> str:
    """Stands for any blocking call: a database driver, a C library, a file."""
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
        value = lookup("a")  # blocks the whole event loop for 0.2 s
        print(value, "- heartbeats during the call:", len(ticks) - before)
        nursery.cancel_scope.cancel()


if __name__ == "__main__":
    trio.run(main)
