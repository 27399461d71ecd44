"""The far side: what a worker runs where its interface lives, out of the pool's thread.

A child process (:func:`._process.child_main`) and a Ray actor
(:class:`._actor.RayWorker`) each hold one :class:`FarSide` and only carry its
messages: it loads the interface, runs the calls (the cancel request and the
in-job functions through the job's view the carrier gives it), and closes
it once with the pool's exception. What does not unpickle here fails that
one step with its own error. It imports neither trio nor anyio.
"""

from __future__ import annotations

import pickle
from typing import Any

from .._in_worker import JobView, WorkerInfo
from ._thread import InThread
from ._wire import encode_error, encode_value, portable, unpack_exc_info


class FarSide:
    """One worker's interface, far from the pool: load, calls in turn, close."""

    def __init__(self) -> None:
        self._host: InThread[bytes] | None = None

    def load(self, loader: bytes, worker_id: int, name: str) -> tuple[Any, ...]:
        """``("loaded", operations)``, or ``("failed", error)`` with the loader's own error."""
        try:
            function, args = pickle.loads(loader)
            host = InThread(function, args, value=encode_value, error=encode_error)
            host.load(WorkerInfo(worker_id, name))
        except BaseException as exc:
            return ("failed", portable(exc))
        self._host = host
        return ("loaded", host.operations)

    def call(self, payload: bytes | memoryview, job: JobView) -> bytes:
        """One call's Outcome, as a frame :func:`._wire.decode_outcome` reads.

        A call that does not unpickle here (a module the far side cannot
        import) fails alone; nothing of the call is held once it returns.
        """
        assert self._host is not None
        try:
            fn, args, kwargs, with_interface = pickle.loads(payload)
        except BaseException as exc:
            return encode_error(exc)
        return self._host.execute(fn, args, kwargs, with_interface, job)

    def close(self, exc_info: bytes) -> tuple[Any, ...]:
        """Run the exit hook once, told the pool's exception: ``("closed", error or None)``."""
        host, self._host = self._host, None
        error = None if host is None else host.close(unpack_exc_info(exc_info))
        return ("closed", None if error is None else portable(error))
