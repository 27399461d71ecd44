"""One worker: a thread that loads an interface, runs jobs, and runs its hook."""

from __future__ import annotations

import functools
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
        *,
        loaded: Callable[[Worker, BaseException | None], None],
        exited: Callable[[Worker, BaseException | None], None],
    ) -> None:
        self.info = WorkerInfo(id, name)
        self.host = host
        self.state = "starting"
        self.job: Job[Any] | None = None
        self.jobs_done = 0
        #: Why the worker stops, as its hook will be told (set by the pool).
        self.exit_info: ExcInfo = NO_EXC
        self._channel = channel
        self._loaded = loaded
        self._exited = exited

    @property
    def id(self) -> int:
        return self.info.id

    def main(self) -> None:
        """The thread's body.

        It reports to the loop (through the channel's ``post``) once its
        interface has loaded or failed to, ``loaded(worker, error)``, and, as
        its last act, ``exited(worker, hook_error)``.
        """
        thread = threading.current_thread()
        old_name, thread.name = thread.name, self.info.name
        context.worker = self.info
        hook_error: BaseException | None = None
        try:
            hook_error = self._serve()
        finally:
            context.worker = None
            context.interface = None
            context.has_interface = False
            thread.name = old_name
            self._channel.post(functools.partial(self._exited, self, hook_error))

    def _serve(self) -> BaseException | None:
        host, channel = self.host, self._channel
        try:
            host.load()
        except BaseException as exc:
            logger.error("worker %s: the interface failed to load", self.info.name, exc_info=exc)
            self.state = "stopped"
            self._channel.post(functools.partial(self._loaded, self, exc))
            return None
        context.interface = host.interface
        context.has_interface = True
        logger.debug("worker %s started", self.info.name)
        self.state = "idle"
        self._channel.post(functools.partial(self._loaded, self, None))
        while (job := channel.take(self)) is not None:
            context.job = job
            assert job._fn is not None
            result = job._context.run(
                host.execute, job._fn, job._with_interface, job._args, job._kwargs
            )
            context.job = None
            job._fn, job._args, job._kwargs = None, (), {}
            channel.finish(self, result)
            del job, result  # hold nothing while waiting for the next job
        error = host.close(self.exit_info)
        self.state = "stopped"
        if error is not None:
            logger.error("worker %s: the exit hook raised", self.info.name, exc_info=error)
        logger.debug("worker %s stopped", self.info.name)
        return error
