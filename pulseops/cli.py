"""`pulseops`: migrate, manage keys, run the whole system (`up`), seed demo data (`demo`).

This module is the composition root: it may import every package (lazily, per command). The services it
starts are separate processes launched by module name under supervisord. Here: the argument parser and the
dispatch to each command's module (admin, up, down, logview, backfill, demo_command; status renders in
pulseops/status.py). `pulseops sql` stays here: tests/security/test_sql_parameters.py reviews it by this path.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import uuid
from datetime import UTC, date, datetime
from pathlib import Path

from pulseops.settings import Settings, get_settings

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> None:
    """Parse the command line and run the command (`bench` passes its arguments to `python -m benchmarks`)."""
    parser = _parser()
    raw = sys.argv[1:] if argv is None else argv
    if raw[:1] == ["bench"]:
        sys.exit(subprocess.call([sys.executable, "-m", "benchmarks", *raw[1:]], cwd=ROOT))
    args = parser.parse_args(argv)
    settings = get_settings()
    if args.command == "migrate":
        from pulseops.admin import migrate

        migrate(settings)
    elif args.command == "keys":
        from pulseops.admin import keys_command

        keys_command(settings, args)
    elif args.command == "up":
        from pulseops.up import up_command

        sys.exit(up_command(settings, args))
    elif args.command == "down":
        from pulseops.down import down_command

        sys.exit(down_command(settings))
    elif args.command == "status":
        sys.exit(status_command(settings, args.json))
    elif args.command == "logs":
        from pulseops.logview import logs_command

        sys.exit(logs_command(settings, args.service, args.follow, args.lines))
    elif args.command == "backfill":
        from pulseops.backfill import backfill_command

        sys.exit(backfill_command(settings, args.start, args.end))
    elif args.command == "sql":
        sys.exit(sql_command(settings, args))
    elif args.command == "demo":
        from pulseops.demo_command import ingest_url, run_demo

        run_demo(settings, args.url or ingest_url(settings), args.events, args.days)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pulseops", description="PulseOps analytics backend")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("migrate", help="create the database if needed, migrate it to head, create day partitions")
    _add_keys(sub)
    _add_operations(sub)
    _add_data(sub)
    demo = sub.add_parser("demo", help="create demo orgs/projects/keys and load a month of history")
    demo.add_argument("--events", type=int, default=20_000)
    demo.add_argument("--days", type=int, default=30)
    demo.add_argument("--url", help="ingest base URL (default from settings)")

    # The command line never imports benchmarks (they sit above it): `pulseops bench ARGS` runs
    # `python -m benchmarks ARGS`, whose --help lists the options.
    sub.add_parser("bench", help="run the benchmark suite and write a dated report (= python -m benchmarks)")

    return parser


def _add_keys(sub: argparse._SubParsersAction) -> None:
    keys = sub.add_parser("keys", help="manage API keys").add_subparsers(dest="keys_command", required=True)
    create = keys.add_parser("create", help="create an org/project if missing and a key for it")
    create.add_argument("--org", required=True, help="org slug")
    create.add_argument("--project", help="project slug (required for ingest keys)")
    create.add_argument(
        "--kind",
        choices=["ingest", "read"],
        default="ingest",
        help="ingest: write-only, may sit in a web page; read: server-side secret for queries",
    )
    create.add_argument("--name", default="", help="a label to recognise the key in `keys list`")
    create.add_argument("--rate", type=float, help="events/s allowed for this key (default from settings)")
    create.add_argument("--burst", type=float, help="bucket size in events (default from settings)")
    listing = keys.add_parser("list", help="list keys (never their secret)")
    listing.add_argument("--org", help="only this org slug")
    revoke = keys.add_parser("revoke", help="revoke a key by id")
    revoke.add_argument("key_id", type=uuid.UUID)


def _add_operations(sub: argparse._SubParsersAction) -> None:
    """`up`, `down`, `status`, `logs`: run the system and look at it."""
    up = sub.add_parser("up", help="run every service under supervisord; Ctrl-C stops them all")
    up.add_argument("--demo", action="store_true", help="also create demo tenants and send demo events")
    up.add_argument("--demo-events", type=int, default=20_000, help="events of history (default 20,000)")
    up.add_argument("--demo-rate", type=float, default=3.0, help="live demo events per second (default 3)")
    up.add_argument("--workers", type=int, help="landing worker processes (default from settings)")
    up.add_argument(
        "--detach", action="store_true", help="return once the services are up; `pulseops down` stops them"
    )
    sub.add_parser(
        "down", help="stop the services of `pulseops up` (detached or not); waits until they are gone"
    )
    status = sub.add_parser(
        "status",
        help="services, landing lag, last landed event, stale days, dead letters, Dagster daemon; exit 1 if "
        "something is down",
    )
    status.add_argument("--json", action="store_true", help="one JSON document (for scripts and checks)")
    logs = sub.add_parser(
        "logs", help="show a service's log from <state_dir>/logs (all services without one)"
    )
    logs.add_argument("service", nargs="?", help="e.g. ingest, streams, dagster-daemon, supervisord")
    logs.add_argument("-f", "--follow", action="store_true", help="keep printing new lines")
    logs.add_argument("-n", "--lines", type=int, default=50, help="last lines of each log (default 50)")


def _add_data(sub: argparse._SubParsersAction) -> None:
    """`backfill` and `sql`: rebuild aggregates, query the cold tier."""
    backfill = sub.add_parser(
        "backfill", help="rebuild the aggregates of a range of UTC days in one Dagster run"
    )
    backfill.add_argument(
        "--from", dest="start", required=True, type=date.fromisoformat, help="first day, YYYY-MM-DD"
    )
    backfill.add_argument(
        "--to", dest="end", required=True, type=date.fromisoformat, help="last day, YYYY-MM-DD"
    )

    query = sub.add_parser(
        "sql",
        help="ad-hoc SQL (DuckDB) over one project's cold tier: views events, event_rollups, daily_aggregates",
        description="Runs SQL in DuckDB over the verified Parquet files of one project only (the connection "
        "cannot open any other file). Days appear once exported (the day after they end, by default).",
    )
    query.add_argument(
        "query", help='e.g. "SELECT event_name, count(*) FROM events GROUP BY 1 ORDER BY 2 DESC"'
    )
    query.add_argument(
        "--project", help="org/project slugs (required unless a project-bound read key is given)"
    )
    query.add_argument(
        "--key", help="a read key: limits the query to its project (or its org); default $PULSEOPS_READ_KEY"
    )
    query.add_argument("--from", dest="start", type=date.fromisoformat, help="first UTC day, YYYY-MM-DD")
    query.add_argument("--to", dest="end", type=date.fromisoformat, help="last UTC day, YYYY-MM-DD")
    query.add_argument("--format", choices=["table", "csv", "jsonl"], default="table")
    query.add_argument("--max-rows", type=int, default=100, help="rows printed in table format")


def status_command(settings: Settings, as_json: bool) -> int:
    from pulseops import status

    report = status.gather(settings)
    print(json.dumps(report, indent=2, default=str) if as_json else status.render(report))
    return 0 if report["ok"] else 1


def sql_command(settings: Settings, args: argparse.Namespace) -> int:
    """`pulseops sql`: one project's cold-tier views in a sealed DuckDB connection (warehouse.cold.open_cold)."""
    import duckdb

    from warehouse.cold import iter_days, open_cold
    from warehouse.db import connect

    with connect(settings.db.url, autocommit=True) as conn:
        project_id = _sql_scope(conn, args.project, args.key or os.environ.get("PULSEOPS_READ_KEY"))
        days = None
        if args.start or args.end:
            first = args.start or date(1970, 1, 1)
            last = args.end or datetime.now(UTC).date()
            days = iter_days(first, last)
        scope = open_cold(conn, project_id, settings.cold, days=days)
    with scope:
        try:
            cur = scope.duck.execute(args.query)
        except duckdb.Error as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        if cur.description is None:
            return 0
        columns = [d[0] for d in cur.description]
        if args.format == "csv":
            import csv

            writer = csv.writer(sys.stdout)
            writer.writerow(columns)
            while batch := cur.fetchmany(10_000):
                writer.writerows(batch)
        elif args.format == "jsonl":
            import orjson

            while batch := cur.fetchmany(10_000):
                for row in batch:
                    sys.stdout.write(
                        orjson.dumps(dict(zip(columns, row, strict=True)), default=str).decode() + "\n"
                    )
        else:
            rows = cur.fetchmany(args.max_rows + 1)
            _print_table(columns, rows[: args.max_rows])
            if len(rows) > args.max_rows:
                print(f"(more than {args.max_rows} rows; use --max-rows or --format csv)")
        return 0


def _sql_scope(conn, project: str | None, key: str | None):
    """The project a `pulseops sql` may read: --project org/project, narrowed by a read key when given."""
    from warehouse.tenants import find_project, lookup_api_key

    wanted = None
    if project:
        org_slug, _, project_slug = project.partition("/")
        wanted = find_project(conn, org_slug, project_slug)
        if wanted is None:
            sys.exit(f"no project {project!r} (expected org/project)")
    if key is None:
        if wanted is None:
            sys.exit("give --project org/project or a read key (--key or PULSEOPS_READ_KEY)")
        return wanted.id
    row = lookup_api_key(conn, key)
    if row is None or row.kind != "read":
        sys.exit("not an active read key")
    if row.project_id is not None:
        if wanted is not None and wanted.id != row.project_id:
            sys.exit("this read key is for another project")
        return row.project_id
    if wanted is None:
        sys.exit("this read key covers a whole org: add --project org/project")
    if wanted.org_id != row.org_id:
        sys.exit("this read key is for another org")
    return wanted.id


def _print_table(columns: list[str], rows: list[tuple]) -> None:
    cells = [columns, *[["NULL" if v is None else str(v) for v in row] for row in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(columns))]
    for n, r in enumerate(cells):
        print("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip())
        if n == 0:
            print("  ".join("-" * w for w in widths))
    print(f"({len(rows)} rows)")


if __name__ == "__main__":
    main()
