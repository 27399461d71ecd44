"""Leases: exclusive use of one worker for a sequence of calls, and the tasks waiting for one."""

from __future__ import annotations

from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from types import TracebackType
from typing import Any, Concatenate, Generic, ParamSpec, final

import outcome
from typing_extensions import TypeVar

from ._admission import wait_or_shed
from ._backend import Event, ki_protected
from ._checks import check_sync_callable
from ._exceptions import PoolClosedError
from ._handoff import Handoff
from ._interface import InterfaceProxy
from ._worker import Worker

P = ParamSpec("P")
R = TypeVar("R")
I = TypeVar("I", covariant=True, default=Any)  # the interface (as in _pool)  # noqa: E741

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

    def _check_open(self) -> None:
        if self._closed:
            raise PoolClosedError(f"the pool {self._name!r} is closed")

    async def acquire(self, free: Iterable[Worker]) -> Worker:
        """Lease the first of ``free`` if nobody waits; else wait in line.

        Raises:
            QueueFull: if ``max_wait`` seconds passed first (the pool sheds load).
        """
        self._check_open()
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
            self._check_open()
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


@final
class WorkerLease(Generic[I]):
    """One worker, leased with ``async with pool.lease() as worker:``.

    Everything called through it runs on that worker, in order, and nothing
    else from the pool's queue runs there until the lease ends (a
    :meth:`Pool.broadcast` still reaches it). There is no public constructor.

    Attributes:
        id: The leased worker's id.
    """

    __slots__ = ("_active", "_call_on", "_names", "_worker", "id")

    def __init__(
        self, worker: Worker, call_on: CallOn, names: Callable[[], frozenset[str]]
    ) -> None:
        self._worker = worker
        self._call_on = call_on
        self._names = names
        self._active = True
        self.id: int = worker.id

    def __repr__(self) -> str:
        return f"<trio_pool.WorkerLease id={self.id}{'' if self._active else ' ended'}>"

    async def _outcome(
        self,
        fn: Callable[..., Any] | str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        with_interface: bool,
    ) -> outcome.Outcome[Any]:
        if not self._active:
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


Reset = Callable[[Any], object]


@final
class Lease(Generic[I]):
    """The async context manager :meth:`Pool.lease` returns."""

    __slots__ = ("_acquire", "_call_on", "_lease", "_names", "_release", "_reset")

    def __init__(
        self,
        acquire: Callable[[Reset | None], Awaitable[Worker]],
        release: Callable[[Worker], Awaitable[outcome.Outcome[object] | None]],
        call_on: CallOn,
        names: Callable[[], frozenset[str]],
        reset: Reset | None,
    ) -> None:
        """``release`` runs the reset, if there is one, and returns its Outcome."""
        self._names = names
        self._acquire = acquire
        self._release = release
        self._call_on = call_on
        self._reset = reset
        self._lease: WorkerLease[I] | None = None

    async def __aenter__(self) -> WorkerLease[I]:
        if self._lease is not None:
            raise RuntimeError("this lease is already in use; call pool.lease() again")
        worker = await self._acquire(self._reset)
        self._lease = WorkerLease(worker, self._call_on, self._names)
        return self._lease

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._lease is not None
        self._lease._active = False
        reset = await self._release(self._lease._worker)
        if reset is not None:
            reset.unwrap()  # the reset's own error
