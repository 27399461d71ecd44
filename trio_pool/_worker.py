"""One worker: a thread that loads an interface, runs jobs, and runs its hook."""

from __future__ import annotations

import functools
import logging
import threading
from collections import deque
from collections.abc import Callable, Hashable
from typing import TYPE_CHECKING, Any

from ._host import NO_EXC, ExcInfo, ThreadHost
from ._in_worker import WorkerInfo, context

if TYPE_CHECKING:
    from ._backend import Event
    from ._channel import Channel
    from ._job import Job, LoopCall

logger = logging.getLogger("trio_pool")


class Worker:
    """A worker thread's state, shared by the thread and the pool.

    The thread writes ``state`` (starting, idle, stopping, stopped) and, under
    the channel's lock, ``job`` (the job it runs) and ``jobs_done``. The pool
    writes ``leased`` and ``stop_requested`` under that lock, and the rest in
    the loop thread.
    """

    def __init__(
        self,
        id: int,  # noqa: A002
        name: str,
        host: ThreadHost,
        channel: Channel,
        *,
        loaded: Event,
        exited: Event,
        on_exit: Callable[[Worker], None],
        report: Callable[[Callable[[], object]], None],
        from_loop: Callable[[Job[Any], LoopCall], None],
    ) -> None:
        self.info: WorkerInfo = WorkerInfo(id, name)
        self.host: ThreadHost = host
        self.state: str = "starting"
        self.job: Job[Any] | None = None
        self.jobs_done: int = 0
        self.direct: deque[Job[Any]] = deque()  # jobs for this worker alone
        self.leased: bool = False
        self.stop_requested: bool = False
        self.called: bool = False  # woken for the shared queue (the channel's count)
        self.wakeup: threading.Condition = channel.new_condition()
        self.mailbox: dict[Hashable, deque[tuple[Any, ...]]] = {}
        #: Why the worker stops, as its hook will be told (set by the pool).
        self.exit_info: ExcInfo = NO_EXC
        # Loop side: set once the interface has loaded (or failed: load_error),
        # and, by on_exit, once the thread has ended (hook_error: what its
        # hook raised).
        self.loaded = loaded
        self.exited = exited
        self.load_error: BaseException | None = None
        self.hook_error: BaseException | None = None
        self.idle_since: float = 0.0  # loop clock, for autoscaling
        self.stop_owned: bool = False  # a resize collects its hook error
        self._channel = channel
        self._report = report
        self._on_exit = on_exit
        self._from_loop = from_loop

    @property
    def id(self) -> int:
        return self.info.id

    @property
    def serving(self) -> bool:
        """Loaded (or loading) and not asked to stop."""
        return self.state in ("starting", "idle") and not self.stop_requested

    def main(self) -> None:
        """The thread's body.

        Reports to the loop through ``report`` once its interface has loaded
        (or failed to), and, as its last act, that it has ended (``on_exit``).
        """
        thread = threading.current_thread()
        old_name, thread.name = thread.name, self.info.name
        context.worker = self.info
        context.runtime = self
        try:
            self.hook_error = self._serve()
        finally:
            context.worker = context.runtime = None
            context.interface = None
            context.has_interface = False
            thread.name = old_name
            self._report(functools.partial(self._on_exit, self))

    def _serve(self) -> BaseException | None:
        host, channel = self.host, self._channel
        try:
            host.load()
        except BaseException as exc:
            logger.error("worker %s: the interface failed to load", self.info.name, exc_info=exc)
            self.state = "stopped"
            self.load_error = exc
            self._report(self.loaded.set)
            return None
        context.interface = host.interface
        context.has_interface = True
        logger.debug("worker %s started", self.info.name)
        self.state = "idle"
        self._report(self.loaded.set)
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

    # --- what trio_pool.wait() and from_loop() call, in this thread ---------

    def wait_for(self, job: Job[Any], key: Hashable, timeout: float | None) -> tuple[Any, ...]:
        return self._channel.wait_for(self, job, key, timeout)

    def operation(self, name: str) -> Callable[..., Any]:
        return self.host.operation(name)

    def call_loop(self, job: Job[Any], call: LoopCall) -> None:
        self._report(functools.partial(self._from_loop, job, call))
