"""`pulseops demo` (and `up --demo`): demo tenants and keys, and a month of history (pulseops/demo.py)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

from pulseops.settings import Settings


def ingest_url(settings: Settings) -> str:
    """The base URL of this system's ingest API."""
    return f"http://{settings.ingest.host}:{settings.ingest.port}"


def run_demo(
    settings: Settings, ingest_url: str, events: int, days: int, out: Callable[[str], None] = print
) -> None:
    """Demo tenants and keys, and `events` of history over `days` landed as history (pulseops/demo.py)."""
    from pulseops import demo
    from warehouse.db import connect
    from warehouse.tenants import create_api_key

    keys: dict[str, str] = {}
    lines = []
    with connect(settings.db.url, autocommit=True) as conn:
        projects = demo.ensure_projects(conn)
        for tier, p in projects.items():
            _, ingest_key = create_api_key(
                conn, org_id=p.org_id, project_id=p.project_id, kind="ingest", name="demo"
            )
            _, read_key = create_api_key(
                conn, org_id=p.org_id, project_id=p.project_id, kind="read", name="demo"
            )
            keys[tier] = ingest_key
            lines.append(
                f"  {p.org_slug}/{p.project_slug:7} project {p.project_id}\n    ingest key {ingest_key}\n"
                f"    read key   {read_key}"
            )
        _, org_key = create_api_key(
            conn, org_id=projects["hot"].org_id, project_id=None, kind="read", name="demo dashboard"
        )
        lines.append(f"  dashboard demo key (read key of every acme project) {org_key}")
        out("Demo tenants (keys are shown once):\n" + "\n".join(lines))
        started = time.perf_counter()
        generated, landed = demo.load_history(conn, projects, events, days, demo.demo_seed())
    out(
        f"Demo: {landed:,} events of the last {days} days loaded as history in {time.perf_counter() - started:.1f}s "
        f"({generated - landed:,} exact re-sends deduplicated; {demo.LATE_RATIO:.0%} arrived late, like delayed "
        "uploads)"
    )
    out(
        "Try it:\n"
        f"  curl -si -X POST {ingest_url}/v1/events -H 'X-API-Key: {keys['hot']}' -H 'Content-Type: application/json' "
        f'-d \'{{"event": "signup", "distinct_id": "u-1", "event_id": "{uuid.uuid4()}", '
        '"properties": {"plan": "pro"}}\'',
    )
