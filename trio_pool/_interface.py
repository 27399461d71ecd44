"""``pool.interface`` (each operation as an awaitable method) and the operation registry."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any, cast, final

import outcome

from ._checks import check_sync_callable
from ._hosts._base import operations_of


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
        if name.startswith("_") or name not in self._names:
            raise AttributeError(f"the pool's interface has no operation {name!r}")
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
            raise ValueError(
                f"{name!r} cannot be an operation: names starting with '_' are private"
            )
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
