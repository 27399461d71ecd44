"""A web service on a pool: a Starlette app with one SQLite connection per worker.

The app's lifespan opens the pool, so it lives as long as the server; each
request calls it. A transfer between two accounts is one job, so one
transaction; a slow request stops early when its client disconnects.

Run it with no arguments for a short demonstration: it serves the app with
uvicorn on a free loopback port, in this process, makes a few requests with
httpx and shuts down. Or serve it until Ctrl-C::

    python examples/web_service.py serve --server uvicorn --port 8000
    python examples/web_service.py serve --server hypercorn --port 8000  # on trio

(``--db PATH`` picks the database file; the servers' own command lines find
it in the ``WEB_SERVICE_DB`` environment variable:
``uvicorn --app-dir examples web_service:app``,
``hypercorn --worker-class trio --bind 127.0.0.1:8000 examples/web_service:app``.)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import os
import signal
import socket
import sqlite3
import tempfile
import threading
import time
import typing
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import hypercorn
import hypercorn.trio
import hypercorn.typing
import trio
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

import trio_pool

_printing = threading.Lock()


def say(line: str) -> None:
    """Print a whole line, even while other threads print."""
    with _printing:
        print(line, flush=True)


class InsufficientFundsError(Exception):
    pass


class Db:
    """One SQLite connection, made, used and closed in its worker's thread."""

    def __init__(self, path: str) -> None:
        # Autocommit mode: a statement is its own transaction unless we begin one.
        # timeout: wait up to 10 s for another connection's write lock.
        self.conn = sqlite3.connect(path, timeout=10, isolation_level=None)

    def deposit(self, name: str, amount: int) -> int:
        """Add ``amount`` to an account (opened if new); return its balance."""
        self.conn.execute(
            "insert into accounts values (?, ?)"
            " on conflict (name) do update set balance = balance + excluded.balance",
            (name, amount),
        )  # one statement: one transaction
        return self.balance(name)  # read after it (later transfers included)

    def balance(self, name: str) -> int:
        row = self.conn.execute("select balance from accounts where name = ?", (name,)).fetchone()
        if row is None:
            raise LookupError(f"no account {name!r}")
        balance: int = row[0]
        return balance

    def transfer(self, source: str, target: str, amount: int) -> int:
        """Move ``amount`` from one account to another, all or nothing; the transfer's id."""
        self.conn.execute("begin immediate")  # take the write lock now, not halfway
        try:
            debit = self.conn.execute(
                "update accounts set balance = balance - ? where name = ? and balance >= ?",
                (amount, source, amount),
            )
            if debit.rowcount != 1:
                raise InsufficientFundsError(f"{source!r} has no account or less than {amount}")
            credit = self.conn.execute(
                "update accounts set balance = balance + ? where name = ?", (amount, target)
            )
            if credit.rowcount != 1:
                raise LookupError(f"no account {target!r}")
            record = self.conn.execute(
                "insert into transfers (source, target, amount) values (?, ?, ?)",
                (source, target, amount),
            )
            self.conn.execute("commit")
        except BaseException:
            if self.conn.in_transaction:
                self.conn.execute("rollback")
            raise
        assert record.lastrowid is not None
        return record.lastrowid

    def __exit__(self, *exc_info: object) -> None:
        self.conn.close()  # in the thread that made it, as sqlite3 requires
        say(f"worker {trio_pool.current_worker().id}: connection closed")


def create_schema(path: str) -> None:
    with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as conn:
        # WAL: readers do not block the writer, so several connections share the file.
        conn.execute("pragma journal_mode = wal")
        conn.execute(
            "create table if not exists accounts"
            " (name text primary key, balance integer not null check (balance >= 0))"
        )
        conn.execute(
            "create table if not exists transfers (id integer primary key,"
            " source text not null, target text not null, amount integer not null)"
        )


def crunch(seconds: float) -> int:
    """A long job: it works in steps, and stops early if its caller is gone."""
    worker = trio_pool.current_worker().id
    say(f"worker {worker}: slow job started")
    steps = 0
    deadline = time.monotonic() + seconds
    try:
        while time.monotonic() < deadline:
            trio_pool.check_cancelled()  # raises JobCancelled once the caller is cancelled
            time.sleep(0.01)  # a step of blocking work
            steps += 1
    except trio_pool.JobCancelled:
        say(f"worker {worker}: slow job stopped after {steps} steps")
        raise
    return steps


@contextlib.asynccontextmanager
async def cancel_on_disconnect(request: Request) -> AsyncIterator[anyio.CancelScope]:
    """Cancel the ``async with`` block if the client disconnects meanwhile.

    uvicorn and hypercorn do not cancel a request's task when its client goes
    away: they send ``{"type": "http.disconnect"}`` to the app's ``receive()``.
    A task waits for it and cancels the block, so the pool's cancellation rules
    apply: a queued job is removed, a running one is told (``check_cancelled()``).
    The cancellation ends at the block: ``scope.cancel_called`` tells if it came.

    Enter it only once the request's body has been read (a GET has none): the
    task consumes what ``receive()`` gives, body messages too.
    """

    async def watch(scope: anyio.CancelScope) -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass  # the (empty) rest of the body
        scope.cancel()

    error: Exception | None = None
    with anyio.CancelScope() as scope:  # cancelled if the client leaves
        async with anyio.create_task_group() as tg:
            tg.start_soon(watch, scope)
            try:
                yield scope
            except Exception as exc:  # raised below as itself, not in an ExceptionGroup
                error = exc
            tg.cancel_scope.cancel()  # the block is over: stop watching
    if error is not None:
        raise error


def pool_of(request: Request) -> trio_pool.Pool[Db]:
    pool: trio_pool.Pool[Db] = request.state.pool
    return pool


async def deposit(request: Request) -> JSONResponse:
    name = request.path_params["name"]
    amount = int((await request.json())["amount"])
    if amount <= 0:
        return JSONResponse({"error": "amount must be positive"}, status_code=400)
    balance = await pool_of(request).call_method(Db.deposit, name, amount)
    return JSONResponse({"name": name, "balance": balance})


async def transfer(request: Request) -> JSONResponse:
    body = await request.json()
    amount = int(body["amount"])
    if amount <= 0:
        return JSONResponse({"error": "amount must be positive"}, status_code=400)
    try:  # one job, so one transaction: it never runs, or runs to its end
        transfer_id = await pool_of(request).call_method(
            Db.transfer, str(body["source"]), str(body["target"]), amount
        )
    except InsufficientFundsError as error:
        return JSONResponse({"error": str(error)}, status_code=409)
    except LookupError as error:
        return JSONResponse({"error": str(error)}, status_code=404)
    return JSONResponse({"id": transfer_id})


async def balance(request: Request) -> JSONResponse:
    name = request.path_params["name"]
    try:
        value = await pool_of(request).call_method(Db.balance, name)
    except LookupError as error:
        return JSONResponse({"error": str(error)}, status_code=404)
    return JSONResponse({"name": name, "balance": value})


async def slow(request: Request) -> JSONResponse:
    seconds = float(request.query_params.get("seconds", "1"))
    async with cancel_on_disconnect(request):  # a GET: no body to read first
        steps = await pool_of(request).run(crunch, seconds)
        return JSONResponse({"steps": steps})
    return JSONResponse({"error": "client disconnected"}, status_code=499)  # nobody reads it


async def stats(request: Request) -> JSONResponse:
    s = pool_of(request).statistics()
    return JSONResponse(
        {
            "worker_ids": [w.id for w in s.worker_states],
            "busy": s.busy,
            "queued": s.queued,
            "waiting_for_room": s.waiting_for_room,
            "completed": s.completed,
            "failed": s.failed,
            "cancelled": s.cancelled,
        }
    )


async def busy(request: Request, error: Exception) -> JSONResponse:
    """No worker took the call within the pool's ``max_wait``: shed the request."""
    return JSONResponse({"error": "busy, try again"}, status_code=503)


def create_app(
    path: str, *, workers: int = 4, queue_size: int | None = None, max_wait: float | None = None
) -> Starlette:
    """The app; with ``max_wait``, a request no worker takes within that time gets a 503."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
        await trio_pool.run_in_thread(create_schema, path)
        async with trio_pool.Pool(
            Db, path, workers=workers, queue_size=queue_size, max_wait=max_wait
        ) as pool:
            say(f"pool open: {pool.worker_count} workers")
            yield {"pool": pool}  # request.state.pool, in every request
            say("shutting down: the pool finishes its jobs")
        # Every job has finished, and every worker has closed its connection.
        s = pool.statistics()
        jobs = f"{s.completed} completed, {s.failed} failed, {s.cancelled} cancelled"
        say(f"pool closed: {s.workers_stopped} workers stopped; jobs: {jobs}")

    return Starlette(
        routes=[
            Route("/accounts/{name}", deposit, methods=["POST"]),
            Route("/transfer", transfer, methods=["POST"]),
            Route("/balance/{name}", balance),
            Route("/slow", slow),
            Route("/stats", stats),
        ],
        lifespan=lifespan,
        exception_handlers={anyio.WouldBlock: busy},  # trio.WouldBlock is one too
    )


# For the servers' own command lines (see the module's docstring).
app = create_app(os.environ.get("WEB_SERVICE_DB", "web_service.db"))


def loopback_socket(port: int) -> socket.socket:
    """A listening socket: connections wait in its backlog until the server accepts."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", port))
    sock.listen()
    return sock


def serve_uvicorn(app: Starlette, port: int) -> None:
    server = uvicorn.Server(uvicorn.Config(app, lifespan="on", log_level="warning"))
    with loopback_socket(port) as sock:
        say(f"listening on http://127.0.0.1:{sock.getsockname()[1]}")
        # After a graceful shutdown on Ctrl-C, uvicorn raises the signal again
        # for its caller; uvicorn.run() and uvicorn's command line ignore it too.
        with contextlib.suppress(KeyboardInterrupt):
            server.run(sockets=[sock])


async def serve_hypercorn(app: Starlette, port: int) -> None:
    config = hypercorn.Config()
    config.bind = [f"127.0.0.1:{port}"]
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:

        async def shutdown_trigger() -> None:
            async for _ in signals:  # Ctrl-C starts a graceful shutdown
                return

        async with trio.open_nursery() as nursery:
            binds = await nursery.start(
                functools.partial(
                    hypercorn.trio.serve,
                    typing.cast(hypercorn.typing.ASGIFramework, app),
                    config,
                    shutdown_trigger=shutdown_trigger,
                )
            )
            say(f"listening on {binds[0]}")


async def demo(path: str) -> None:
    """Serve the app with uvicorn in this process, use it, and shut it down."""
    server = uvicorn.Server(uvicorn.Config(create_app(path), lifespan="on", log_level="warning"))
    names = ["alice", "bob", "carol"]
    with loopback_socket(0) as sock:
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        async with anyio.create_task_group() as tg:
            tg.start_soon(server.serve, [sock])
            async with httpx.AsyncClient(base_url=url) as client:
                for name in names:
                    response = await client.post(f"/accounts/{name}", json={"amount": 100})
                    response.raise_for_status()

                async def move(n: int) -> None:
                    source, target = names[n % 3], names[(n + 1) % 3]
                    body = {"source": source, "target": target, "amount": n % 3 + 1}
                    (await client.post("/transfer", json=body)).raise_for_status()

                async with anyio.create_task_group() as transfers:
                    for n in range(1, 31):
                        transfers.start_soon(move, n)
                balances = {n: (await client.get(f"/balance/{n}")).json()["balance"] for n in names}
                say(f"after 30 transfers: {balances}, total {sum(balances.values())}")

                async def leave_once_running(scope: anyio.CancelScope) -> None:
                    await wait_for_stats(client, "busy", 1)
                    scope.cancel()  # the client gives up: httpx closes the connection

                with anyio.CancelScope() as slow_request:
                    tg.start_soon(leave_once_running, slow_request)
                    await client.get("/slow", params={"seconds": 60}, timeout=None)
                await wait_for_stats(client, "cancelled", 1)
                say("the abandoned slow request's job was cancelled")
            server.should_exit = True  # what Ctrl-C does
    with contextlib.closing(sqlite3.connect(path)) as conn:
        (count,) = conn.execute("select count(*) from transfers").fetchone()
        (total,) = conn.execute("select sum(balance) from accounts").fetchone()
    say(f"in the file after shutdown: {count} transfers, total {total}")


async def wait_for_stats(client: httpx.AsyncClient, key: str, value: int) -> None:
    """Poll /stats until ``key`` reaches ``value`` (a deliberate poll, for the demo)."""
    with anyio.fail_after(10):
        while (await client.get("/stats")).json()[key] < value:  # noqa: ASYNC110
            await anyio.sleep(0.01)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command")
    serve = commands.add_parser("serve", help="serve the app until Ctrl-C")
    serve.add_argument("--server", choices=["uvicorn", "hypercorn"], default="uvicorn")
    serve.add_argument("--port", type=int, default=8000, help="0: any free port")
    serve.add_argument("--db", default=os.environ.get("WEB_SERVICE_DB", "web_service.db"))
    serve.add_argument("--workers", type=int, default=4)
    serve.add_argument("--queue-size", type=int, default=None)
    serve.add_argument("--max-wait", type=float, default=None, help="seconds; then 503")
    args = parser.parse_args()
    if args.command is None:
        with tempfile.TemporaryDirectory() as tmp:
            asyncio.run(demo(str(Path(tmp) / "bank.db")))
        return
    served = create_app(
        args.db, workers=args.workers, queue_size=args.queue_size, max_wait=args.max_wait
    )
    if args.server == "uvicorn":  # on asyncio
        serve_uvicorn(served, args.port)
    else:  # hypercorn, on trio
        trio.run(serve_hypercorn, served, args.port)


if __name__ == "__main__":
    main()
