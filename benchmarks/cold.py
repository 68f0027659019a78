"""Cold-tier benchmark: `python -m benchmarks.cold --size …`.

Figures, all from one run on one scratch database and one scratch cold folder:
  1. Export: N days x M events/day (generated inside PostgreSQL, 3 projects 60/30/10 %) to zstd Parquet
     through ADBC, one file per day and project (what the cold_events asset runs): events/s.
  2. Parity check of the same days (PostgreSQL checksum + DuckDB checksum per file): events/s.
  3. Size: Parquet bytes vs the PostgreSQL partitions' bytes (heap + TOAST, and with their indexes).
  4. A 90-day aggregate (events and distinct users per day and event name) on PostgreSQL and on DuckDB over
     the Parquet files, same run, warm (best of 3): all projects, and one project through the sealed
     per-tenant views `pulseops sql` and the API use. Also DuckDB through an Arrow dataset (the S3 path).
  5. Rebuild of one day's aggregates: from PostgreSQL vs from Parquet with DuckDB.
"""

from __future__ import annotations

import os
import tempfile
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import psycopg
import pyarrow.fs as pafs

from benchmarks.harness import scratch_database
from benchmarks.orchestration import generate
from benchmarks.report import scenario_cli
from pulseops.settings import ColdSettings, Settings
from warehouse.aggregates import rebuild_day
from warehouse.cold.datasets import EVENTS
from warehouse.cold.duck import duckdb_connection, register_files
from warehouse.cold.export import export_day
from warehouse.cold.parity import verify_day
from warehouse.cold.reads import open_cold
from warehouse.cold.store import ColdStore
from warehouse.cold_rebuild import rebuild_day_from_cold
from warehouse.tenants import ensure_org, ensure_project

SIZES = {
    "small": {"days": 3, "per_day": 5_000},
    "medium": {"days": 90, "per_day": 100_000},
}

_PG_QUERY = """
SELECT (event_time AT TIME ZONE 'UTC')::date AS day, event_name, count(*), count(DISTINCT distinct_id)
FROM events WHERE event_time >= %(start)s AND event_time < %(end)s {project}
GROUP BY 1, 2
"""
_DUCK_QUERY = """
SELECT event_time::DATE AS day, event_name, count(*), count(DISTINCT distinct_id)
FROM {table} WHERE event_time >= ? AND event_time < ? GROUP BY 1, 2
"""


def best_of(n: int, fn) -> tuple[float, object]:
    best, result = float("inf"), None
    for _ in range(n):
        started = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - started)
    return best, result


def run(size: str) -> tuple[str, dict]:
    """Generate, export, verify, size, query both engines and rebuild one day: (report text, raw plans)."""
    cfg = SIZES[size]
    settings = Settings()
    raw: dict[str, str] = {}
    today = datetime.now(UTC).date()
    days = [today - timedelta(days=cfg["days"] + 1 - i) for i in range(cfg["days"])]
    load_before = os.getloadavg()
    with scratch_database(settings.db.url) as db_url, tempfile.TemporaryDirectory() as tmp:
        cold = ColdSettings(url=str(Path(tmp) / "cold"))
        with psycopg.connect(db_url, autocommit=True) as conn:
            org = ensure_org(conn, "bench")
            projects = [ensure_project(conn, org, f"p{i}") for i in range(3)]
            gen_s = generate(conn, days, cfg["per_day"], projects, org)
            files, figures = _export_and_verify(conn, db_url, days, cold)
            figures.update(_aggregate_queries(conn, days, files, cold, projects[0], raw))
            figures.update(_rebuild_one_day(conn, days[len(days) // 2], cold))
    text = _text(cfg, {"gen_s": gen_s, **figures}, load_before)
    if not figures["same"] or not figures["rebuild_same"] or figures["failed"]:
        raise SystemExit(text + "\nMISMATCH: see above")
    return text, raw


def _export_and_verify(conn: psycopg.Connection, db_url: str, days: list[date], cold: ColdSettings) -> tuple:
    """Export every day to Parquet, check parity, and size both tiers: (the files, their figures)."""
    started = time.perf_counter()
    files = [f for d in days for f in export_day(conn, db_url, d, cold, [EVENTS])]
    export_s = time.perf_counter() - started

    started = time.perf_counter()
    parity = [verify_day(conn, d, cold, [EVENTS]) for d in days]
    verify_s = time.perf_counter() - started

    heap, with_index = conn.execute(
        "SELECT sum(pg_table_size(c.oid)), sum(pg_total_relation_size(c.oid)) FROM pg_inherits i "
        "JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = 'events'::regclass"
    ).fetchone()
    return files, {
        "files": len(files),
        "export_s": export_s,
        "exported": sum(f.rows for f in files),
        "parquet_bytes": sum(f.bytes for f in files),
        "verify_s": verify_s,
        "failed": sum(not p.ok for p in parity),
        "heap": heap,
        "with_index": with_index,
    }


def _aggregate_queries(
    conn: psycopg.Connection, days: list[date], files: list, cold: ColdSettings, one: uuid.UUID, raw: dict
) -> dict:
    """The N-day aggregate, best of 3, on PostgreSQL and on DuckDB (local files, tenant views, Arrow)."""
    start = datetime.combine(days[0], datetime.min.time(), UTC)
    end = datetime.combine(days[-1] + timedelta(days=1), datetime.min.time(), UTC)
    params = {"start": start, "end": end}
    pg_all_s, pg_all = best_of(3, lambda: conn.execute(_PG_QUERY.format(project=""), params).fetchall())
    pg_one_s, pg_one = best_of(
        3,
        lambda: conn.execute(
            _PG_QUERY.format(project="AND project_id = %(project)s"), {**params, "project": one}
        ).fetchall(),
    )
    plan = conn.execute("EXPLAIN (ANALYZE, BUFFERS) " + _PG_QUERY.format(project=""), params).fetchall()
    raw["PostgreSQL plan of the all-projects query"] = "\n".join(r[0] for r in plan)

    store = ColdStore.from_settings(cold)
    duck_all_s, duck_all = _duck_best_of_3(store, files, start, end)
    with open_cold(conn, one, cold, datasets=[EVENTS]) as scope:
        duck_one_s, duck_one = best_of(
            3, lambda: scope.duck.execute(_DUCK_QUERY.format(table="events"), [start, end]).fetchall()
        )
    # the path S3 takes: a pyarrow dataset registered in DuckDB (here over the same local files)
    arrow_store = ColdStore(pafs.SubTreeFileSystem("/", pafs.LocalFileSystem()), store.root.lstrip("/"))
    arrow_all_s, arrow_all = _duck_best_of_3(arrow_store, files, start, end)
    return {
        "pg_all_s": pg_all_s,
        "pg_one_s": pg_one_s,
        "duck_all_s": duck_all_s,
        "duck_groups": len(duck_all),
        "duck_one_s": duck_one_s,
        "arrow_all_s": arrow_all_s,
        "same": _norm(pg_all) == _norm(duck_all) == _norm(arrow_all) and _norm(pg_one) == _norm(duck_one),
    }


def _duck_best_of_3(store: ColdStore, files: list, start: datetime, end: datetime) -> tuple[float, list]:
    """The all-projects aggregate on DuckDB over the exported files read through `store`, best of 3."""
    duck = duckdb_connection()
    register_files(duck, store, "ev", [f.path for f in files], EVENTS)
    took, rows = best_of(3, lambda: duck.execute(_DUCK_QUERY.format(table="ev"), [start, end]).fetchall())
    duck.close()
    return took, rows


def _rebuild_one_day(conn: psycopg.Connection, day: date, cold: ColdSettings) -> dict:
    """Rebuild one day's aggregates from PostgreSQL, then from Parquet; the rows must be the same."""
    pg_build = rebuild_day(conn, day)
    pg_rows = _aggregates(conn, day)
    cold_build = rebuild_day_from_cold(conn, day, cold)
    return {"pg_build": pg_build, "cold_build": cold_build, "rebuild_same": _aggregates(conn, day) == pg_rows}


def _text(cfg: dict, f: dict, load_before: tuple[float, float, float]) -> str:
    """The report's lines (benchmarks/adapters.py reads "days failed: 0" and "identical across engines")."""
    total = cfg["days"] * cfg["per_day"]
    exported, parquet_bytes, heap, with_index = f["exported"], f["parquet_bytes"], f["heap"], f["with_index"]
    pg_all_s, pg_build, cold_build = f["pg_all_s"], f["pg_build"], f["cold_build"]
    return "\n".join(
        [
            f"data: {cfg['days']} days x {cfg['per_day']:,} events = {total:,} events (3 projects 60/30/10 %), "
            f"generated in PostgreSQL in {f['gen_s']:.1f}s",
            f"export to zstd Parquet (ADBC -> pyarrow, {f['files']} files, file checksum included): "
            f"{exported:,} events in {f['export_s']:.1f}s = {exported / f['export_s']:,.0f} events/s",
            f"parity check (PostgreSQL md5 checksum + DuckDB checksum per file): {f['verify_s']:.1f}s = "
            f"{exported / f['verify_s']:,.0f} events/s; days failed: {f['failed']}",
            f"size: Parquet {parquet_bytes / 2**20:,.1f} MiB vs PostgreSQL partitions {heap / 2**20:,.1f} MiB "
            f"(heap+TOAST; {with_index / 2**20:,.1f} MiB with their indexes) = "
            f"{parquet_bytes / heap:.1%} ({parquet_bytes / with_index:.1%} with the indexes); "
            f"{parquet_bytes / exported:.1f} bytes/event",
            f"{cfg['days']}-day aggregate (per day and event: events, distinct users), all projects, best of 3: "
            f"PostgreSQL {pg_all_s:.2f}s, DuckDB/Parquet {f['duck_all_s']:.2f}s = "
            f"{pg_all_s / f['duck_all_s']:.1f}x faster ({f['duck_groups']:,} groups)",
            f"same, one project (60 %) through the sealed tenant views: PostgreSQL {f['pg_one_s']:.2f}s, "
            f"DuckDB {f['duck_one_s']:.2f}s = {f['pg_one_s'] / f['duck_one_s']:.1f}x faster",
            f"same, all projects, DuckDB over a pyarrow dataset (the S3 code path): {f['arrow_all_s']:.2f}s "
            f"= {pg_all_s / f['arrow_all_s']:.1f}x faster than PostgreSQL",
            f"results identical across engines: {f['same']}",
            f"rebuild one day's aggregates ({pg_build.raw_events:,} events): from PostgreSQL {pg_build.seconds:.2f}s, "
            f"from Parquet with DuckDB {cold_build.seconds:.2f}s; same rows: {f['rebuild_same']}",
            f"machine load (1/5/15-min load average; 2 = both cores busy): before {_load(load_before)}, "
            f"after {_load(os.getloadavg())}",
        ]
    )


def _load(load: tuple[float, float, float]) -> str:
    return "/".join(f"{x:.1f}" for x in load)


def _norm(rows) -> list[tuple]:
    return sorted((str(r[0]), r[1], int(r[2]), int(r[3])) for r in rows)


def _aggregates(conn: psycopg.Connection, day) -> list[tuple]:
    return conn.execute(
        "SELECT project_id, metric, dimensions::text, round(value::numeric, 6), events FROM daily_aggregates "
        "WHERE date = %s ORDER BY 1, 2, 3",
        (day,),
    ).fetchall()


def main(argv: list[str] | None = None) -> None:
    scenario_cli(
        "cold", SIZES, run, lambda r: r[0], argv, doc=__doc__, report="cold-tier", raw=lambda r: r[1]
    )


if __name__ == "__main__":
    main()
