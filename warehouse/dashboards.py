"""Saved dashboards: a named list of chart panels per project, each panel with its own date range.

Panels are validated here (not only in the browser) because the API stores them as JSON and the web app
renders whatever comes back: an unknown kind or an unbounded list must never reach the table.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import psycopg
from psycopg.rows import class_row
from psycopg.types.json import Jsonb

MAX_PANELS = 24
PANEL_KINDS = ("events", "active_users", "metric")
PRESETS = ("24h", "7d", "30d", "90d")
GRANULARITIES = ("hour", "day", "week", "month")
CHARTS = ("line", "bar")
_UUID = re.compile(r"^[0-9a-fA-F-]{36}$")


class DashboardError(ValueError):
    """A dashboard that cannot be stored; `field` names the offending input."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


@dataclass(frozen=True)
class DashboardRow:
    id: uuid.UUID
    org_id: uuid.UUID
    project_id: uuid.UUID
    name: str
    panels: list[dict[str, Any]]
    created_at: datetime
    updated_at: datetime


def clean_panels(panels: Any) -> list[dict[str, Any]]:
    """The panels in canonical form (known keys only), or DashboardError naming the first bad one."""
    if not isinstance(panels, list) or len(panels) > MAX_PANELS:
        raise DashboardError("panels", f"a list of at most {MAX_PANELS} panels")
    return [_clean_panel(i, p) for i, p in enumerate(panels)]


def _clean_panel(i: int, p: Any) -> dict[str, Any]:
    where = f"panels[{i}]"
    if not isinstance(p, dict):
        raise DashboardError(where, "must be an object")
    title = p.get("title", "")
    if not isinstance(title, str) or len(title) > 200:
        raise DashboardError(f"{where}.title", "at most 200 characters")
    kind = p.get("kind")
    if kind not in PANEL_KINDS:
        raise DashboardError(f"{where}.kind", f"one of {', '.join(PANEL_KINDS)}")
    granularity = p.get("granularity", "day")
    if granularity not in GRANULARITIES:
        raise DashboardError(f"{where}.granularity", f"one of {', '.join(GRANULARITIES)}")
    chart = p.get("chart", "line")
    if chart not in CHARTS:
        raise DashboardError(f"{where}.chart", f"one of {', '.join(CHARTS)}")
    out: dict[str, Any] = {"title": title, "kind": kind, "granularity": granularity, "chart": chart}
    out["range"] = _clean_range(f"{where}.range", p.get("range", {"preset": "7d"}))
    if kind == "metric":
        metric_id = p.get("metricId")
        if not isinstance(metric_id, str) or not _UUID.match(metric_id):
            raise DashboardError(f"{where}.metricId", "a metric id is required for metric panels")
        out["metricId"] = metric_id.lower()
    else:
        names = p.get("eventNames") or []
        if (
            not isinstance(names, list)
            or len(names) > 10
            or any(not isinstance(n, str) or not 1 <= len(n) <= 200 for n in names)
        ):
            raise DashboardError(f"{where}.eventNames", "at most 10 event names of 1..200 characters")
        out["eventNames"] = names
    if kind == "active_users":
        window = p.get("window", "DAU")
        if window not in ("DAU", "WAU", "MAU"):
            raise DashboardError(f"{where}.window", "one of DAU, WAU, MAU")
        out["window"] = window
    return out


def _clean_range(where: str, r: Any) -> dict[str, str]:
    if not isinstance(r, dict):
        raise DashboardError(where, 'an object: {"preset": "7d"} or {"from": "YYYY-MM-DD", "to": ...}')
    if "preset" in r:
        if r["preset"] not in PRESETS:
            raise DashboardError(f"{where}.preset", f"one of {', '.join(PRESETS)}")
        return {"preset": r["preset"]}
    try:
        start, end = date.fromisoformat(r["from"]), date.fromisoformat(r["to"])
    except (KeyError, TypeError, ValueError):
        raise DashboardError(where, "a preset or from/to dates (YYYY-MM-DD)") from None
    if end < start:
        raise DashboardError(f"{where}.to", "must not be before from")
    return {"from": start.isoformat(), "to": end.isoformat()}


_COLUMNS = "id, org_id, project_id, name, panels, created_at, updated_at"


def _check_name(name: str) -> None:
    if not 1 <= len(name) <= 200:
        raise DashboardError("name", "must be 1..200 characters")


def create_dashboard(
    conn: psycopg.Connection, org_id: uuid.UUID, project_id: uuid.UUID, name: str, panels: Any
) -> DashboardRow:
    _check_name(name)
    cleaned = clean_panels(panels)
    with conn.cursor(row_factory=class_row(DashboardRow)) as cur:
        try:
            return cur.execute(
                f"INSERT INTO dashboards (org_id, project_id, name, panels) VALUES (%s, %s, %s, %s) RETURNING {_COLUMNS}",  # noqa: S608 - constant column list
                (org_id, project_id, name, Jsonb(cleaned)),
            ).fetchone()
        except psycopg.errors.UniqueViolation as exc:
            raise DashboardError("name", "a dashboard with this name exists in the project") from exc


def update_dashboard(
    conn: psycopg.Connection, dashboard_id: uuid.UUID, name: str, panels: Any
) -> DashboardRow | None:
    _check_name(name)
    cleaned = clean_panels(panels)
    with conn.cursor(row_factory=class_row(DashboardRow)) as cur:
        try:
            return cur.execute(
                f"UPDATE dashboards SET name = %s, panels = %s, updated_at = clock_timestamp() WHERE id = %s RETURNING {_COLUMNS}",  # noqa: S608 - constant column list
                (name, Jsonb(cleaned), dashboard_id),
            ).fetchone()
        except psycopg.errors.UniqueViolation as exc:
            raise DashboardError("name", "a dashboard with this name exists in the project") from exc


def delete_dashboard(conn: psycopg.Connection, dashboard_id: uuid.UUID) -> bool:
    return conn.execute("DELETE FROM dashboards WHERE id = %s", (dashboard_id,)).rowcount == 1


def get_dashboard(conn: psycopg.Connection, dashboard_id: uuid.UUID) -> DashboardRow | None:
    with conn.cursor(row_factory=class_row(DashboardRow)) as cur:
        return cur.execute(
            f"SELECT {_COLUMNS} FROM dashboards WHERE id = %s",  # noqa: S608 - constant column list
            (dashboard_id,),
        ).fetchone()


def list_dashboards(conn: psycopg.Connection, project_id: uuid.UUID) -> list[DashboardRow]:
    with conn.cursor(row_factory=class_row(DashboardRow)) as cur:
        return cur.execute(
            f"SELECT {_COLUMNS} FROM dashboards WHERE project_id = %s ORDER BY name",  # noqa: S608 - constant column list
            (project_id,),
        ).fetchall()
