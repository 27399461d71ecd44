"""A pool that lives as long as an ASGI app: opened at startup, closed at shutdown.

The app is a plain ASGI callable, and ``serve`` below plays the server's part
(what uvicorn or hypercorn do), so the file runs without either installed.
"""

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator
from typing import Any

import trio_pool

Scope = dict[str, Any]
Receive = Any
Send = Any


class Db:
    def __init__(self) -> None:
        self.conn = sqlite3.connect(":memory:")  # one connection per worker thread

    def query(self, sql: str, *params: object) -> list[tuple[object, ...]]:
        return self.conn.execute(sql, params).fetchall()

    def __exit__(self, *exc_info: object) -> None:
        self.conn.close()


@contextlib.asynccontextmanager
async def lifespan(app: object) -> AsyncIterator[dict[str, Any]]:
    """Starlette and FastAPI accept a function of this shape as ``lifespan=``."""
    async with trio_pool.Pool(Db, workers=4) as pool:
        yield {"pool": pool}  # the state every request sees
    print("pool closed: every connection closed in its own thread")


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        await receive()  # {"type": "lifespan.startup"}
        async with lifespan(app) as state:
            scope["state"].update(state)
            await send({"type": "lifespan.startup.complete"})
            await receive()  # {"type": "lifespan.shutdown"}
        await send({"type": "lifespan.shutdown.complete"})
    elif scope["type"] == "http":
        pool: trio_pool.Pool = scope["state"]["pool"]
        rows = await pool.interface.query("select ? * 2", int(scope["path"].strip("/")))
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": str(rows[0][0]).encode()})


async def serve() -> None:
    """What a server does: run the lifespan task, serve requests, shut down."""
    state: dict[str, Any] = {}
    to_app: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    from_app: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    lifespan_task = asyncio.create_task(
        app({"type": "lifespan", "state": state}, to_app.get, from_app.put)
    )
    await to_app.put({"type": "lifespan.startup"})
    print(await from_app.get())

    async def request(path: str) -> bytes:
        sent: list[dict[str, Any]] = []

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        scope = {"type": "http", "path": path, "state": dict(state)}
        await app(scope, None, send)
        return bytes(sent[-1]["body"])

    print(await asyncio.gather(*(request(f"/{n}") for n in range(5))))
    await to_app.put({"type": "lifespan.shutdown"})
    print(await from_app.get())
    await lifespan_task


if __name__ == "__main__":
    asyncio.run(serve())
