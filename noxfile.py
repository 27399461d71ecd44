"""Sessions: tests (Python x dependency matrix), lint, typing, examples, interpreters, docs, ray.

`nox` runs them all; `nox -s "tests-3.12(deps='lowest')"` runs one cell;
`nox -l` lists them. Interpreters installed with pyenv are found without
any set-up, and a missing one is an error, never a skip.
"""

from __future__ import annotations

import glob
import os
import re

import nox

PYTHONS = ["3.10", "3.11", "3.12", "3.13"]
PACKAGE = "trio_pool"

nox.options.default_venv_backend = "uv|virtualenv"
nox.options.error_on_missing_interpreters = True
nox.options.sessions = ["tests", "lint", "typing", "examples", "interpreters", "docs", "ray"]


def _find_pyenv_pythons() -> None:
    """Put every pyenv-installed interpreter on PATH (after what is there)."""
    root = os.environ.get("PYENV_ROOT", os.path.expanduser("~/.pyenv"))
    bins = sorted(glob.glob(os.path.join(root, "versions", "*", "bin")))
    os.environ["PATH"] = os.pathsep.join([os.environ.get("PATH", ""), *bins])


_find_pyenv_pythons()


def lowest_pins() -> list[str]:
    """The runtime dependencies at the lowest versions pyproject.toml allows."""
    pins = []
    for requirement in nox.project.load_toml("pyproject.toml")["project"]["dependencies"]:
        match = re.fullmatch(r"([A-Za-z0-9_.-]+)>=([^;,\s]+)\s*(;.*)?", requirement)
        if match is None:
            raise ValueError(f"give {requirement!r} a plain lower bound (name>=version)")
        name, version, marker = match.groups()
        pins.append(f"{name}=={version}{marker or ''}")
    return pins


@nox.session(python=PYTHONS)
@nox.parametrize("deps", ["lowest", "newest"])
def tests(session: nox.Session, deps: str) -> None:
    """The test suite, on every backend, at the lowest or newest dependencies.

    The newest 3.13 cell, where every host but Ray runs, also measures branch
    coverage of the package and fails under COVERAGE_FLOOR percent.
    """
    pins = lowest_pins() if deps == "lowest" else []
    session.install(".[test]", *pins)
    coverage = []
    if (session.python, deps) == ("3.13", "newest"):
        coverage = [
            "--cov=trio_pool",
            "--cov-branch",
            "--cov-report=term-missing:skip-covered",
            f"--cov-fail-under={COVERAGE_FLOOR}",
        ]
    session.run("python", "-m", "pytest", *coverage, *session.posargs)


#: Branch coverage the 3.13 cell must reach. RayHost's near side (_hosts/_ray.py)
#: runs only in the ray session, and the far side's code in child processes is
#: not measured (only what runs in the pool's own process and subinterpreters'
#: threads is): see [tool.coverage] in pyproject.toml.
COVERAGE_FLOOR = 90


@nox.session
def lint(session: nox.Session) -> None:
    """ruff check and ruff format --check."""
    session.install("ruff")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session
def typing(session: nox.Session) -> None:
    """mypy --strict and pyright (strict) on the package; the public types are complete."""
    # exceptiongroup: pyright checks the Python 3.10 branch too.
    session.install(".[test]", "mypy", "pyright[nodejs]", "typing_extensions", "exceptiongroup")
    session.run("mypy", "--strict", PACKAGE, "tests/type_tests")
    session.run("pyright", PACKAGE, "tests/type_tests")
    session.run("pyright", "--verifytypes", PACKAGE, "--ignoreexternal")


@nox.session
def examples(session: nox.Session) -> None:
    """Run every example as a user would."""
    session.install(".[examples]")
    for path in sorted(glob.glob("examples/*.py")):
        if os.path.basename(path) not in RAY_EXAMPLES | INTERPRETER_EXAMPLES:
            session.run("python", path)


RAY_EXAMPLES = {"ray_cluster.py"}  # run by the ray session, which installs Ray
INTERPRETER_EXAMPLES = {"interpreters.py"}  # run by the interpreters session: CPython 3.13+


@nox.session(python="3.13")
def interpreters(session: nox.Session) -> None:
    """InterpreterHost's example, on CPython 3.13 (its tests run in the tests-3.13 cells)."""
    session.install(".[examples]")
    for name in sorted(INTERPRETER_EXAMPLES):
        session.run("python", f"examples/{name}")


@nox.session(python="3.11")
def ray(session: nox.Session) -> None:
    """RayHost on real local Ray clusters (tests/on_ray), and examples/ray_cluster.py."""
    session.install(".[test,ray]")
    session.run("python", "-m", "pytest", "tests/on_ray", *session.posargs)


@nox.session(python="3.12")
def docs(session: nox.Session) -> None:
    """The documentation site, in docs/_build/html, built as CI builds it.

    Warnings are errors and every reference must resolve (-W -n), offline:
    intersphinx reads docs/_inventories/. Then the doctests run, and every
    docs/snippets/*.py program runs and must print its .out file.
    """
    session.install(".[docs]")
    sphinx = ["sphinx-build", "-E", "-W", "--keep-going", "-n"]
    session.run(*sphinx, "-b", "html", "docs", "docs/_build/html")
    session.run(*sphinx, "-b", "doctest", "docs", "docs/_build/doctest")
    session.run("python", "docs/run_snippets.py")


@nox.session
def bench(session: nox.Session) -> None:
    """The benchmarks: threads (results.{md,png}), processes (processes.md), Ray (ray.md)."""
    session.install(".[ray]", "matplotlib", "trio-parallel")
    session.run("python", "-m", "benchmarks", *session.posargs)
    session.run("python", "-m", "benchmarks.processes")
    session.run("python", "-m", "benchmarks.on_ray")


@nox.session(name="bench-interpreters", python="3.13")
def bench_interpreters(session: nox.Session) -> None:
    """InterpreterHost against its peers (interpreters.md), on CPython 3.13."""
    session.install(".")
    session.run("python", "-m", "benchmarks.interpreters", *session.posargs)
