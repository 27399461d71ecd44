"""Fail the build if a public name of trio_pool is missing from the reference.

Public means: every name in ``trio_pool.__all__`` and, for each public class,
every attribute, method and property it defines (its own and those of
trio_pool base classes), dataclass fields, and the ``self.<name>``
attributes its ``__init__`` assigns, unless the name starts with ``_``.
Each must be a documented Python object (``py`` domain) once the build has
read every page. Autodoc runs without ``undoc-members``, so a member without a
docstring does not appear and this check names it.
"""

from __future__ import annotations

import ast
import inspect
import textwrap
from typing import Any

from sphinx.application import Sphinx
from sphinx.environment import BuildEnvironment
from sphinx.util import logging

import trio_pool

logger = logging.getLogger(__name__)


def _init_attributes(cls: type) -> set[str]:
    init = cls.__dict__.get("__init__")
    if init is None:
        return set()
    try:
        source = textwrap.dedent(inspect.getsource(init))
    except (OSError, TypeError):
        return set()
    names = set()
    for node in ast.walk(ast.parse(source)):
        targets = []
        if isinstance(node, ast.Assign):
            targets = node.targets
        elif isinstance(node, ast.AnnAssign):
            targets = [node.target]
        for target in targets:
            if (
                isinstance(target, ast.Attribute)
                and isinstance(target.value, ast.Name)
                and target.value.id == "self"
            ):
                names.add(target.attr)
    return names


def public_names() -> set[str]:
    """Every public dotted name the reference must document."""
    names = set()
    for name in trio_pool.__all__:
        obj: Any = getattr(trio_pool, name)
        names.add(f"trio_pool.{name}")
        if not inspect.isclass(obj):
            continue
        members: set[str] = set()
        for klass in obj.__mro__:
            if not klass.__module__.startswith("trio_pool"):
                continue
            members.update(klass.__dict__)
            members.update(getattr(klass, "__dataclass_fields__", {}))
            members.update(_init_attributes(klass))
        names.update(f"trio_pool.{name}.{m}" for m in members if not m.startswith("_"))
    return names


def check(app: Sphinx, env: BuildEnvironment) -> None:
    documented = set(env.get_domain("py").objects)
    missing = sorted(public_names() - documented)
    if missing:
        logger.warning(
            "public names missing from the reference (give them a docstring, "
            "or add them to docs/reference.rst): %s",
            ", ".join(missing),
            type="trio_pool",
            subtype="undocumented",
        )


def setup(app: Sphinx) -> dict[str, Any]:
    app.connect("env-check-consistency", check)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
