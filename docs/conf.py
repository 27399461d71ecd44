"""Sphinx configuration for the trio_pool documentation.

Built by ``python -m nox -s docs`` with warnings as errors and nitpicky
references, offline: intersphinx reads the inventories in ``_inventories/``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import trio_pool

# Local extensions: check_public_names fails the build if something public
# is missing from the reference; signatures prints P, P.args and Callable[P, R]
# as written, and fails the build on a garbled signature.
sys.path.insert(0, str(Path(__file__).parent / "_ext"))

project = "trio_pool"
author = "The trio_pool developers"
copyright = "the trio_pool developers"  # noqa: A001
release = version = trio_pool.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.intersphinx",
    "sphinx.ext.doctest",
    "myst_parser",
    "check_public_names",
    "signatures",
]

source_suffix = {".rst": "restructuredtext"}
exclude_patterns = ["_build", "_inventories", "snippets"]
nitpicky = True

# --- autodoc ---------------------------------------------------------------
# Members are listed per directive in reference.rst; ``undoc-members`` is never
# used, so a public member without a docstring is left out, and
# _ext/check_public_names.py fails the build naming it.
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_preserve_defaults = True
napoleon_google_docstring = True
napoleon_numpy_docstring = False

# --- intersphinx, offline ------------------------------------------------------
_inv = Path(__file__).parent / "_inventories"
intersphinx_mapping = {
    "python": ("https://docs.python.org/3", str(_inv / "python3.inv")),
    "trio": ("https://trio.readthedocs.io/en/stable", str(_inv / "trio.inv")),
    "anyio": ("https://anyio.readthedocs.io/en/stable", str(_inv / "anyio.inv")),
    "outcome": ("https://outcome.readthedocs.io/en/latest", str(_inv / "outcome.inv")),
}

# --- references that cannot resolve --------------------------------------------
nitpick_ignore_regex = [
    # Type variables and parameter specifications in signatures (R, T, P):
    # there is nothing to link them to.
    ("py:class", r"(trio_pool\._\w+\.)?([PRTI]|T2|Ts)(\.args|\.kwargs)?"),
    # Pool's overloads: "a loader whose result has __enter__() -> I" (private).
    ("py:class", r"trio_pool\._pool\.SupportsEnter"),
    # What a host's worker_hosts() makes: the seam's per-worker kinds (thread-driven
    # and loop-driven), private until Ray's loop-driven host has settled them.
    ("py:class", r"trio_pool\._hosts\._base\.(Host|LoopHost)"),
    # Instrument.worker_stopped's reason: a Literal of four strings, spelled out there.
    ("py:class", r"(trio_pool\._instruments\.)?StopReason"),
]

# --- HTML --------------------------------------------------------------------
html_theme = "furo"
html_title = f"trio_pool {release}"
html_static_path = ["_static"]
