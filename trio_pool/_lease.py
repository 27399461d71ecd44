"""Leases: exclusive use of one worker for a sequence of calls; all of it.

:class:`LeaseQueue` is the line of tasks waiting for a worker;
:class:`Leases` hands workers out and back (running each lease's reset
first); :class:`Lease` and :class:`WorkerLease` are what a user holds.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from types import TracebackType
from typing import Any, Concatenate, Generic, ParamSpec, final

import outcome
from typing_extensions import TypeVar

from ._admission import wait_or_shed
from ._backend import Backend, Event, ki_protected, wait_through_cancellation
from ._calls import Calls
from ._checks import check_sync_callable
from ._exceptions import BrokenWorkerError, PoolClosedError
from ._handoff import Handoff
from ._intake import Intake
from ._interface import InterfaceProxy, Operations
from ._job import JobRecord, is_cancellation
from ._worker import Worker
from ._workers import WorkerSet

P = ParamSpec("P")
R = TypeVar("R")
I = TypeVar("I", covariant=True, default=Any)  # the interface (as in _pool)  # noqa: E741

Reset = Callable[[Any], object]
CallOn = Callable[
    [Worker, "Callable[..., Any] | str", tuple[Any, ...], dict[str, Any], bool],
    Awaitable[outcome.Outcome[Any]],
]


class _Waiter:
    __slots__ = ("error", "event", "worker")

    def __init__(self, event: Event) -> None:
        self.event = event
        self.worker: Worker | None = None  # handed to it
        self.error: BaseException | None = None  # or why it gets none


class LeaseQueue:
    """Who waits for a worker of their own, first come, first served; loop thread only.

    A released worker goes straight to the first waiter (it stays leased), as
    :class:`trio.CapacityLimiter` hands on its tokens, so one release is one
    wake-up and nobody overtakes the line.
    """

    def __init__(
        self,
        handoff: Handoff,
        new_event: Callable[[], Event],
        demand: Callable[[], None],
        poke: Callable[[], None],
        name: str,
        max_wait: float | None = None,
        renewing: Callable[[Worker], None] = lambda worker: None,
    ) -> None:
        """``demand`` tells the autoscaler a lessee waits; ``poke``, that a worker came back;
        ``renewing``, that a worker due for renewal stops now its lease has ended."""
        self._renewing = renewing
        self._max_wait = max_wait
        self._handoff = handoff
        self._new_event = new_event
        self._demand = demand
        self._poke = poke
        self._name = name
        self._waiters: deque[_Waiter] = deque()
        self._closed = False

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    def check_open(self) -> None:
        """Raise PoolClosedError if the pool has closed its leases."""
        if self._closed:
            raise PoolClosedError(f"the pool {self._name!r} is closed")

    async def acquire(self, free: Iterable[Worker]) -> Worker:
        """Lease the first of ``free`` if nobody waits; else wait in line.

        Raises:
            QueueFull: if ``max_wait`` seconds passed first (the pool sheds load).
        """
        self.check_open()
        if not self._waiters:
            worker = next(iter(free), None)
            if worker is not None:
                self._handoff.lease(worker.slot)
                return worker
        waiter = _Waiter(self._new_event())
        self._waiters.append(waiter)
        self._demand()  # a lessee waits: autoscaling may start a worker
        try:
            await wait_or_shed(waiter.event, self._max_wait, "worker to lease")
        except BaseException:
            if waiter.worker is not None:
                self.release(waiter.worker)  # handed one, but leaving: pass it on
            elif not waiter.event.is_set():
                self._waiters.remove(waiter)
            raise
        if waiter.error is not None:
            raise waiter.error
        if waiter.worker is None:
            self.check_open()
        assert waiter.worker is not None
        return waiter.worker

    @ki_protected
    def release(self, worker: Worker) -> None:
        """The lease ends: hand the worker to the first waiter, or back to the pool.

        A worker whose process died, or that is due for renewal, is handed to
        nobody: its replacement is offered to the waiters once it has loaded.
        """
        slot = worker.slot
        if self._waiters and not self._closed and slot.serving and not slot.renew_pending:
            self._hand(self._waiters.popleft(), worker)
            return
        if self._handoff.unlease(slot):
            self._renewing(worker)
        self._poke()  # time the released worker's retirement

    @ki_protected
    def offer(self, free: Iterable[Worker]) -> None:
        """Workers became free (they loaded): hand them to the waiters in order."""
        for worker in free:
            if not self._waiters:
                return
            self._handoff.lease(worker.slot)
            self._hand(self._waiters.popleft(), worker)

    @staticmethod
    def _hand(waiter: _Waiter, worker: Worker) -> None:
        waiter.worker = worker
        waiter.event.set()

    @ki_protected
    def fail_waiters(self, error: BaseException) -> None:
        """No worker can come (every loader failed): the waiters raise ``error``."""
        for waiter in self._waiters:
            waiter.error = error
            waiter.event.set()
        self._waiters.clear()

    @ki_protected
    def close(self) -> None:
        """Wake every waiting task to find the pool closed; later ones never wait."""
        self._closed = True
        for waiter in self._waiters:
            waiter.event.set()
        self._waiters.clear()


class Leases:
    """An open pool's leases: the line, each lease's reset, the worker's hand-over.

    Loop thread only. A worker handed out is always handed back (by
    :meth:`release`) or kept by the line's next task.
    """

    def __init__(
        self,
        line: LeaseQueue,
        workers: WorkerSet,
        intake: Intake,
        calls: Calls,
        operations: Operations,
        backend: Backend,
    ) -> None:
        self.line = line
        self._workers = workers
        self._intake = intake
        self._calls = calls
        self._operations = operations
        self._backend = backend
        self._resets: dict[Worker, Reset] = {}  # the reset steps of the leases held
        self._reset_jobs: dict[Worker, JobRecord] = {}  # queued as the pool began closing

    @ki_protected  # a worker handed over is always given back or kept
    async def acquire(self, reset: Reset | None) -> Worker:
        """A worker of the caller's own: an idle one, or the next in line."""
        line = self.line
        await self._backend.checkpoint()  # a schedule point: no task keeps the line to itself
        while True:
            worker = await line.acquire(self._workers.free_for_lease())
            try:
                # A busy worker was leased: its shared jobs end first.
                for finishing in list(worker.slot.running):
                    await finishing.finished().wait()
                line.check_open()  # if the pool began closing meanwhile, its leases ended
            except BaseException:
                line.release(worker)
                raise
            if worker.slot.serving:
                break
            line.release(worker)  # its process died under that job: take another
        if reset is not None:
            self._resets[worker] = reset
        return worker

    @ki_protected
    def end_all(self) -> None:
        """The pool begins closing: each lease's reset goes first in its worker's queue."""
        for worker in list(self._resets):
            if (job := self._queue_reset(worker)) is not None:
                self._reset_jobs[worker] = job

    def _queue_reset(self, worker: Worker) -> JobRecord | None:
        """Put the lease's reset first in its worker's own queue (even if the pool is closing)."""
        reset = self._resets.pop(worker, None)
        if reset is None or not worker.slot.serving:
            return None
        return self._intake.accept(
            reset, (), {}, with_interface=True, slot=worker.slot, closing=True
        )

    @ki_protected
    async def release(self, worker: Worker) -> outcome.Outcome[object] | None:
        """The lease ends: run its reset, whatever cancels the task meanwhile; hand the worker on.

        The reset is in the worker's own queue, ahead of anything later for
        that worker, so it runs first even if a Ctrl-C ends this wait early.
        """
        job = self._reset_jobs.pop(worker, None) or self._queue_reset(worker)
        if job is None:
            self.line.release(worker)
            return None
        try:
            interruption = await wait_through_cancellation(job.finished())
        finally:
            self.line.release(worker)
        result = job.outcome
        # Cancelled only when the pool stopped by an error first: its hook runs instead.
        if result is None or is_cancellation(result):
            result = None
        # A native asyncio Task.cancel() came meanwhile: delivered now, unless the
        # reset failed, whose error wins (as in an asyncio.TaskGroup).
        if interruption is not None and not isinstance(result, outcome.Error):
            raise interruption
        return result

    async def call_on(
        self,
        worker: Worker,
        fn: Callable[..., Any] | str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        with_interface: bool,
    ) -> outcome.Outcome[Any]:
        """Run a call of a lease on its worker."""
        if with_interface:  # a lease's call_method
            self._operations.check_method(fn)
        self.line.check_open()  # (a closed pool says so to any thread, as before)
        self._intake.check_loop()
        await self._backend.cancellation_point()
        if not worker.slot.serving:  # its process died: the lease cannot go on
            raise BrokenWorkerError(
                f"the leased worker {worker.info.name} died; leave the lease and take a new one"
            )
        job = self._intake.accept(fn, args, kwargs, with_interface=with_interface, slot=worker.slot)
        return await self._calls.outcome_of(job)


@final
class WorkerLease(Generic[I]):
    """One worker, leased with ``async with pool.lease() as worker:``.

    Everything called through it runs on that worker, in order, and nothing
    else from the pool's queue runs there until the lease ends (a
    :meth:`Pool.broadcast` still reaches it). There is no public constructor.

    Attributes:
        id: The leased worker's id.
    """

    __slots__ = ("_call_on", "_ended", "_names", "_worker", "id")

    def __init__(
        self,
        worker: Worker,
        call_on: CallOn,
        names: Callable[[], frozenset[str]],
        ended: Callable[[], bool],
    ) -> None:
        self._worker = worker
        self._call_on = call_on
        self._names = names
        self._ended = ended
        self.id: int = worker.id

    def __repr__(self) -> str:
        return f"<trio_pool.WorkerLease id={self.id}{' ended' if self._ended() else ''}>"

    async def _outcome(
        self,
        fn: Callable[..., Any] | str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        with_interface: bool,
    ) -> outcome.Outcome[Any]:
        if self._ended():
            raise RuntimeError("this lease has ended")
        return await self._call_on(self._worker, fn, args, kwargs, with_interface)

    async def run(self, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R:
        """Like :meth:`Pool.run`, on the leased worker."""
        check_sync_callable(fn)
        result: R = (await self._outcome(fn, args, kwargs, False)).unwrap()
        return result

    async def call(self, op: str, /, *args: Any, **kwargs: Any) -> outcome.Outcome[Any]:
        """Like :meth:`Pool.call`, on the leased worker."""
        if not isinstance(op, str):
            raise TypeError(f"op must be the name of an operation, not {op!r}")
        return await self._outcome(op, args, kwargs, False)

    async def call_method(
        self, method: Callable[Concatenate[I, P], R], /, *args: P.args, **kwargs: P.kwargs
    ) -> R:
        """Like :meth:`Pool.call_method`, on the leased worker."""
        check_sync_callable(method)
        result: R = (await self._outcome(method, args, kwargs, True)).unwrap()
        return result

    @property
    def interface(self) -> Any:
        """Like :attr:`Pool.interface`, on the leased worker."""
        return InterfaceProxy(self.call, self._names())


@final
class Lease(Generic[I]):
    """The async context manager :meth:`Pool.lease` returns."""

    __slots__ = ("_ended", "_held", "_leases_of", "_names", "_reset")

    def __init__(
        self,
        leases_of: Callable[[], Leases],
        names: Callable[[], frozenset[str]],
        reset: Reset | None,
    ) -> None:
        """``leases_of()``: the open pool's leases (or its error if it is not open)."""
        if reset is not None:
            check_sync_callable(reset)
        self._leases_of = leases_of
        self._names = names
        self._reset = reset
        self._held: tuple[Leases, Worker] | None = None
        self._ended = False

    async def __aenter__(self) -> WorkerLease[I]:
        if self._held is not None:
            raise RuntimeError("this lease is already in use; call pool.lease() again")
        leases = self._leases_of()
        worker = await leases.acquire(self._reset)
        self._held = leases, worker
        return WorkerLease(worker, leases.call_on, self._names, lambda: self._ended)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._held is not None
        leases, worker = self._held
        self._ended = True
        reset = await leases.release(worker)
        if reset is not None:
            reset.unwrap()  # the reset's own error
