"""The web-service example, served for real: uvicorn on asyncio, hypercorn on trio.

Each test starts ``examples/web_service.py serve`` in a subprocess on a free
loopback port, talks to it with httpx, stops it with Ctrl-C (SIGINT to its
own pid) and reads what it printed: every wait is on a line the server
prints, bounded by a timeout; nothing waits on the clock.
"""

from __future__ import annotations

import contextlib
import importlib.util
import random
import re
import signal
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import anyio
import httpx
import pytest
import trio
from starlette.requests import Request

import trio_pool

from helpers import TIMEOUT, Gate, wait_in_thread

EXAMPLE = Path(__file__).parent.parent / "examples" / "web_service.py"
# Starting or stopping a Python process on a loaded machine: only a bug waits this long.
PROCESS_TIMEOUT = 60
SERVERS = ["uvicorn", "hypercorn"]  # on asyncio, on trio


def load_example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("web_service", EXAMPLE)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


web_service = load_example()


class Served:
    """The example serving in a subprocess, its output read line by line by threads."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.process = process
        self.url = ""
        self.lines: list[str] = []
        self.stderr = ""
        self._ended = False  # all of stdout read
        self._changed = threading.Condition()
        self._readers = [
            threading.Thread(target=self._read_stdout, daemon=True),
            threading.Thread(target=self._read_stderr, daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    def _read_stdout(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            with self._changed:
                self.lines.append(line.rstrip("\n"))
                self._changed.notify_all()
        with self._changed:
            self._ended = True
            self._changed.notify_all()

    def _read_stderr(self) -> None:
        assert self.process.stderr is not None
        self.stderr = self.process.stderr.read()

    def wait_for(self, pattern: str, timeout: float = PROCESS_TIMEOUT) -> re.Match[str]:
        """The first line the server printed that matches ``pattern``; wait for it if need be."""
        with self._changed:
            match: re.Match[str] | None = None

            def found() -> bool:
                nonlocal match
                match = next(filter(None, (re.fullmatch(pattern, x) for x in self.lines)), None)
                return match is not None or self._ended

            assert self._changed.wait_for(found, timeout), f"no line {pattern!r}: {self.lines}"
        if match is None:
            self.join_readers()
            raise AssertionError(f"the server ended without a line {pattern!r}: {self.stderr}")
        return match

    def ctrl_c(self) -> int:
        """Send Ctrl-C to the server's own pid; its exit code, once all its output is read."""
        self.process.send_signal(signal.SIGINT)
        returncode = self.process.wait(timeout=PROCESS_TIMEOUT)
        self.join_readers()
        return returncode

    def join_readers(self) -> None:
        for reader in self._readers:
            reader.join(PROCESS_TIMEOUT)
            assert not reader.is_alive()


@contextlib.contextmanager
def serving(
    server: str, db: Path, *, workers: int, options: tuple[str, ...] = ()
) -> Iterator[Served]:
    """Serve the example with ``server``; kill it at the end if it is still alive."""
    command = [sys.executable, str(EXAMPLE), "serve", "--server", server, "--port", "0"]
    command += ["--db", str(db), "--workers", str(workers), *options]
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as process:
        served = Served(process)
        try:
            served.url = served.wait_for(r"listening on (http://127\.0\.0\.1:\d+)")[1]
            served.wait_for(rf"pool open: {workers} workers")
            yield served
        finally:
            if process.poll() is None:
                process.kill()
            process.wait(timeout=PROCESS_TIMEOUT)
            served.join_readers()
    assert process.poll() is not None


def check_clean_shutdown(served: Served, returncode: int, worker_ids: list[int]) -> re.Match[str]:
    """Ctrl-C ended the server cleanly, every worker's hook ran; the pool's last line."""
    # Ctrl-C is a graceful shutdown for both servers. Left alone, uvicorn's
    # Server.run() raises KeyboardInterrupt again after it (exit code -2); the
    # example ignores it there, as uvicorn.run() and uvicorn's command line do.
    assert returncode == 0, served.stderr
    assert "Traceback" not in served.stderr, served.stderr
    closed = [int(m[1]) for x in served.lines if (m := re.fullmatch(r"worker (\d+): .*closed", x))]
    assert sorted(closed) == sorted(worker_ids)  # one connection closed per worker
    last = served.wait_for(r"pool closed: (\d+) workers stopped; jobs: (.*)")
    assert int(last[1]) == len(worker_ids)
    assert served.lines[-1] == last[0]  # the hooks ran before the pool's block ended
    return last


def job_counts(last: re.Match[str]) -> dict[str, int]:
    return {k: int(v) for v, k in (x.split() for x in last[2].split(", "))}


async def transfer_concurrently(
    url: str, accounts: list[str], start: int, count: int
) -> tuple[list[int], dict[int, tuple[str, str, int]]]:
    """Open the accounts, make ``count`` concurrent transfers; the worker ids, the acknowledged."""
    acknowledged: dict[int, tuple[str, str, int]] = {}
    rng = random.Random(1)  # a fixed set of transfers, some of them refused
    plan: list[tuple[str, str, int]] = []
    for _ in range(count):
        source, target = rng.sample(accounts, 2)
        plan.append((source, target, rng.randint(1, start // 2)))
    async with httpx.AsyncClient(base_url=url, timeout=PROCESS_TIMEOUT) as client:
        for name in accounts:
            response = await client.post(f"/accounts/{name}", json={"amount": start})
            assert response.json() == {"name": name, "balance": start}

        async def transfer(source: str, target: str, amount: int) -> None:
            body = {"source": source, "target": target, "amount": amount}
            response = await client.post("/transfer", json=body)
            if response.status_code == 200:
                acknowledged[response.json()["id"]] = (source, target, amount)
            else:
                assert response.status_code == 409, response.text  # not enough money

        async with trio.open_nursery() as nursery:
            for source, target, amount in plan:
                nursery.start_soon(transfer, source, target, amount)
        balances = [(await client.get(f"/balance/{name}")).json()["balance"] for name in accounts]
        assert sum(balances) == start * len(accounts)
        assert (await client.get("/balance/nobody")).status_code == 404
        stats = (await client.get("/stats")).json()
    assert stats["busy"] == stats["queued"] == 0
    return stats["worker_ids"], acknowledged


@pytest.mark.parametrize("server", SERVERS)
def test_concurrent_transfers_are_never_lost(server: str, tmp_path: Path) -> None:
    accounts, start, count = ["alice", "bob", "carol", "dave", "erin"], 1000, 200
    db = tmp_path / "bank.db"
    with serving(server, db, workers=4) as served:
        worker_ids, acknowledged = trio.run(
            transfer_concurrently, served.url, accounts, start, count
        )
        returncode = served.ctrl_c()
    counts = job_counts(check_clean_shutdown(served, returncode, worker_ids))
    assert len(worker_ids) == 4
    assert 0 < len(acknowledged) < count  # some refused, so both paths ran
    assert counts == {  # deposits and balances; transfers refused, and "nobody"'s balance
        "completed": 2 * len(accounts) + len(acknowledged),
        "failed": count - len(acknowledged) + 1,
        "cancelled": 0,
    }

    # The file, read after the server has ended: exactly the acknowledged
    # transfers, and each balance is what they add up to.
    expected = dict.fromkeys(accounts, start)
    for source, target, amount in acknowledged.values():
        expected[source] -= amount
        expected[target] += amount
    with contextlib.closing(sqlite3.connect(db)) as conn:
        rows = conn.execute("select id, source, target, amount from transfers").fetchall()
        balances = dict(conn.execute("select name, balance from accounts").fetchall())
    assert {i: (s, t, a) for i, s, t, a in rows} == acknowledged
    assert balances == expected
    assert sum(balances.values()) == start * len(accounts)


async def wait_for_stats(client: httpx.AsyncClient, key: str, value: int) -> None:
    """Poll the pool's statistics until ``key`` is ``value``: no line marks these moments."""
    with trio.fail_after(PROCESS_TIMEOUT):
        while (await client.get("/stats")).json()[key] != value:
            await trio.sleep(0.01)


async def leave_slow_requests(served: Served) -> list[int]:
    """One slow request runs, a second waits in the queue; both clients leave."""
    async with httpx.AsyncClient(base_url=served.url, timeout=PROCESS_TIMEOUT) as client:
        worker_ids: list[int] = (await client.get("/stats")).json()["worker_ids"]
        async with trio.open_nursery() as nursery:
            running = trio.CancelScope()
            queued = trio.CancelScope()

            async def slow(scope: trio.CancelScope) -> None:
                with scope:  # the client gives up: httpx closes the connection
                    await client.get("/slow", params={"seconds": 3600})
                    raise AssertionError("a slow request of an hour ended")

            nursery.start_soon(slow, running)
            started = await trio.to_thread.run_sync(
                served.wait_for, r"worker (\d+): slow .*started"
            )
            nursery.start_soon(slow, queued)
            await wait_for_stats(client, "queued", 1)
            queued.cancel()  # first, so that its job cannot start in the running one's place
            await wait_for_stats(client, "cancelled", 1)
            running.cancel()
        await trio.to_thread.run_sync(
            served.wait_for, rf"worker {started[1]}: slow job stopped after \d+ steps"
        )
    return worker_ids


@pytest.mark.parametrize("server", SERVERS)
def test_a_departed_clients_job_is_cancelled(server: str, tmp_path: Path) -> None:
    with serving(server, tmp_path / "bank.db", workers=1) as served:
        worker_ids = trio.run(leave_slow_requests, served)
        returncode = served.ctrl_c()
    counts = job_counts(check_clean_shutdown(served, returncode, worker_ids))
    # The running job noticed (check_cancelled) and stopped; the queued one never ran.
    assert counts == {"completed": 0, "failed": 0, "cancelled": 2}
    assert len([x for x in served.lines if "slow job started" in x]) == 1


async def shed_a_request(served: Served) -> list[int]:
    """The worker runs a slow request; with max_wait=0 the next one is shed at once."""
    async with httpx.AsyncClient(base_url=served.url, timeout=PROCESS_TIMEOUT) as client:
        worker_ids: list[int] = (await client.get("/stats")).json()["worker_ids"]
        async with trio.open_nursery() as nursery:

            async def slow() -> None:
                await client.get("/slow", params={"seconds": 3600})
                raise AssertionError("a slow request of an hour ended")  # pragma: no cover

            nursery.start_soon(slow)
            await trio.to_thread.run_sync(served.wait_for, r"worker \d+: slow .*started")
            shed = await client.get("/balance/alice")  # no worker is free: it never runs
            assert shed.status_code == 503
            assert shed.json() == {"error": "busy, try again"}
            stats = (await client.get("/stats")).json()
            assert (stats["queued"], stats["busy"], stats["cancelled"]) == (0, 1, 1)
            nursery.cancel_scope.cancel()  # the client leaves: its job is cancelled
        await wait_for_stats(client, "cancelled", 2)
    return worker_ids


@pytest.mark.parametrize("server", SERVERS)
def test_a_full_pool_sheds_requests_with_a_503(server: str, tmp_path: Path) -> None:
    options = ("--queue-size", "1", "--max-wait", "0")
    with serving(server, tmp_path / "bank.db", workers=1, options=options) as served:
        worker_ids = trio.run(shed_a_request, served)
        returncode = served.ctrl_c()
    counts = job_counts(check_clean_shutdown(served, returncode, worker_ids))
    assert counts == {"completed": 0, "failed": 0, "cancelled": 2}


# --- the disconnect watcher, on its own, on every loop ------------------------


def request_with(*messages: dict[str, Any], then: anyio.Event | None = None) -> Request:
    """A request whose ``receive()`` gives ``messages``, then a disconnect once ``then`` is set."""
    queue = list(messages)

    async def receive() -> dict[str, Any]:
        if queue:
            return queue.pop(0)
        if then is None:
            await anyio.sleep_forever()
        else:
            await then.wait()
        return {"type": "http.disconnect"}

    return Request({"type": "http", "headers": []}, receive)


BODY_DONE = {"type": "http.request", "body": b"", "more_body": False}


async def test_the_watcher_cancels_a_running_job_when_the_client_leaves(backend: str) -> None:
    gate = Gate(cooperative=True)  # the job runs until it is told to stop
    job_entered = anyio.Event()
    request = request_with(BODY_DONE, then=job_entered)
    async with trio_pool.Pool(workers=1) as pool, anyio.create_task_group() as tg:

        async def tell_when_entered() -> None:
            await wait_in_thread(gate.entered)
            job_entered.set()

        tg.start_soon(tell_when_entered)
        with anyio.fail_after(TIMEOUT):
            async with web_service.cancel_on_disconnect(request) as scope:
                await pool.run(gate.enter)
                raise AssertionError("the block went on after the client left")
        assert scope.cancelled_caught
        assert pool.statistics().cancelled == 1


async def test_the_watcher_stops_when_the_block_ends(backend: str) -> None:
    request = request_with(BODY_DONE)  # the client stays
    with anyio.fail_after(TIMEOUT):
        async with web_service.cancel_on_disconnect(request) as scope:
            await anyio.lowlevel.checkpoint()
    assert not scope.cancel_called


async def test_an_error_in_the_block_comes_out_as_itself(backend: str) -> None:
    request = request_with(BODY_DONE)
    with anyio.fail_after(TIMEOUT), pytest.raises(ZeroDivisionError):
        async with web_service.cancel_on_disconnect(request):
            await anyio.lowlevel.checkpoint()
            1 / 0  # noqa: B018
