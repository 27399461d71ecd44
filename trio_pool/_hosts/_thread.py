"""ThreadHost: the interface lives in the worker thread itself."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import Any, Generic, TypeVar, final

from .._in_worker import JobView, WorkerInfo, context
from ._base import ExcInfo, HostChoice, HostFactory, Where
from ._shared import call_sync, is_mapping, no_operation, operations_of, private_name

_MISSING = object()
R = TypeVar("R")


@final
class ThreadHost(HostChoice):
    """The default host: each worker's interface lives in the worker thread itself.

    ``Pool(..., host=trio_pool.ThreadHost())`` is the same as leaving
    ``host`` out.
    """

    __slots__ = ()

    def __repr__(self) -> str:
        return "trio_pool.ThreadHost()"

    def worker_hosts(self, loader: object, args: tuple[Any, ...]) -> HostFactory:
        import outcome  # (here: a far side uses InThread without it)

        return functools.partial(InThread, loader, args, value=outcome.Value, error=outcome.Error)


class InThread(Generic[R]):
    """Builds, uses and closes one interface, all in the calling thread.

    A call's result is captured by ``value`` or its error by ``error``:
    ``outcome.Value`` and ``outcome.Error`` for a thread host, the frame's
    encoders on a far side (which never builds an Outcome).
    """

    def __init__(
        self,
        loader: object,
        args: tuple[Any, ...],
        *,
        value: Callable[[Any], R],
        error: Callable[[BaseException], R],
    ) -> None:
        self._loader = loader
        self._args = args
        self._value = value
        self._error = error
        self._interface: Any = None
        self._operations: frozenset[str] = frozenset()
        self._exit: Callable[..., object] | None = None

    @property
    def operations(self) -> frozenset[str]:
        return self._operations

    def where(self) -> Where:
        return Where("thread", os.getpid())

    def load(self, worker: WorkerInfo) -> None:
        """Build the interface: call the loader, then ``__enter__`` if it has one."""
        context.worker = worker
        try:
            self._load()
        except BaseException:
            context.worker = None
            raise
        context.interface = self._interface
        context.has_interface = True
        context.operation = self.operation

    def _load(self) -> None:
        loaded: Any = self._loader
        if callable(loaded) and not is_mapping(loaded):
            loaded = loaded(*self._args)
        if loaded is None:
            return
        if is_mapping(loaded):
            self._interface, self._exit = loaded, loaded.get("__exit__")
            self._operations = operations_of(loaded)
            return
        exit_hook = getattr(loaded, "__exit__", None)
        cls: type[Any] = type(loaded)  # pyright: ignore[reportUnknownVariableType]
        enter = getattr(cls, "__enter__", None)
        self._interface = enter(loaded) if enter is not None else loaded
        self._exit = exit_hook
        try:
            self._operations = operations_of(self._interface)
        except BaseException as exc:
            self.close((type(exc), exc, exc.__traceback__))
            raise

    def operation(self, name: str) -> Callable[..., Any]:
        """The interface's operation ``name``; AttributeError if there is none."""
        if name.startswith("_"):
            raise AttributeError(private_name(name))
        interface = self._interface
        if interface is None:
            raise AttributeError(f"no operation {name!r}: this pool has no interface")
        if is_mapping(interface):
            try:
                fn: Callable[..., Any] = interface[name]
            except KeyError:
                raise AttributeError(no_operation(name)) from None
            return fn
        found: object = getattr(interface, name, _MISSING)
        if found is _MISSING:
            raise AttributeError(no_operation(name))
        if not callable(found):
            raise AttributeError(f"the interface's {name!r} is not callable")
        return found

    def execute(
        self,
        fn: Callable[..., Any] | str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        with_interface: bool,
        job: JobView,
    ) -> R:
        """Run one call in this thread and capture its result, whatever it raises."""
        try:
            if isinstance(fn, str):
                fn = self.operation(fn)
            elif with_interface:
                args = (self._interface, *args)
        except BaseException as exc:
            return self._error(exc)
        context.job = job
        try:
            return call_sync(fn, args, kwargs, self._value, self._error)
        finally:
            context.job = None

    def interrupt(self) -> None:
        """Nothing: a thread cannot be stopped from outside; jobs check_cancelled()."""

    def renewal_due(self) -> str | None:
        """Never: the thread's memory is the whole program's."""
        return None

    def kill(self) -> bool:
        """Cannot: a thread cannot be stopped from outside."""
        return False

    def close(self, exc_info: ExcInfo) -> BaseException | None:
        """Run the exit hook once, if there is one; return what it raised."""
        hook, self._exit = self._exit, None
        error: BaseException | None = None
        if hook is not None:
            try:
                hook(*exc_info)
            except BaseException as exc:
                error = exc
        context.worker = context.operation = None
        context.interface = None
        context.has_interface = False
        return error
