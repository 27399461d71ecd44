"""Render signatures as a reader writes them, and fail the build on a garbled one.

Sphinx writes ``Callable[P, R]`` as ``Callable[[~P], R]`` and ``*args:
P.args`` as ``*args: typing.~P``: its annotation printer knows no parameter
specifications. This extension teaches it ``P``, ``P.args``, ``P.kwargs``,
``Callable[P, R]``, ``Callable[Concatenate[X, P], R]`` and ``*Ts``, and then checks
every signature the build renders: one that still shows ``~`` or
``typing.`` (what is left when Sphinx could not print an annotation) fails
the build, naming it.
"""

from __future__ import annotations

import collections.abc
import sys
import typing
from typing import Any

import typing_extensions
from docutils import nodes
from sphinx import addnodes
from sphinx.application import Sphinx
from sphinx.util import logging
from sphinx.util import typing as sphinx_typing

logger = logging.getLogger(__name__)

_original = sphinx_typing.stringify_annotation


def _stringify(
    annotation: Any, /, mode: str = "fully-qualified-except-typing", **kwargs: Any
) -> str:
    """Sphinx's annotation printer, with parameter specifications printed as written."""

    def again(inner: Any) -> str:
        return _stringify(inner, mode, **kwargs)

    if isinstance(annotation, typing.ParamSpec):
        return annotation.__name__
    if isinstance(annotation, typing.ParamSpecArgs):
        return f"{annotation.__origin__.__name__}.args"
    if isinstance(annotation, typing.ParamSpecKwargs):
        return f"{annotation.__origin__.__name__}.kwargs"
    origin = typing.get_origin(annotation)
    if origin in (typing.Unpack, typing_extensions.Unpack):
        (inner,) = typing.get_args(annotation)
        if typing_extensions.is_typeddict(inner):  # **options: Unpack[PoolOptions]
            return f"~typing.Unpack[{again(inner)}]"
        return f"*{again(inner)}"  # *Ts, as a loader's arguments
    if origin is typing.Concatenate:
        return f"~typing.Concatenate[{', '.join(map(again, typing.get_args(annotation)))}]"
    if origin is collections.abc.Callable:
        params, result = typing.get_args(annotation)
        if isinstance(params, list):
            written = f"[{', '.join(map(again, params))}]"
        else:  # ..., a ParamSpec or a Concatenate
            written = again(params)
        prefix = "~collections.abc." if mode == "smart" else "collections.abc."
        return f"{prefix}Callable[{written}, {again(result)}]"
    return _original(annotation, mode, **kwargs)  # type: ignore[arg-type]


def _install() -> None:
    """Put the printer in every Sphinx module that imported the original by name."""
    for name, module in list(sys.modules.items()):
        if name.startswith("sphinx") and getattr(module, "stringify_annotation", None) is _original:
            module.stringify_annotation = _stringify  # type: ignore[attr-defined]


def _check(app: Sphinx, doctree: nodes.document, docname: str) -> None:
    for signature in doctree.findall(addnodes.desc_signature):
        text = signature.astext()
        if "~" in text or "typing." in text:
            logger.warning("a garbled signature: %s", text, location=signature, type="signatures")


def setup(app: Sphinx) -> dict[str, Any]:
    _install()
    app.connect("builder-inited", lambda app: _install())  # modules imported since
    app.connect("doctree-resolved", _check)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
