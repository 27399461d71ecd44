"""``pool.interface`` (each operation as an awaitable method) and the operation registry."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from types import FunctionType, MethodType
from typing import Any, cast, final

import outcome

from ._checks import check_sync_callable
from ._hosts._shared import no_operation, operations_of, private_name


@final
class InterfaceProxy:
    """Turns ``proxy.op(*args)`` into ``(await call("op", *args)).unwrap()``."""

    __slots__ = ("_call", "_names")

    def __init__(
        self, call: Callable[..., Awaitable[outcome.Outcome[Any]]], names: frozenset[str]
    ) -> None:
        self._call = call
        self._names = names

    def __getattr__(self, name: str) -> Callable[..., Awaitable[Any]]:
        if name.startswith("_"):
            raise AttributeError(private_name(name))
        if name not in self._names:
            raise AttributeError(no_operation(name))
        return unwrapping_operation(self._call, name)

    def __dir__(self) -> list[str]:
        return sorted(self._names)


def unwrapping_operation(
    call: Callable[..., Awaitable[outcome.Outcome[Any]]], name: str
) -> Callable[..., Awaitable[Any]]:
    """An async function running operation ``name`` through ``call``, returning its value."""

    async def operation(*args: Any, **kwargs: Any) -> Any:
        return (await call(name, *args, **kwargs)).unwrap()

    operation.__name__ = operation.__qualname__ = name
    return operation


class Operations:
    """The operation names a pool knows, and the ones defined on it; loop thread only."""

    def __init__(self, interface: object) -> None:
        # Known before any worker loads (a class's methods, a mapping's keys),
        # so that define() can refuse them even with min_workers=0.
        self._static: frozenset[str] = frozenset()
        if isinstance(interface, (type, Mapping)):
            self._static = operations_of(cast(object, interface))
        self._loaded: frozenset[str] = frozenset()  # as the first loaded worker has them
        self._definitions: dict[str, Callable[..., Any]] = {}
        # The interface's class, if the loader is one whose instances are the
        # interface (no __enter__, which may return something else).
        self._class: type | None = None
        if isinstance(interface, type) and not hasattr(interface, "__enter__"):
            self._class = interface
        self._methods: set[Callable[..., Any]] = set()  # checked: the class's own

    def check_method(self, method: object) -> None:
        """TypeError for a method that cannot be called on the interface.

        A bound method (``db.query``) would get the interface as an extra
        argument; a method defined in another class than the interface's (or
        its bases) is another class's. Functions that are not defined in a
        class body (``def query(db, sql)``) are the caller's to choose.
        """
        if isinstance(method, MethodType) and not isinstance(method.__self__, type):
            cls = type(method.__self__).__qualname__
            raise TypeError(
                f"{method.__qualname__} is a bound method: pass {cls}.{method.__name__}, "
                "which the pool calls on each worker's own interface"
            )
        interface = self._class
        if interface is None or not isinstance(method, FunctionType) or method in self._methods:
            return
        qualname = method.__qualname__
        if "." not in qualname or "<locals>" in qualname:
            return
        name = method.__name__
        for base in interface.__mro__:
            found: object = vars(base).get(name)
            if found is method or getattr(found, "__func__", None) is method:
                self._methods.add(method)
                return
        raise TypeError(
            f"{qualname} is not a method of {interface.__qualname__}, the pool's interface "
            f"(nor of its bases): pass {interface.__qualname__}.{name} if it has one"
        )

    def learn(self, names: frozenset[str]) -> None:
        """A worker has loaded with these operations (the first one's are kept)."""
        if not self._loaded:
            self._loaded = names

    def names(self) -> frozenset[str]:
        """The loaded interface's operations (until one loads, the class's), and defined ones."""
        return (self._loaded or self._static) | self._definitions.keys()

    def check_new(self, name: object, fn: object) -> None:
        """TypeError or ValueError unless ``name`` may be defined as ``fn``."""
        if not isinstance(name, str):
            raise TypeError(f"an operation's name is a str, not {name!r}")
        if name.startswith("_"):
            raise ValueError(private_name(name))
        if name in self._loaded or name in self._static:
            raise ValueError(f"the interface already has an operation {name!r}")
        check_sync_callable(fn)

    def define(self, name: str, fn: Callable[..., Any]) -> None:
        self._definitions[name] = fn

    def undefine(self, name: str) -> None:
        try:
            del self._definitions[name]
        except KeyError:
            raise LookupError(f"no operation {name!r} was defined on this pool") from None

    def resolve(self, fn: Callable[..., Any] | str) -> Callable[..., Any] | str:
        """A defined operation's function as defined now (whatever comes later)."""
        if isinstance(fn, str):
            return self._definitions.get(fn, fn)
        return fn
