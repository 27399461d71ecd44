"""Argument checks shared by the pool, its leases and the primitives."""

from __future__ import annotations

import inspect
from types import BuiltinFunctionType, FunctionType, MethodType


def check_count(name: str, value: object, *, minimum: int = 1) -> int:
    """``value`` if it is an int of at least ``minimum``; TypeError or ValueError if not."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, not {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, not {value}")
    return value


_MARKED = "_is_coroutine_marker"  # set by inspect.markcoroutinefunction()


def _plainly_sync(fn: object) -> bool:
    """True for the common sync callables, told apart without inspect's unwrapping:
    a plain function, a method of one, a builtin, a class (``int``, a dataclass)."""
    if isinstance(fn, MethodType):
        fn = fn.__func__
    if isinstance(fn, FunctionType):  # its own dict: hasattr() would raise and catch
        return not (fn.__code__.co_flags & inspect.CO_COROUTINE or _MARKED in fn.__dict__)
    if hasattr(fn, _MARKED):
        return False
    return isinstance(fn, (BuiltinFunctionType, type))


def check_sync_callable(fn: object) -> None:
    """TypeError unless ``fn`` is a callable that is not an async function."""
    if _plainly_sync(fn):
        return
    if isinstance(fn, str):
        raise TypeError(
            f"this takes a function, not the name {fn!r}: call an operation by name "
            f"with call({fn!r}, ...) or interface.{fn}(...)"
        )
    if not callable(fn):
        raise TypeError(f"expected a sync function, not {fn!r}")
    if inspect.iscoroutinefunction(fn):
        raise TypeError(
            f"{fn!r} is an async function: the pool runs sync functions in worker "
            "threads; await async ones on the event loop instead"
        )


def check_target(fn_or_op: object) -> None:
    """TypeError unless ``fn_or_op`` is an operation name or a sync callable."""
    if isinstance(fn_or_op, str):
        return
    if not callable(fn_or_op):
        raise TypeError(f"expected a sync function or an operation name, not {fn_or_op!r}")
    check_sync_callable(fn_or_op)
