"""``pool.interface``: each operation of the workers' interface as an awaitable method."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, final

import outcome


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
