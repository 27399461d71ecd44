"""The pages agree with each other and with the code: the kinds of drift a newcomer met.

- One install line: from a checkout (``pip install '.[ray]'``); the package is
  not on PyPI, so ``pip install 'trio_pool[ray]'`` would fail.
- One table of log levels (docs/semantics.rst, "Logging"); no page says
  another level for the same thing. The code's levels are pinned by the
  logger tests in test_pool.py and test_workers.py.
- An option is written with the object that takes it:
  ``ProcessHost(kill_on_cancel=True)``, not a bare ``kill_on_cancel=True``
  (``Pool(kill_on_cancel=True)`` was a newcomer's first guess).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pytest itself needs tomli there
    import tomli as tomllib

ROOT = Path(__file__).parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.rst"))]
SOURCES = [
    *PAGES,
    *sorted((ROOT / "docs").rglob("*.py")),
    *sorted((ROOT / "examples").glob("*.py")),
    *sorted((ROOT / "benchmarks").glob("*.py")),
    *sorted((ROOT / "benchmarks").glob("*.md")),
    *sorted((ROOT / "trio_pool").rglob("*.py")),
]
PAGES = [p for p in PAGES if "_build" not in p.parts]
SOURCES = [p for p in SOURCES if "_build" not in p.parts]

# What the pool logs, at which levels (docs/semantics.rst's table says the same).
LEVELS = {
    "loader": {"DEBUG", "INFO", "WARNING"},
    "hook": {"DEBUG", "WARNING"},
    "done-callback": {"ERROR"},
    "autoscal": {"INFO", "WARNING"},
    "resize": {"INFO"},
    "died": {"WARNING"},
    "replacement": {"WARNING"},
    "renewal": {"INFO"},
}
LEVEL = re.compile(r"\b(DEBUG|INFO|WARNING|ERROR)\b")


def sentences(text: str) -> list[str]:
    """Sentences (and parts after a semicolon), and each row of a list-table of levels."""
    text = re.sub(r"\n\s*\*\s+-\s+(DEBUG|INFO|WARNING|ERROR)\s*\n\s+-", r"\n\n\1: ", text)
    found: list[str] = []
    for paragraph in re.split(r"\n\s*\n", text):
        found += re.split(r"(?<=[.;])\s+", " ".join(paragraph.split()))
    return found


def test_install_lines_are_the_checkout_form_and_name_real_extras() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = set(project["optional-dependencies"])
    for path in SOURCES:
        text = path.read_text()
        assert "trio_pool[" not in text, f"{path}: install from a checkout: '.[extra]'"
        for extra in re.findall(r"""pip install [^\n`]*?['"]?\.\[(\w+)\]""", text):
            assert extra in extras, f"{path} installs the extra {extra!r}, which does not exist"


def test_no_page_gives_another_log_level_than_the_table() -> None:
    checked = 0
    for path in PAGES:
        for sentence in sentences(path.read_text()):
            levels = set(LEVEL.findall(sentence))
            if not levels:
                continue
            for subject, allowed in LEVELS.items():
                if subject in sentence.lower():
                    checked += 1
                    assert levels <= allowed, (
                        f"{path.relative_to(ROOT)} logs {subject!r} at {levels - allowed}, "
                        f"but the pool does at {allowed}: {sentence!r}"
                    )
    assert checked >= 5  # the table itself is among them


def test_the_drift_check_catches_the_old_reference_page() -> None:
    old = (
        "The pool logs to the logging logger named trio_pool: worker start and stop at "
        "DEBUG; resizes and autoscaling decisions at INFO; a worker process that died, and "
        "its replacement, at WARNING; a loader that failed, an exit hook that raised, and a "
        "done-callback that raised at ERROR, with the traceback."
    )
    found = [
        s
        for s in sentences(old)
        if "loader" in s.lower() and not set(LEVEL.findall(s)) <= LEVELS["loader"]
    ]
    assert found


def test_options_are_written_with_the_host_that_takes_them() -> None:
    for path in PAGES:
        for match in re.finditer(r"(\S*)kill_on_cancel=True", path.read_text()):
            assert match.group(1).endswith("Host("), (
                f"{path.relative_to(ROOT)}: write ProcessHost(kill_on_cancel=True) or "
                f"RayHost(kill_on_cancel=True), not {match.group(0)!r}"
            )
