"""Run every file in docs/snippets/ and check its output against the .out file beside it.

The pages show both the code (``literalinclude``) and the output, so neither
can drift from what the library does. ``nox -s docs`` runs this;
``python docs/run_snippets.py --update`` rewrites the .out files after a
deliberate change (read the diff before committing it).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SNIPPETS = Path(__file__).parent / "snippets"


def main() -> int:
    update = "--update" in sys.argv[1:]
    failures = 0
    for path in sorted(SNIPPETS.glob("*.py")):
        result = subprocess.run(
            [sys.executable, str(path)],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        expected_path = path.with_suffix(".out")
        problems = []
        if result.returncode != 0:
            problems.append(f"exit code {result.returncode}")
        if result.stderr:
            problems.append("output on stderr:\n" + result.stderr)
        if update and not problems:
            expected_path.write_text(result.stdout)
        elif not expected_path.exists():
            problems.append(f"no {expected_path.name}: run with --update to write it")
        elif result.stdout != expected_path.read_text():
            problems.append(
                f"stdout differs from {expected_path.name}:\n--- got\n{result.stdout}"
                f"--- expected\n{expected_path.read_text()}"
            )
        if problems:
            failures += 1
            print(f"FAIL {path.name}: " + "\n".join(problems))
        else:
            print(f"ok   {path.name}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
