"""Ctrl-C in a program whose pool runs on Ray: every hook runs in its actor, nothing is left.

The program runs in a subprocess (a session of its own, with its own Ray),
so this module needs no cluster.
"""

from __future__ import annotations

import os
import signal
import subprocess
import textwrap
from pathlib import Path

from helpers import FileGate, assert_ended_by_ctrl_c, python_with_ctrl_c
from test_ray_example import no_actor_left, ray_cluster, stop_what_is_left

__all__ = ["no_actor_left", "ray_cluster"]  # conftest's, replaced: this module needs no Ray

SCRIPT = textwrap.dedent(
    """
    import os, sys, time
    import ray, trio, trio_pool

    record = sys.argv[1]

    class Iface:
        def __exit__(self, exc_type, exc, tb):
            with open(record, "a") as file:
                file.write(f"hook {os.getpid()} {getattr(exc_type, '__name__', None)}\\n")

    def spin():
        while True:  # a long job that stops when asked
            trio_pool.check_cancelled()
            time.sleep(0.005)

    async def main():
        host = trio_pool.RayHost(grace_period=30)
        async with trio_pool.Pool(Iface, workers=2, host=host) as pool:
            async with trio.open_nursery() as nursery:
                for _ in range(2):
                    nursery.start_soon(pool.run, spin)
                while pool.statistics().busy < 2:
                    await trio.sleep(0.01)
                pids = " ".join(str(w.pid) for w in pool.statistics().worker_states)
                print("ready", pids, flush=True)
                await trio.sleep_forever()  # until Ctrl-C

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    trio.run(main)
    """
)


def test_ctrl_c_runs_every_hook_in_its_actor_and_leaves_nothing(tmp_path: Path) -> None:
    record = tmp_path / "record"
    process = subprocess.Popen(
        python_with_ctrl_c(SCRIPT, str(record)),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        assert process.stdout is not None
        ready = process.stdout.readline().split()
        assert ready[:1] == ["ready"], process.stderr.read() if process.stderr else ""
        os.kill(process.pid, signal.SIGINT)  # to the program only, not to its Ray
        _, stderr = process.communicate(timeout=120)
    finally:
        process.kill()
        process.wait()
    left = stop_what_is_left(process.pid)
    assert process.returncode != 0
    assert_ended_by_ctrl_c("trio", stderr)
    hooks = sorted(record.read_text().splitlines())
    # Each got the block's exception: the nursery's group around the KeyboardInterrupt.
    assert hooks == sorted(f"hook {pid} BaseExceptionGroup" for pid in ready[1:])
    assert left == [], "the program left processes running"


SECOND_CTRL_C = textwrap.dedent(
    """
    import os, sys, time
    from pathlib import Path
    import ray, trio, trio_pool

    record = sys.argv[1]

    class Iface:
        def __exit__(self, exc_type, exc, tb):
            Path(record + ".hook").touch()

    def job():
        Path(record + ".running").touch()  # the test sends the first Ctrl-C
        told = False
        while True:  # never returns, never stops
            if not told:
                try:
                    trio_pool.check_cancelled()
                except trio_pool.JobCancelled:
                    told = True
                    Path(record + ".told").touch()  # the exit waits: the second Ctrl-C
            time.sleep(0.005)

    async def main():
        try:
            async with trio_pool.Pool(Iface, workers=1, host=trio_pool.RayHost()) as pool:
                await pool.submit(job)
                await trio.sleep_forever()
        finally:
            print("the pool's exit is over", flush=True)

    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False)
    trio.run(main)
    """
)


def test_a_second_ctrl_c_kills_an_actor_still_running_its_job(tmp_path: Path) -> None:
    record = str(tmp_path / "record")
    process = subprocess.Popen(
        python_with_ctrl_c(SECOND_CTRL_C, record),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        for step in ("running", "told"):
            assert FileGate(f"{record}.{step}").wait(120), f"the job never said {step}"
            os.kill(process.pid, signal.SIGINT)  # to the program only, not to its Ray
        stdout, stderr = process.communicate(timeout=120)
    finally:
        process.kill()
        process.wait()
    left = stop_what_is_left(process.pid)
    assert process.returncode != 0
    assert_ended_by_ctrl_c("trio", stderr)
    assert stdout.splitlines() == ["the pool's exit is over"]
    assert not os.path.exists(f"{record}.hook")  # killed in its job
    assert left == [], "the program left processes running"
