"""Subinterpreter workers (CPython 3.13+): pure-Python parsing in parallel, in one process.

Each of the two workers builds its own parser (a table of word weights, in
pure Python) in a subinterpreter of its own, with its own GIL, so the two
parse at the same time without a process each. A job that runs too long
is cancelled: check_cancelled() raises in its subinterpreter, and the
worker goes on. Leaving the block runs each parser's exit hook in its
subinterpreter, then destroys it.

Run it: python3.13 examples/interpreters.py
"""

from __future__ import annotations

import os
import sys

import trio

import trio_pool


class Parser:
    """Built once per worker, inside that worker's subinterpreter."""

    def __init__(self, vocabulary_size: int) -> None:
        self.weights = {f"w{i}": (i * 7919) % 101 for i in range(vocabulary_size)}

    def score(self, text: str) -> int:
        words = text.split()  # pure Python from here on: it holds this interpreter's GIL
        return sum(self.weights.get(word, 0) * len(word) for word in words for _ in range(20))

    def __exit__(self, *exc_info: object) -> None:
        # One write: the two interpreters' hooks may run at once (print writes twice).
        sys.stdout.write("a parser closed in its own subinterpreter\n")


def where() -> tuple[int, int]:
    """The process and the worker a job runs in (its interpreter is the worker's own)."""
    return os.getpid(), trio_pool.current_worker().id


def parse_until_cancelled() -> str:
    while True:  # a job that would run for ever, but looks up
        trio_pool.check_cancelled()


async def main() -> None:
    texts = [" ".join(f"w{(t * 31 + i) % 500}" for i in range(300)) for t in range(8)]
    host = trio_pool.InterpreterHost()
    async with trio_pool.Pool(Parser, 500, workers=2, host=host) as pool:
        async with pool.map(score, texts) as results:
            print("scores:", [s async for s in results])
        places = [r.unwrap() for r in await pool.broadcast(where)]
        one_process = {pid for pid, _ in places} == {os.getpid()}
        print("workers:", sorted(w for _, w in places), "| all in this process:", one_process)
        with trio.move_on_after(0.1):
            await pool.run(parse_until_cancelled)
        after = await pool.interface.score("w1 w2")
        print("the endless job was cancelled; the pool goes on:", after)


def score(text: str) -> int:
    """Runs in a worker's subinterpreter: its parser is current_interface()."""
    parser: Parser = trio_pool.current_interface()
    return parser.score(text)


if __name__ == "__main__":
    if sys.version_info < (3, 13):
        sys.exit("subinterpreter workers need CPython 3.13 or later")
    trio.run(main)
