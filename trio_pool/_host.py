"""Where a worker's interface lives, and how a job reaches it.

This is the seam between a worker and its interface. :class:`ThreadHost`
keeps the interface in the worker thread itself. A host that keeps it in a
subprocess or in a remote actor has the same members: ``load()``,
``operations``, ``operation(name)``, ``execute()``, ``close()`` and
``interface`` (what ``current_interface()`` returns in the worker).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from types import BuiltinFunctionType, FunctionType, TracebackType
from typing import Any, TypeGuard

import outcome

ExcInfo = tuple[type[BaseException] | None, BaseException | None, TracebackType | None]
NO_EXC: ExcInfo = (None, None, None)


def is_mapping(interface: object) -> TypeGuard[Mapping[str, Any]]:
    return isinstance(interface, Mapping)


class ThreadHost:
    """Builds, uses and closes one interface, all in the calling thread."""

    def __init__(self, loader: object, args: tuple[Any, ...]) -> None:
        self._loader = loader
        self._args = args
        self.interface: Any = None
        self.operations: frozenset[str] = frozenset()
        self._exit: Callable[..., object] | None = None

    def load(self) -> None:
        """Build the interface: call the loader, then ``__enter__`` if it has one."""
        loaded: Any = self._loader
        if callable(loaded) and not is_mapping(loaded):
            loaded = loaded(*self._args)
        if loaded is None:
            return
        if is_mapping(loaded):
            self.interface, self._exit = loaded, loaded.get("__exit__")
            self.operations = operations_of(loaded)
            return
        exit_hook = getattr(loaded, "__exit__", None)
        cls: type[Any] = type(loaded)  # pyright: ignore[reportUnknownVariableType]
        enter = getattr(cls, "__enter__", None)
        self.interface = enter(loaded) if enter is not None else loaded
        self._exit = exit_hook
        try:
            self.operations = operations_of(self.interface)
        except BaseException as exc:
            self.close((type(exc), exc, exc.__traceback__))
            raise

    def operation(self, name: str) -> Callable[..., Any]:
        """The interface's operation ``name``; AttributeError if there is none."""
        if name.startswith("_"):
            raise AttributeError(
                f"{name!r} is not an operation: names starting with '_' are private"
            )
        if self.interface is None:
            raise AttributeError(f"no operation {name!r}: this pool has no interface")
        if is_mapping(self.interface):
            try:
                fn: Callable[..., Any] = self.interface[name]
            except KeyError:
                raise AttributeError(f"the interface has no operation {name!r}") from None
            return fn
        fn = getattr(self.interface, name)
        if not callable(fn):
            raise AttributeError(f"the interface's {name!r} is not callable")
        return fn

    def execute(
        self,
        fn: Callable[..., Any] | str,
        with_interface: bool,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> outcome.Outcome[Any]:
        """Run one job and capture its result, whatever it raises."""
        try:
            if isinstance(fn, str):
                fn = self.operation(fn)
            elif with_interface:
                args = (self.interface, *args)
        except BaseException as exc:
            return outcome.Error(exc)
        return call_sync(fn, args, kwargs)

    def close(self, exc_info: ExcInfo) -> BaseException | None:
        """Run the exit hook once, if there is one; return what it raised."""
        hook, self._exit = self._exit, None
        if hook is None:
            return None
        try:
            hook(*exc_info)
        except BaseException as exc:
            return exc
        return None


def operations_of(interface: object) -> frozenset[str]:
    """The public callables of ``interface``, found without running properties."""
    if is_mapping(interface):
        return frozenset(k for k in interface if not k.startswith("_"))
    names: set[str] = set()
    for name in dir(interface):
        if name.startswith("_"):
            continue
        attribute = inspect.getattr_static(interface, name, None)
        if callable(attribute) or isinstance(attribute, (classmethod, staticmethod)):
            names.add(name)
    return frozenset(names)


def call_sync(
    fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> outcome.Outcome[Any]:
    """``fn(*args, **kwargs)`` as an Outcome, whatever it raises; a coroutine is an error."""
    try:
        result = fn(*args, **kwargs)
        if inspect.iscoroutine(result):
            result.close()
            raise TypeError(
                f"{fn!r} returned a coroutine: the pool runs sync functions; "
                "await async ones on the event loop instead"
            )
    except BaseException as exc:
        return outcome.Error(exc)
    return outcome.Value(result)


def check_sync_callable(fn: object) -> None:
    """TypeError unless ``fn`` is a callable that is not an async function."""
    if type(fn) is BuiltinFunctionType or (
        type(fn) is FunctionType  # the common cases, checked without inspect's unwrapping
        and not fn.__code__.co_flags & inspect.CO_COROUTINE
        and not hasattr(fn, "_is_coroutine_marker")  # inspect.markcoroutinefunction()
    ):
        return
    if not callable(fn):
        raise TypeError(f"expected a callable or an operation name, not {fn!r}")
    if inspect.iscoroutinefunction(fn):
        raise TypeError(
            f"{fn!r} is an async function: the pool runs sync functions in worker "
            "threads; await async ones on the event loop instead"
        )
