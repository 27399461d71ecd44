"""The child process of a ProcessHost worker: the one far side, carried over a pipe.

:func:`child_main` is a plain blocking loop (no event loop) that carries the
messages of :class:`._far.FarSide`, one at a time, in turns with the pool's
event loop (:mod:`._process` is that side). It imports neither trio nor anyio.

parent -> child: ``("load", loader_and_args, id, name)``, a call (a frame
of its own: :func:`._wire.call_frame`), ``("close", exc_info)``, and
``("cancel",)`` while a call runs; also ``("answer", outcome)`` to a child's
request. The loader, the call and the pool's exception travel pickled
inside the message, so the child can fail that one step (or tell the hook
what it could not rebuild) if they do not unpickle there.

child -> parent: ``("loaded", operations)`` or ``("failed", error)``; a
job's Outcome, a frame of its own that the parent may fail to unpickle
without losing the worker; ``("wait", key, timeout)`` and
``("loop", async_fn, args)`` (requests the parent answers for the job);
``("closed", error)``.
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
import signal
import threading
from collections.abc import Callable, Hashable
from typing import Any

from ._far import FarSide
from ._wire import dumps, read_call_frame


class _ChildView:
    """The job's view in the child: its requests go to the pool's side of the pipe."""

    def __init__(self, conn: Any, *, cancelled: bool) -> None:
        self._conn = conn
        self._cancelled = cancelled

    def cancel_requested(self) -> bool:
        while not self._cancelled and self._conn.poll():  # only ("cancel",) comes unasked
            self._read()
        return self._cancelled

    def wait_for(self, key: Hashable, timeout: float | None) -> tuple[Any, ...]:
        self._conn.send_bytes(dumps(("wait", key, timeout)))
        result: tuple[Any, ...] = self._answer().unwrap()
        return result

    def call_loop(self, async_fn: Callable[..., Any], args: tuple[Any, ...]) -> Any:
        self._conn.send_bytes(dumps(("loop", async_fn, args)))
        return self._answer()

    def _answer(self) -> Any:
        """The parent's answer (an Outcome) to the request just sent."""
        while True:
            message = self._read()
            if message[0] == "answer":
                return message[1]

    def _read(self) -> tuple[Any, ...]:
        message: tuple[Any, ...] = pickle.loads(self._conn.recv_bytes())
        if message[0] == "cancel":
            self._cancelled = True
        return message


def _watch_parent() -> None:
    """End the child as soon as the pool's process is gone (even mid-job).

    multiprocessing gives a spawned or forkserver child a sentinel of its
    parent: a pipe whose other end the parent holds (a process handle on
    Windows), so its end is seen at once, even while the parent is a zombie
    not yet reaped (which ``os.kill(parent, 0)`` would take for alive).
    """
    parent = multiprocessing.parent_process()
    if parent is not None:
        parent.join()
        os._exit(70)


def child_main(conn: Any) -> None:
    """The child process: load, serve calls, close, in turns with the pool's side."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    if hasattr(signal, "pthread_sigmask"):  # a pending one is dropped: it is ignored now
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    threading.Thread(target=_watch_parent, daemon=True).start()
    far = FarSide()
    try:
        while True:
            try:
                frame = conn.recv_bytes()
            except EOFError:
                return  # the pool's side is gone
            call = read_call_frame(frame)
            if call is not None:
                payload, cancelled = call
                conn.send_bytes(far.call(payload, _ChildView(conn, cancelled=cancelled)))
                continue
            message = pickle.loads(frame)
            kind = message[0]
            if kind == "load":
                conn.send_bytes(dumps(far.load(*message[1:])))
            elif kind == "close":
                conn.send_bytes(dumps(far.close(message[1])))
                return
            # ("cancel",) for a call that has already ended: nothing to do.
    finally:
        conn.close()
