"""One worker: a thread that loads an interface, runs jobs, and runs its hook."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ._host import NO_EXC, ExcInfo, ThreadHost
from ._in_worker import WorkerInfo, context

if TYPE_CHECKING:
    from ._channel import Channel
    from ._job import Job

logger = logging.getLogger("trio_pool")


class Worker:
    """A worker thread's state, shared by the thread and the pool.

    ``state`` (starting, idle, stopping, stopped), ``job`` (the job it runs)
    and ``jobs_done`` are written by the thread, the last two under the
    channel's lock, and read by the pool for statistics.
    """

    def __init__(
        self,
        id: int,  # noqa: A002
        name: str,
        host: ThreadHost,
        channel: Channel,
        on_loaded: Callable[[Worker, BaseException | None], None],
    ) -> None:
        self.info = WorkerInfo(id, name)
        self.host = host
        self.state = "starting"
        self.job: Job[Any] | None = None
        self.jobs_done = 0
        #: Why the worker stops, as its hook will be told (set by the pool).
        self.exit_info: ExcInfo = NO_EXC
        self._channel = channel
        self._on_loaded = on_loaded

    @property
    def id(self) -> int:
        return self.info.id

    def main(self) -> BaseException | None:
        """The thread's body. Returns what the exit hook raised, if anything.

        A loader's error is reported through ``on_loaded`` instead.
        """
        thread = threading.current_thread()
        old_name, thread.name = thread.name, self.info.name
        context.worker = self.info
        try:
            return self._serve()
        finally:
            context.worker = None
            context.interface = None
            context.has_interface = False
            thread.name = old_name

    def _serve(self) -> BaseException | None:
        host, channel = self.host, self._channel
        try:
            host.load()
        except BaseException as exc:
            logger.error("worker %s: the interface failed to load", self.info.name, exc_info=exc)
            self.state = "stopped"
            self._on_loaded(self, exc)
            return None
        context.interface = host.interface
        context.has_interface = True
        logger.debug("worker %s started", self.info.name)
        self.state = "idle"
        self._on_loaded(self, None)
        while (job := channel.take(self)) is not None:
            context.job = job
            assert job._fn is not None
            result = host.execute(job._fn, job._with_interface, job._args, job._kwargs)
            context.job = None
            job._fn, job._args, job._kwargs = None, (), {}
            channel.finish(self, result)
            del job, result  # hold nothing while waiting for the next job
        self.state = "stopping"
        error = host.close(self.exit_info)
        self.state = "stopped"
        if error is not None:
            logger.error("worker %s: the exit hook raised", self.info.name, exc_info=error)
        logger.debug("worker %s stopped", self.info.name)
        return error
