"""The package's shape: dependencies run one way, and the rules of ARCHITECTURE hold."""

from __future__ import annotations

import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).parent.parent / "trio_pool"


def _module_name(path: pathlib.Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports() -> dict[str, set[str]]:
    """Every module's imports of the package and of trio/anyio, TYPE_CHECKING ones included."""
    graph: dict[str, set[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        name = _module_name(path)
        package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package[: len(package) - node.level + 1]
                    found.add(".".join([*base, node.module] if node.module else base))
                else:
                    found.add(node.module or "")
            elif isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
        graph[name] = {m for m in found if m.split(".")[0] in ("trio_pool", "trio", "anyio")}
    return graph


GRAPH = _imports()


def _package_deps(module: str) -> set[str]:
    return {m for m in GRAPH[module] if m.startswith("trio_pool.")}


def test_there_is_no_import_cycle() -> None:
    done: set[str] = set()

    def visit(module: str, path: list[str]) -> None:
        if module in path:
            raise AssertionError(
                "import cycle: " + " -> ".join([*path[path.index(module) :], module])
            )
        if module in done or module not in GRAPH:
            return
        for dep in _package_deps(module):
            visit(dep, [*path, module])
        done.add(module)

    for module in GRAPH:
        if module != "trio_pool":
            visit(module, [])


@pytest.mark.parametrize(
    ("module", "allowed"),
    [
        # The host knows no event loop and no pool.
        ("trio_pool._hosts._base", {"_in_worker"}),
        ("trio_pool._hosts._shared", set()),
        ("trio_pool._hosts._thread", {"_in_worker", "_hosts._base", "_hosts._shared"}),
        # The backend knows no pool; a job knows no worker; the in-job functions are a leaf.
        ("trio_pool._backend", set()),
        ("trio_pool._job", {"_exceptions", "_backend"}),
        ("trio_pool._in_worker", {"_errors"}),
        ("trio_pool._errors", set()),
        # A loop-driven host knows its loop through the backend alone, and no pool.
        (
            "trio_pool._hosts._process",
            {
                "_backend",
                "_errors",
                "_in_worker",
                "_hosts._base",
                "_hosts._child",
                "_hosts._shared",
                "_hosts._wire",
            },
        ),
        (
            "trio_pool._hosts._ray",
            {
                "_backend",
                "_errors",
                "_in_worker",
                "_hosts._actor",
                "_hosts._base",
                "_hosts._shared",
                "_hosts._wire",
            },
        ),
        # The handoff knows jobs and slots (and the loop's bell), not the pool's other parts.
        ("trio_pool._handoff", {"_backend", "_exceptions", "_hosts._base", "_job"}),
    ],
)
def test_lower_parts_import_only_what_is_below_them(module: str, allowed: set[str]) -> None:
    deps = {m.removeprefix("trio_pool.") for m in _package_deps(module)}
    assert deps <= allowed, f"{module} imports {sorted(deps - allowed)}"


#: What a far side (a worker process, a Ray actor) runs: never trio or anyio, there
#: or below (test_process_host checks a live child's sys.modules too).
FAR_SIDE = [
    "trio_pool",
    "trio_pool._errors",
    "trio_pool._in_worker",
    "trio_pool._hosts._base",
    "trio_pool._hosts._shared",
    "trio_pool._hosts._thread",
    "trio_pool._hosts._wire",
    "trio_pool._hosts._far",
    "trio_pool._hosts._sub",
    "trio_pool._hosts._child",
    "trio_pool._hosts._actor",
    "trio_pool._hosts._sigint_ignored",
]


@pytest.mark.parametrize("module", FAR_SIDE)
def test_the_far_side_imports_no_event_loop(module: str) -> None:
    assert not {m for m in GRAPH[module] if m.split(".")[0] in ("trio", "anyio")}


def test_nothing_but_the_package_face_imports_the_pool() -> None:
    importers = {m for m, deps in GRAPH.items() if "trio_pool._pool" in deps}
    assert importers == {"trio_pool"}
