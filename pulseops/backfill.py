"""`pulseops backfill`: the aggregates of a range of UTC days rebuilt in one Dagster run, on this system's
own Dagster instance (its storage database beside the warehouse's, created here when missing)."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import date
from pathlib import Path

from pulseops.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
AGGREGATE_ASSETS = "event_rollups,user_activity,daily_aggregates"


def dagster_instance(settings: Settings) -> dict[str, str]:
    """Create the Dagster storage database and dagster.yaml; returns the env the Dagster processes need."""
    from pulseops import services
    from warehouse.db import ensure_database, with_database

    # <database>_dagster: pulseops_dagster for the default database; a test or scratch system gets its own
    storage = with_database(settings.db.url, settings.db.url.rsplit("/", 1)[1].split("?")[0] + "_dagster")
    ensure_database(storage)
    home = services.write_dagster_instance(settings, storage)
    return {"DAGSTER_HOME": str(home), **services.dagster_env()}


def backfill_command(settings: Settings, start: date, end: date, log: Path | None = None) -> int:
    """`dagster asset materialize --partition-range` (one run thanks to the single-run backfill policy)."""
    if end < start:
        sys.exit("--to must not be before --from")
    env = {**os.environ, **dagster_instance(settings)}
    cmd = [
        sys.executable, "-m", "dagster", "asset", "materialize", "-m", "orchestration.definitions", "-a", "defs",
        "--select", AGGREGATE_ASSETS, "--partition-range", f"{start}...{end}",
    ]  # fmt: skip
    if log is None:
        print("$", " ".join(cmd), flush=True)
        return subprocess.call(cmd, env=env, cwd=ROOT)  # noqa: S603 - this venv's dagster, fixed arguments
    with log.open("ab") as out:  # its run events are Dagster's (UI, event log); the file keeps a copy
        return subprocess.call(cmd, env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)  # noqa: S603 - as above
