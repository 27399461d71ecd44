"""The operating system's name of the current thread: what ``top -H``, ``py-spy``
and ``/proc/<pid>/task/*/comm`` show. A leaf; it does nothing where the C library
has no ``pthread_setname_np`` (Windows, some libcs).
"""

from __future__ import annotations

import ctypes
import sys
from collections.abc import Callable

LIMIT = 15  # bytes; Linux refuses longer names


def _load() -> ctypes.CDLL | None:
    if sys.platform not in ("linux", "darwin"):
        return None
    try:
        libc = ctypes.CDLL(None)
        getname, setname = libc.pthread_getname_np, libc.pthread_setname_np
    except (OSError, AttributeError):  # pragma: no cover - a libc without them
        return None
    libc.pthread_self.restype = ctypes.c_void_p
    getname.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t]
    # macOS names only the calling thread, so takes no thread argument.
    setname.argtypes = (
        [ctypes.c_char_p] if sys.platform == "darwin" else [ctypes.c_void_p, ctypes.c_char_p]
    )
    return libc


_libc = _load()


def short_name(pool: str, worker_id: int) -> str:
    """``<pool>-<id>``, the pool's part cut so that the id always fits in LIMIT bytes."""
    suffix = f"-{worker_id}".encode()
    head = pool.encode()[: max(0, LIMIT - len(suffix))].decode(errors="ignore")
    return head + suffix.decode()


def _nothing() -> None:
    pass


def rename_current_thread(name: str) -> Callable[[], None]:
    """Give this thread ``name`` (cut to LIMIT bytes); return what gives the old one back."""
    libc = _libc
    if libc is None:
        return _nothing
    me = libc.pthread_self()
    buffer = ctypes.create_string_buffer(64)
    if libc.pthread_getname_np(me, buffer, len(buffer)) != 0:  # pragma: no cover
        return _nothing
    old = buffer.value

    def set_name(value: bytes) -> None:
        if sys.platform == "darwin":
            libc.pthread_setname_np(value)
        else:
            libc.pthread_setname_np(me, value)

    set_name(name.encode()[:LIMIT].decode(errors="ignore").encode())
    return lambda: set_name(old)
