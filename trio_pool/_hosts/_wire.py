"""What crosses to a far side (a child process, a Ray actor) and back.

Everything travels pickled, protocol 5: with plain pickle where it serves
(several times faster), with cloudpickle for what plain pickle refuses
(lambdas, closures) and for whatever names ``__main__``, which a far side
may not import, so functions go by value where they must. Errors keep
their type and arguments; the far side's traceback comes along as the
error's ``__cause__`` (a :class:`RemoteTraceback`). Imports neither trio nor ray, nor outcome (the
far side encodes a call's result straight into its frame; the pool side
decodes it into an Outcome).
"""

from __future__ import annotations

import io
import pickle
import traceback
import types
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

import cloudpickle  # type: ignore[import-untyped]  # pyright: ignore[reportMissingTypeStubs]

from ._base import NO_EXC, ExcInfo

if TYPE_CHECKING:
    import outcome


class RemoteTraceback(Exception):  # noqa: N818 (as concurrent.futures names it)
    """The traceback of an error raised on a far side, as its ``__cause__``."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


def dumps(value: object, prefix: bytes = b"") -> bytes:
    """``value`` pickled so that a far side can rebuild it, after ``prefix``."""
    pickled = io.BytesIO()
    pickled.write(prefix)
    if not _cloudpickle_by_value():
        try:
            _PlainPickler(pickled, protocol=5).dump(value)
        except Exception:  # what plain pickle refuses (or ``__main__``'s), cloudpickle may not
            pickled.seek(len(prefix))
            pickled.truncate()
        else:
            return pickled.getvalue()  # (the buffer itself: no copy)
    cloudpickle.dump(value, pickled, protocol=5)  # pyright: ignore[reportUnknownMemberType]
    return pickled.getvalue()


# Modules the program asked cloudpickle to send by value: then always cloudpickle.
_cloudpickle_by_value: Callable[[], set[str]] = cloudpickle.list_registry_pickle_by_value

# The main module (a child process of multiprocessing runs it as __mp_main__).
_MAIN = frozenset(("__main__", "__mp_main__"))


class _PlainPickler(pickle.Pickler):
    """Plain pickle, refusing whatever belongs to ``__main__`` (cloudpickle sends it by value).

    (``reducer_override`` is never called for the plain types: str, bytes,
    numbers, lists, tuples, dicts, sets; so what holds only data costs nothing more.)
    """

    def reducer_override(self, obj: Any) -> Any:
        owner = obj if isinstance(obj, (type, types.FunctionType)) else type(obj)
        if owner.__module__ in _MAIN:
            raise _OfMain
        return NotImplemented


class _OfMain(Exception):  # noqa: N818 (a signal, never seen outside)
    """Raised by :class:`_PlainPickler` for what belongs to ``__main__``."""


class _WithTraceback:
    """Pickles as ``error``, unpickled with the far side's traceback text as its ``__cause__``.

    (Pickling an exception keeps its type and arguments, never its traceback.)
    """

    def __init__(self, error: BaseException, text: str) -> None:
        self.error = error
        self.text = text

    def __reduce__(self) -> tuple[Any, ...]:
        return (_with_cause, (self.error, self.text))


def _with_cause(error: BaseException, text: str) -> BaseException:
    error.__cause__ = RemoteTraceback(f'\n"""\n{text}"""')
    return error


def portable(exc: BaseException) -> BaseException:
    """``exc`` ready to travel: the same type and arguments, if it survives pickling."""
    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    try:
        if not isinstance(pickle.loads(dumps(exc)), BaseException):
            raise TypeError("not an exception after unpickling")
    except BaseException as failure:
        exc = RuntimeError(
            f"{type(exc).__qualname__}: {exc} (the error could not be pickled: {failure})"
        )
    travelling: Any = _WithTraceback(exc, text)  # it becomes the exception on the far side
    return cast(BaseException, travelling)


# A job's Outcome travels as a frame of its own: one flag byte (a value, or an
# error), then the value or the error pickled. Other messages are pickled
# tuples, whose first byte is pickle's PROTO opcode (0x80).
_ERROR, _VALUE = b"\x00", b"\x01"


def _frame(flag: bytes, body: object) -> bytes:
    return dumps(body, prefix=flag)


# A call travels as a frame of its own too: this byte, a byte saying whether the
# job is already cancelled, then the call as pack_call() pickled it (unpickled
# on the far side alone, so that one that does not unpickle there fails alone).
_CALL = b"\x02"


def call_frame(payload: bytes, cancelled: bool) -> tuple[bytes, bytes]:
    """The frame of one call (:func:`pack_call`'s), to a far side, in two parts."""
    return (_CALL + (b"\x01" if cancelled else b"\x00"), payload)


def read_call_frame(frame: bytes) -> tuple[memoryview, bool] | None:
    """A call frame's payload and whether the job is cancelled; None if it is no call."""
    if frame[:1] != _CALL:
        return None
    return memoryview(frame)[2:], frame[1:2] == b"\x01"


def encode_value(value: object) -> bytes:
    """A job's result as its Outcome's frame; one that cannot be pickled becomes its TypeError."""
    try:
        return _frame(_VALUE, value)
    except BaseException as exc:
        return encode_error(TypeError(f"the result cannot be sent back to the pool: {exc}"))


def encode_error(error: BaseException) -> bytes:
    """A job's error as its Outcome's frame."""
    return _frame(_ERROR, portable(error))


def is_outcome(frame: bytes | bytearray) -> bool:
    """Whether ``frame`` is a job's Outcome (:func:`encode_outcome`), not a pickled message."""
    return frame[:1] in (_ERROR, _VALUE)


def decode_outcome(frame: bytes | bytearray, where: str) -> outcome.Outcome[Any]:
    """The Outcome in ``frame``; if it cannot be unpickled here, a TypeError saying so.

    (A class the far side has and this process cannot import, say: the job
    fails, and the worker, whose reply was whole, goes on.)
    """
    import outcome  # (the pool side's: loaded long before)

    value = frame[:1] == _VALUE
    try:
        body = pickle.loads(memoryview(frame)[1:])
    except BaseException as exc:
        what = "result" if value else "error"
        error = TypeError(f"the job's {what} cannot be received from {where}: {exc!r}")
        error.__cause__ = exc
        return outcome.Error(error)
    return outcome.Value(body) if value else outcome.Error(body)


def pack_exc_info(exc_info: ExcInfo) -> bytes:
    """The pool's exception, for a far side's exit hook (:func:`unpack_exc_info`).

    One that cannot be pickled here, or unpickled there, reaches the hook as
    a RuntimeError naming it: a hook is never told that there was none.
    """
    exc = exc_info[1]
    if exc is None:
        return dumps(None)
    text = f"{type(exc).__qualname__}: {exc}"
    try:
        return dumps((text, dumps(exc)))
    except BaseException as failure:
        stand_in = RuntimeError(f"{text} (the exception could not be pickled: {failure!r})")
        return dumps((text, dumps(stand_in)))


def unpack_exc_info(payload: bytes) -> ExcInfo:
    """On the far side: the exception info :func:`pack_exc_info` packed."""
    packed: tuple[str, bytes] | None = pickle.loads(payload)
    if packed is None:
        return NO_EXC
    text, inner = packed
    try:
        exc: BaseException = pickle.loads(inner)
    except BaseException as failure:
        exc = RuntimeError(f"{text} (the exception could not be unpickled here: {failure!r})")
    return (type(exc), exc, None)


def describe_unpicklable(
    fn: object, args: tuple[Any, ...], kwargs: dict[str, Any], where: str
) -> str:
    """Name the first part of a call that cannot be pickled to be sent to ``where``."""
    parts: list[tuple[str, object]] = [("the function", fn)]
    parts += [(f"argument {i}", a) for i, a in enumerate(args)]
    parts += [(f"keyword argument {k!r}", v) for k, v in kwargs.items()]
    for what, value in parts:
        try:
            dumps(value)
        except BaseException as exc:  # noqa: PERF203 (only on the error path)
            return f"{what} ({value!r}) cannot be sent to {where}: {exc}"
    return f"the call cannot be sent to {where}"


def pack_loader(loader: object, args: tuple[Any, ...], where: str) -> bytes:
    """The loader and its arguments, pickled to be sent to ``where``.

    Raises:
        TypeError: naming what cannot be pickled.
    """
    try:
        return dumps((loader, args))
    except BaseException as exc:
        raise TypeError(
            f"the loader {loader!r} or its arguments cannot be sent to {where}: {exc}"
        ) from exc


def pack_call(
    fn: Callable[..., Any] | str,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    with_interface: bool,
    where: str,
) -> bytes | outcome.Error:
    """One call, pickled to be sent to ``where``, or the job's TypeError naming what cannot be."""
    try:
        return dumps((fn, args, kwargs, with_interface))
    except BaseException:
        import outcome  # (the pool side's: loaded long before)

        return outcome.Error(TypeError(describe_unpicklable(fn, args, kwargs, where)))
