"""The cancellation table, checked: what happens to a job when its caller is cancelled."""

import threading
import time

import trio

import trio_pool


def blocker(release: threading.Event) -> str:
    release.wait(10)
    return "blocker done"


def record(ran: list[str], name: str) -> None:
    ran.append(name)


def cooperative(saw: list[str]) -> str:
    for _ in range(1000):
        try:
            trio_pool.check_cancelled()
        except trio_pool.JobCancelled:
            saw.append("the job saw check_cancelled() raise")
            raise
        time.sleep(0.005)
    return "finished"


def slow() -> str:
    time.sleep(0.3)  # never looks at check_cancelled()
    return "the job's value"


def stubborn(release: threading.Event) -> str:
    release.wait(10)  # never looks at check_cancelled()
    return "a result nobody receives"


async def main() -> None:
    async with trio_pool.Pool(workers=1) as pool:
        # Queued: the only worker is busy, so the job waits in the queue.
        # Cancelling its caller removes it; it never runs.
        release, ran = threading.Event(), []
        busy = await pool.submit(blocker, release)
        with trio.move_on_after(0.1):
            await pool.run(record, ran, "queued job")
        release.set()
        await busy.wait()
        await pool.run(len, "")  # the queue is empty again
        print("queued, caller cancelled: the job ran?", bool(ran))

        # Running, the default: the caller waits for the job to end, and
        # check_cancelled() raises inside the job meanwhile. A job that stops
        # there makes the caller raise its cancellation...
        saw: list[str] = []
        with trio.move_on_after(0.1) as scope:
            await pool.run(cooperative, saw)
        print("running, default:", saw[0], "- caller cancelled:", scope.cancelled_caught)

        # ...while a job that finishes anyway gives the caller its result, and
        # the cancellation comes at the caller's next checkpoint.
        with trio.move_on_after(0.1) as scope:
            print("running, finished anyway:", await pool.run(slow))
            await trio.lowlevel.checkpoint()
        print("then cancelled at its next checkpoint:", scope.cancelled_caught)

        # A submitted job: cancelling job.wait() leaves the job alone...
        release = threading.Event()
        job = await pool.submit(blocker, release)
        queued = await pool.submit(record, ran, "queued job")
        with trio.move_on_after(0.1):
            await job.wait()
        print("job.wait() cancelled; the job still runs:", not job.done)
        # ...and job.cancel() cancels it: a queued job is removed at once.
        print("job.cancel() on a queued job removed it:", queued.cancel())
        print("its outcome:", queued.outcome)
        release.set()
        print("the first job:", (await job.wait()).unwrap())

    async with trio_pool.Pool(workers=1, abandon_on_cancel=True) as pool:
        # Running, abandon_on_cancel=True: the caller returns at once; the job
        # goes on in its thread and its result is discarded.
        release = threading.Event()
        start = trio.current_time()
        with trio.move_on_after(0.1):
            await pool.run(stubborn, release)
        waited = trio.current_time() - start
        print("running, abandon_on_cancel: caller back after the job?", waited > 5)
        release.set()  # let the abandoned job end, so the pool can close
        print("cancelled jobs counted:", pool.statistics().cancelled)


if __name__ == "__main__":
    trio.run(main)
