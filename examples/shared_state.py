"""Shared state between worker threads and tasks: trio_pool.Shared and ThreadSafeLock.

Workers and tasks count words into one Shared dict (atomic modify: no update
lost), and append lines to one log under a lock that threads hold with `with`
and tasks with `async with`, without ever blocking the event loop.
"""

import anyio

import trio_pool

TEXT = ["the pool runs jobs", "the loop runs tasks", "jobs and tasks share state"] * 20

counts = trio_pool.Shared({})
log_lock = trio_pool.ThreadSafeLock()
log: list[str] = []


def add_words(counts_now: dict[str, int], line: str) -> dict[str, int]:
    for word in line.split():
        counts_now[word] = counts_now.get(word, 0) + 1
    return counts_now


def count_in_thread(line: str) -> None:
    counts.modify(lambda c: add_words(c, line))
    with log_lock:  # a worker thread holds the lock with `with`
        log.append(f"worker {trio_pool.current_worker().id}")


async def count_in_task(line: str) -> None:
    counts.modify(lambda c: add_words(c, line))
    async with log_lock:  # a task waits for it without blocking the loop
        log.append("task")


async def main() -> None:
    async with trio_pool.Pool(workers=3) as pool, anyio.create_task_group() as tg:
        for n, line in enumerate(TEXT):
            if n % 2:
                tg.start_soon(pool.run, count_in_thread, line)
            else:
                tg.start_soon(count_in_task, line)
    final = counts.get()
    print(f"'the': {final['the']}, 'runs': {final['runs']}, 'state': {final['state']}")
    tasks = log.count("task")
    print(f"{len(log)} log lines: {tasks} from tasks, {len(log) - tasks} from workers")


if __name__ == "__main__":
    anyio.run(main)
