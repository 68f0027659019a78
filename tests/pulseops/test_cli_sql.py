"""`pulseops sql`: DuckDB over one project's cold-tier Parquet, as a subprocess with real PostgreSQL."""

from __future__ import annotations

import csv
import io
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest

from benchmarks.generator import GeneratorConfig, TenantSpec, generate
from pulseops.settings import ColdSettings
from tests.fixtures.system import ROOT
from tests.utils.events import land_rows, landing_rows
from tests.utils.tenants import make_tenant
from warehouse import cold
from warehouse.aggregates import rebuild_day
from warehouse.tenants import create_api_key

END = datetime(2026, 4, 20, tzinfo=UTC)


@pytest.fixture
def exported(db, database_url, tmp_path: Path):
    settings = ColdSettings(url=str(tmp_path / "cold"))
    a, b = make_tenant(db, "acme", "web"), make_tenant(db, "globex", "shop")
    projects = {"a": (a["org_id"], a["project_id"]), "b": (b["org_id"], b["project_id"])}
    config = GeneratorConfig(
        seed=9, end=END, days=3, total_events=2_000, late_ratio=0.0, duplicate_ratio=0.0,
        tenants=[TenantSpec("a", 0.5, 80), TenantSpec("b", 0.5, 80)],
    )  # fmt: skip
    rows = landing_rows(generate(config), projects, received_at=END)
    land_rows(db, rows)
    days = sorted({r[1].date() for r in rows})
    for day in days:
        rebuild_day(db, day)
        cold.export_day(db, database_url, day, settings)
        assert cold.verify_day(db, day, settings).ok
    return settings, rows, days, a, b


def _sql(database_url: str, settings: ColdSettings, *args: str, key: str | None = None):
    env = {k: v for k, v in os.environ.items() if not k.startswith("PULSEOPS_")}
    env.update({"PULSEOPS_DB__URL": database_url, "PULSEOPS_COLD__URL": settings.url})
    if key:
        env["PULSEOPS_READ_KEY"] = key
    return subprocess.run(
        [sys.executable, "-m", "pulseops.cli", "sql", *args],
        env=env, cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_sql_answers_over_one_projects_cold_events_only(db, database_url, exported):
    settings, rows, days, a, _b = exported
    out = _sql(
        database_url, settings, "--project", "acme/web", "--format", "csv",
        "SELECT project_id, count(*) AS n, min(event_time)::DATE AS first FROM events GROUP BY 1",
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    got = list(csv.DictReader(io.StringIO(out.stdout)))
    want = sum(1 for r in rows if r[0] == a["project_id"])
    assert got == [{"project_id": str(a["project_id"]), "n": str(want), "first": str(days[0])}]
    # daily_aggregates and rollups are there too, and agree with the raw events
    out = _sql(
        database_url, settings, "--project", "acme/web", "--format", "jsonl",
        "SELECT (SELECT sum(value) FROM daily_aggregates WHERE metric = 'events' AND dimensions::VARCHAR = '{}') "
        "AS aggregated, (SELECT sum(events) FROM event_rollups) AS rolled, (SELECT count(*) FROM events) AS raw",
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert orjson.loads(out.stdout) == {"aggregated": want, "rolled": want, "raw": want}
    # --from/--to narrow the days
    out = _sql(database_url, settings, "--project", "acme/web", "--from", str(days[1]), "--to", str(days[1]),
               "--format", "csv", "SELECT DISTINCT event_time::DATE AS d FROM events")  # fmt: skip
    assert out.stdout.split() == ["d", str(days[1])]


def test_sql_cannot_reach_another_tenants_files_or_reopen_access(db, database_url, exported):
    settings, _rows, days, _a, b = exported
    other = Path(settings.url) / cold.relative_path(cold.EVENTS, days[0], b["project_id"])
    assert other.exists()
    for query in (
        f"SELECT count(*) FROM read_parquet('{other}')",
        f"SELECT count(*) FROM '{Path(settings.url)}/events/*/*/events.parquet'",
        "SET enable_external_access = true",
        "COPY events TO '/tmp/pulseops-leak.csv'",
        "ATTACH '/tmp/pulseops-leak.duckdb'",
    ):
        out = _sql(database_url, settings, "--project", "acme/web", query)
        assert out.returncode == 1, (query, out.stdout)
        assert "error:" in out.stderr
    assert not Path("/tmp/pulseops-leak.csv").exists()


def test_sql_with_read_keys(db, database_url, exported):
    settings, _rows, _days, a, b = exported
    count = "SELECT count(DISTINCT project_id) AS projects, any_value(project_id) AS p FROM events"
    out = _sql(database_url, settings, "--format", "csv", count, key=a["read_key"])
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[1] == f"1,{a['project_id']}"
    # a project-bound key cannot be pointed at another project
    refused = _sql(database_url, settings, "--project", "globex/shop", count, key=a["read_key"])
    assert refused.returncode != 0 and "another project" in refused.stderr
    # ingest keys do not read
    refused = _sql(database_url, settings, count, key=a["ingest_key"])
    assert refused.returncode != 0 and "read key" in refused.stderr
    # an org-wide read key needs --project, within its org
    _id, org_key = create_api_key(db, org_id=b["org_id"], project_id=None, kind="read")
    assert "--project" in _sql(database_url, settings, count, key=org_key).stderr
    assert "another org" in _sql(database_url, settings, "--project", "acme/web", count, key=org_key).stderr
    out = _sql(database_url, settings, "--project", "globex/shop", "--format", "csv", count, key=org_key)
    assert out.returncode == 0 and out.stdout.split()[1] == f"1,{b['project_id']}"
    # nothing at all: refused
    assert _sql(database_url, settings, count).returncode != 0


def test_sql_table_output_and_an_unexported_project(db, database_url, exported):
    settings, _rows, _days, _a, _b = exported
    make_tenant(db, "initech", "new")
    out = _sql(database_url, settings, "--project", "initech/new", "SELECT count(*) AS n FROM events")
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[0].strip() == "n" and out.stdout.splitlines()[2].strip() == "0"
    out = _sql(database_url, settings, "--project", "acme/web", "--max-rows", "3", "SELECT * FROM events")
    assert "(3 rows)" in out.stdout and "more than 3 rows" in out.stdout
