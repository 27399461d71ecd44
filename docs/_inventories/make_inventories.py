"""Write the small intersphinx inventories for trio, anyio and outcome.

The docs build offline, so intersphinx reads inventories from this folder
instead of fetching them. These three list only the names the docs refer to,
each at the page and anchor where that project's own documentation puts it
(checked against the ``.rst`` sources in the trio 0.35.0, anyio 4.16.0 and
outcome 1.3.0.post0 sdists). To refer to a new name, add it below and run::

    python -m pip install sphobjinv
    python docs/_inventories/make_inventories.py

``python3.inv`` is not made here: it is the real inventory of the Python
documentation (see README).
"""

from __future__ import annotations

from pathlib import Path

import sphobjinv as soi

HERE = Path(__file__).parent

# project: (version, {page: [(name, role), ...]})
PROJECTS: dict[str, tuple[str, dict[str, list[tuple[str, str]]]]] = {
    "trio": (
        "0.35.0",
        {
            "reference-core.html": [
                ("trio", "module"),
                ("trio.run", "function"),
                ("trio.current_time", "function"),
                ("trio.sleep", "function"),
                ("trio.sleep_forever", "function"),
                ("trio.CancelScope", "class"),
                ("trio.move_on_after", "function"),
                ("trio.fail_after", "function"),
                ("trio.open_nursery", "function"),
                ("trio.Nursery", "class"),
                ("trio.Event", "class"),
                ("trio.open_memory_channel", "function"),
                ("trio.CapacityLimiter", "class"),
                ("trio.to_thread", "module"),
                ("trio.to_thread.run_sync", "function"),
                ("trio.to_thread.current_default_thread_limiter", "function"),
                ("trio.from_thread", "module"),
                ("trio.from_thread.run", "function"),
                ("trio.from_thread.run_sync", "function"),
                ("trio.from_thread.check_cancelled", "function"),
                ("trio.Cancelled", "exception"),
                ("trio.WouldBlock", "exception"),
                ("trio.ClosedResourceError", "exception"),
            ],
            "reference-testing.html": [
                ("trio.testing", "module"),
                ("trio.testing.MockClock", "class"),
                ("trio.testing.wait_all_tasks_blocked", "function"),
            ],
        },
    ),
    "anyio": (
        "4.16.0",
        {
            "api.html": [
                ("anyio.run", "function"),
                ("anyio.get_cancelled_exc_class", "function"),
                ("anyio.sleep", "function"),
                ("anyio.sleep_forever", "function"),
                ("anyio.move_on_after", "function"),
                ("anyio.fail_after", "function"),
                ("anyio.CancelScope", "class"),
                ("anyio.create_task_group", "function"),
                ("anyio.abc.TaskGroup", "class"),
                ("anyio.to_thread.run_sync", "function"),
                ("anyio.to_thread.current_default_thread_limiter", "function"),
                ("anyio.from_thread.run", "function"),
                ("anyio.from_thread.run_sync", "function"),
                ("anyio.from_thread.check_cancelled", "function"),
                ("anyio.create_memory_object_stream", "function"),
                ("anyio.Event", "class"),
                ("anyio.CapacityLimiter", "class"),
                ("anyio.ClosedResourceError", "exception"),
                ("anyio.WouldBlock", "exception"),
            ],
        },
    ),
    "outcome": (
        "1.3.0.post0",
        {
            "api.html": [
                ("outcome", "module"),
                ("outcome.capture", "function"),
                ("outcome.acapture", "function"),
                ("outcome.Outcome", "class"),
                ("outcome.Outcome.unwrap", "method"),
                ("outcome.Value", "class"),
                ("outcome.Error", "class"),
                ("outcome.AlreadyUsedError", "class"),
            ],
        },
    ),
}


def main() -> None:
    for project, (version, pages) in PROJECTS.items():
        inventory = soi.Inventory()
        inventory.project = project
        inventory.version = version
        for page, names in pages.items():
            for name, role in names:
                anchor = f"module-{name}" if role == "module" else name
                inventory.objects.append(
                    soi.DataObjStr(
                        name=name,
                        domain="py",
                        role=role,
                        priority="0" if role == "module" else "1",
                        uri=f"{page}#{anchor}",
                        dispname="-",
                    )
                )
        data = soi.compress(inventory.data_file(contract=True))
        soi.writebytes(str(HERE / f"{project}.inv"), data)
        print(f"wrote {project}.inv: {len(inventory.objects)} names")


if __name__ == "__main__":
    main()
