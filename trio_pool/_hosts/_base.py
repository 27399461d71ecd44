"""The host seam, and only it: what the pool asks of the place an interface lives.

:class:`HostChoice` is what ``Pool(host=...)`` takes; :class:`Host` is one
worker's interface, wherever it lives. What several hosts share besides
(checks, the cancel relay, a call) is in :mod:`._shared`.

Two kinds of worker, one contract. A thread-driven worker is a thread of
the pool: it takes jobs from the handoff and hands each to its :class:`Host`,
which builds the interface, runs calls against it and closes it, in that
thread (``_thread.InThread``), in a subinterpreter or in a Ray actor. A
loop-driven worker is a task of the event loop whose :class:`LoopHost`
sends each call to a child process and awaits the reply
(``_process.InProcess``). The pool side never touches the interface object:
a call names an operation or ships a function (with a flag asking the far
side to pass its interface first).

A :class:`Host` knows no event loop and no pool. It is called from its
worker's thread only, except :meth:`Host.interrupt`, which any thread may
call at any moment.
"""

from __future__ import annotations

import abc
from collections.abc import Awaitable, Callable, Hashable
from types import TracebackType
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

from .._in_worker import JobView, WorkerInfo

if TYPE_CHECKING:  # (a far side never loads outcome: it costs a subinterpreter 60 ms)
    import outcome


ExcInfo = tuple[type[BaseException] | None, BaseException | None, TracebackType | None]
NO_EXC: ExcInfo = (None, None, None)


class HostDied(Exception):  # noqa: N818 (it is an event, and a private one)
    """The far side of a host is gone (a killed process, a lost actor).

    Raised by :meth:`Host.execute`; the worker gives its job ``error`` (a
    :class:`~trio_pool.BrokenWorkerError`, or :class:`~trio_pool.JobCancelled`
    if the host killed it on purpose) and stops, without calling
    :meth:`Host.close` (there is nothing left to close); the pool replaces it.
    """

    def __init__(self, error: BaseException) -> None:
        super().__init__(str(error))
        self.error = error


class LoadInterrupted(Exception):  # noqa: N818 (an event, and a private one)
    """Raised by :meth:`Host.load` that :meth:`Host.interrupt` stopped.

    The worker never loaded, and that is no loader's error: the pool was
    stopping (it interrupts loads only when it is cancelled or failing).
    """


class Where(NamedTuple):
    """Where a worker's interface lives; each field None where it does not apply."""

    kind: str  # "thread", "interpreter", "process" or "actor": what a kill ends
    pid: int | None = None  # of the process that holds it (None before it starts)
    actor_id: str | None = None  # a Ray actor's, in hex
    node_id: str | None = None  # that actor's Ray node, in hex


class Host(Protocol):
    """One worker's interface, wherever it lives."""

    @property
    def operations(self) -> frozenset[str]:
        """The interface's operation names, known once :meth:`load` has returned."""
        ...

    def where(self) -> Where:
        """Where the interface lives (for statistics and log lines), any thread."""
        ...

    def load(self, worker: WorkerInfo) -> None:
        """Build the interface for ``worker``; raise the loader's own error if it fails.

        Raises:
            LoadInterrupted: if :meth:`interrupt` stopped it (a host whose
                load may wait a long time, for a cluster's resources, say).
        """
        ...

    def execute(
        self,
        fn: Callable[..., Any] | str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        with_interface: bool,
        job: JobView,
    ) -> outcome.Outcome[Any]:
        """Run one call and capture its result, whatever it raises.

        ``fn`` is a function or the name of an operation; with
        ``with_interface`` the interface is passed first. ``job`` serves the
        in-job functions (check_cancelled, wait, from_loop) meanwhile.

        Raises:
            HostDied: if the far side died; nothing else.
        """
        ...

    def interrupt(self) -> None:
        """Ask the running call or load to stop now, if the host can (any thread, idempotent)."""
        ...

    def renewal_due(self) -> str | None:
        """After a job: why the worker should be renewed (its process's memory), or None."""
        ...

    def kill(self) -> bool:
        """End the far side now, from the loop's thread (a second Ctrl-C at the exit).

        Returns:
            False if the host cannot (a thread); else True: the worker's
            thread then ends soon, its job failed with BrokenWorkerError.
        """
        ...

    def close(self, exc_info: ExcInfo) -> BaseException | None:
        """Run the exit hook, once, with ``exc_info``; return what it raised."""
        ...


class LoopJobView(Protocol):
    """The running job, as a loop-driven host serves its far side's requests."""

    def cancel_requested(self) -> bool:
        """True once the job should stop."""
        ...

    async def wait_for_on_loop(self, key: Hashable, timeout: float | None) -> tuple[Any, ...]:
        """Wait for ``pool.notify(worker_id, key, ...)``; the notified values."""
        ...

    async def call_on_loop(
        self, async_fn: Callable[..., Awaitable[Any]], args: tuple[Any, ...]
    ) -> outcome.Outcome[Any]:
        """Run ``async_fn(*args)`` for the job as ``from_loop`` does; its Outcome."""
        ...


class LoopHost(abc.ABC):
    """One worker's interface far from the pool, driven by a task of the event loop.

    The worker is then no thread but a task: it awaits :meth:`load`,
    :meth:`execute` and :meth:`close`, which talk to the far side without
    blocking the loop. Every method is called in the loop's thread. What
    each means is as in :class:`Host`.
    """

    __slots__ = ()

    @property
    @abc.abstractmethod
    def operations(self) -> frozenset[str]: ...

    @property
    def calls_in_flight(self) -> int:
        """How many calls the worker may have out at once (its far side queues them).

        1 (the default): one job at a time. With more, :meth:`execute` is
        awaited by several tasks at once, each with its own job, in the
        order the calls are sent; :meth:`interrupt` concerns every call out.
        """
        return 1

    @abc.abstractmethod
    def where(self) -> Where: ...

    @abc.abstractmethod
    async def load(self, worker: WorkerInfo) -> None: ...

    @abc.abstractmethod
    async def execute(
        self,
        fn: Callable[..., Any] | str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        with_interface: bool,
        job: LoopJobView,
    ) -> outcome.Outcome[Any]:
        """As :meth:`Host.execute`; the cancel request is looked at when :meth:`interrupt` says."""

    @abc.abstractmethod
    def interrupt(self) -> None:
        """Look at the running job's cancel request now (loop thread)."""

    @abc.abstractmethod
    def renewal_due(self) -> str | None: ...

    @abc.abstractmethod
    def kill(self) -> bool: ...

    @abc.abstractmethod
    async def close(self, exc_info: ExcInfo) -> BaseException | None: ...


HostFactory = Callable[[], Host | LoopHost]
"""Makes the host of one new worker."""


class HostChoice(abc.ABC):
    """What ``Pool(host=...)`` takes: where each worker's interface lives.

    The pool names no host: it asks its choice for the :class:`Host` of each
    new worker, and how long a running job may take to stop at an error exit.
    """

    __slots__ = ()

    @abc.abstractmethod
    def worker_hosts(self, loader: object, args: tuple[Any, ...]) -> HostFactory:
        """What makes the host of each new worker, for the interface ``loader(*args)``.

        Raises:
            RuntimeError: if this host cannot serve here (a Python too old, Ray not started).
        """

    def kill_grace(self) -> float | None:
        """Seconds a running job gets at an error exit before its far side is killed.

        None (the default): the host cannot kill (a thread).
        """
        return None
