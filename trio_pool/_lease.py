"""Leases: exclusive use of one worker for a sequence of calls, and the tasks waiting for one."""

from __future__ import annotations

import contextlib
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from types import TracebackType
from typing import Any, Concatenate, ParamSpec, TypeVar, final

import outcome

from ._backend import Event
from ._checks import check_sync_callable
from ._exceptions import PoolClosedError
from ._handoff import Handoff
from ._interface import InterfaceProxy
from ._worker import Worker

P = ParamSpec("P")
R = TypeVar("R")

CallOn = Callable[
    [Worker, "Callable[..., Any] | str", tuple[Any, ...], dict[str, Any], bool],
    Awaitable[outcome.Outcome[Any]],
]


class LeaseQueue:
    """Who holds a worker and who waits for one; loop thread only."""

    def __init__(
        self, handoff: Handoff, new_event: Callable[[], Event], poke: Callable[[], None], name: str
    ) -> None:
        """``poke`` tells the autoscaler that a lessee waits or a worker came back."""
        self._handoff = handoff
        self._new_event = new_event
        self._poke = poke
        self._name = name
        self._waiters: deque[Event] = deque()
        self._closed = False

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    async def acquire(self, free: Callable[[], Iterable[Worker]]) -> Worker:
        """Lease the first of ``free()`` (looked at again after each wake-up)."""
        while True:
            if self._closed:
                raise PoolClosedError(f"the pool {self._name!r} is closed")
            worker = next(iter(free()), None)
            if worker is not None:
                self._handoff.lease(worker.slot)
                return worker
            event = self._new_event()
            self._waiters.append(event)
            self._poke()  # a lessee waits: autoscaling may start a worker
            try:
                await event.wait()
            finally:
                with contextlib.suppress(ValueError):
                    self._waiters.remove(event)

    def release(self, worker: Worker) -> None:
        self._handoff.unlease(worker.slot)
        self.wake()
        self._poke()  # time the released worker's retirement

    def wake(self) -> None:
        """Wake every waiting task, to look for a free worker again."""
        for event in self._waiters:
            event.set()

    def close(self) -> None:
        """Wake every waiting task to find the pool closed; later ones never wait."""
        self._closed = True
        self.wake()


@final
class WorkerLease:
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
        self, method: Callable[Concatenate[Any, P], R], /, *args: P.args, **kwargs: P.kwargs
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
class Lease:
    """The async context manager :meth:`Pool.lease` returns."""

    __slots__ = ("_acquire", "_call_on", "_lease", "_names", "_release")

    def __init__(
        self,
        acquire: Callable[[], Awaitable[Worker]],
        release: Callable[[Worker], None],
        call_on: CallOn,
        names: Callable[[], frozenset[str]],
    ) -> None:
        self._names = names
        self._acquire = acquire
        self._release = release
        self._call_on = call_on
        self._lease: WorkerLease | None = None

    async def __aenter__(self) -> WorkerLease:
        if self._lease is not None:
            raise RuntimeError("this lease is already in use; call pool.lease() again")
        worker = await self._acquire()
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
        self._release(self._lease._worker)
