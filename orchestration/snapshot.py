"""The committed Dagster definitions snapshot, `orchestration/definitions.json`: what the code location offers.

Asset keys (with their partitioning and group), asset checks, jobs, sensors and schedules, as sorted JSON, so
that a renamed asset, a dropped check or a new sensor is a visible line in review rather than a surprise for
the pipeline page, the run history or someone's saved Dagster views. `python -m orchestration.snapshot`
rewrites it (also `make snapshots`); `--check` exits 1 when it is out of date; tests/orchestration/
test_definitions_snapshot.py fails until a change comes with its snapshot.
"""

from __future__ import annotations

import argparse
import difflib
import json
import sys
from pathlib import Path
from typing import Any

SNAPSHOT = Path(__file__).with_name("definitions.json")
REGENERATE = "python -m orchestration.snapshot"


def current() -> dict[str, Any]:
    """The definitions as Dagster loads them (orchestration/definitions.py)."""
    from orchestration.definitions import defs

    repo = defs.get_repository_def()
    graph = repo.asset_graph
    assets = {}
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        partitions = node.partitions_def
        assets[key.to_user_string()] = {
            "group": node.group_name,
            "partitions": type(partitions).__name__ if partitions is not None else None,
            "depends_on": sorted(k.to_user_string() for k in node.parent_keys),
        }
    return {
        "assets": dict(sorted(assets.items())),
        "asset_checks": sorted(f"{c.asset_key.to_user_string()}:{c.name}" for c in graph.asset_check_keys),
        "jobs": sorted(j.name for j in repo.get_all_jobs()),
        "sensors": sorted(s.name for s in repo.sensor_defs),
        "schedules": sorted(f"{s.name} ({s.cron_schedule})" for s in repo.schedule_defs),
    }


def render(snapshot: dict[str, Any]) -> str:
    return json.dumps(snapshot, indent=2, sort_keys=False) + "\n"


def difference(now: str, committed: str) -> str:
    """A unified diff from the committed snapshot to `now`; empty when they agree."""
    return "".join(
        difflib.unified_diff(
            committed.splitlines(keepends=True),
            now.splitlines(keepends=True),
            fromfile=f"{SNAPSHOT.name} (committed)",
            tofile=f"{SNAPSHOT.name} (from the code)",
        )
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=REGENERATE, description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only compare; exit 1 when out of date")
    args = parser.parse_args(argv)
    now = render(current())
    committed = SNAPSHOT.read_text(encoding="utf-8") if SNAPSHOT.exists() else ""
    if args.check:
        diff = difference(now, committed)
        sys.stdout.write(diff or f"{SNAPSHOT} is up to date\n")
        return 1 if diff else 0
    SNAPSHOT.write_text(now, encoding="utf-8")
    sys.stdout.write(f"wrote {SNAPSHOT}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
