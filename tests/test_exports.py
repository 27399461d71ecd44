"""The public surface is exactly ``trio_pool.__all__``."""

from __future__ import annotations

import trio_pool


def test_all_is_the_public_surface() -> None:
    public = {name for name in dir(trio_pool) if not name.startswith("_")}
    assert public == set(trio_pool.__all__)


def test_public_names_are_documented_and_say_where_they_live() -> None:
    for name in trio_pool.__all__:
        obj = getattr(trio_pool, name)
        assert obj.__doc__, f"{name} has no docstring"
        assert obj.__module__.startswith("trio_pool")
