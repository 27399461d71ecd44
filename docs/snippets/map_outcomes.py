"""pool.map: every Outcome instead of the first error, completion order, async input."""

from collections.abc import AsyncIterator

import outcome
import trio
import trio.lowlevel

import trio_pool


def parse(line: str) -> int:
    return int(line)  # raises ValueError on a bad line


async def lines() -> AsyncIterator[str]:
    """An async iterable: read lazily, as the pool has room."""
    for text in ["1", "2", "x", "4", "5", "y"]:
        await trio.lowlevel.checkpoint()
        yield text


async def main() -> None:
    async with trio_pool.Pool(workers=2) as pool:
        # outcomes=True: one Outcome per item; failures do not stop the batch.
        good, bad = [], []
        async with pool.map(parse, lines(), chunksize=2, outcomes=True) as results:
            async for result in results:
                if isinstance(result, outcome.Value):
                    good.append(result.value)
                else:
                    bad.append(type(result.error).__name__)
        print("good:", good, "bad:", bad, "done:", results.done)

        # ordered=False: results as they complete (here, the same set).
        async with pool.map(abs, [-3, -1, -2], ordered=False) as results:
            print("as completed:", sorted([r async for r in results]))

        # By default the first error is raised, and what is left is cancelled.
        try:
            async with pool.map(parse, ["1", "x", "3"]) as results:
                async for value in results:
                    print("got", value)
        except ValueError as exc:
            print("stopped at:", exc)

        # Leaving early (break) stops reading the items; the pool stays usable.
        async with pool.map(str, range(1_000_000_000), chunksize=100) as results:
            async for text in results:
                if text == "250":
                    break
        print("after break:", results.done, "results; the pool works:", await pool.run(len, "ok"))


if __name__ == "__main__":
    trio.run(main)
