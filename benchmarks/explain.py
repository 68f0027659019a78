"""Query-plan capture for the dashboard query set: `python -m benchmarks.explain --size …`.

Data is generated inside PostgreSQL as `benchmarks.queries` does (3 projects at 60/30/10 %, every day but the
last two aggregated, VACUUM ANALYZE). Then each dashboard question runs through the same warehouse call the
GraphQL API makes, inside the same read snapshot, with PostgreSQL's `auto_explain` loaded in that session
(`log_min_duration = 0`, `log_analyze`, `log_buffers`, `log_level = notice`): every statement the call
really executes, with the parameters it really bound, comes back as a NOTICE carrying its
EXPLAIN (ANALYZE, BUFFERS) plan in text form. Nothing is re-typed or guessed, so a change in the warehouse's
SQL shows up here by itself.

Each question runs once to warm the caches, then once captured. The summary gives per statement its execution
time, how many `events` day partitions it scanned of how many exist (pruning), its scan kinds (index, index
only, bitmap, sequential) and the rows it returned; the plans themselves are the raw output.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

import psycopg

from benchmarks.harness import machine_notes, scratch_database
from benchmarks.orchestration import generate
from benchmarks.report import scenario_cli
from pulseops.settings import Settings
from warehouse.aggregates import rebuild_day
from warehouse.reads import explore, series
from warehouse.reads.exact import Scope, snapshot
from warehouse.reads.filters import FilterOp, PropertyFilter
from warehouse.tenants import ensure_org, ensure_project

SIZES = {
    "small": {"days": 14, "per_day": 10_000},
    "medium": {"days": 90, "per_day": 56_000},
    "large": {"days": 90, "per_day": 111_112},  # 10 M events
}

# auto_explain settings for the capturing session only (the library is loaded with LOAD, per session, so
# neither postgresql.conf nor a server restart is involved). VERBOSE stays off, format text.
_AUTO_EXPLAIN = (
    "auto_explain.log_min_duration = 0",
    "auto_explain.log_analyze = on",
    "auto_explain.log_buffers = on",
    "auto_explain.log_timing = on",
    "auto_explain.log_verbose = off",
    "auto_explain.log_nested_statements = on",
    "auto_explain.log_format = text",
    "auto_explain.log_level = notice",
    "client_min_messages = notice",
)

_NOTICE = re.compile(r"duration: ([0-9.]+) ms\s+plan:\nQuery Text: (.*?)\n(?=\S)(.*)", re.S)
_PARTITION = re.compile(r"\bon (events_p\d{8})\b")
# a Bitmap Index Scan is the index half of a Bitmap Heap Scan: counted with it, not as an index scan
_SCAN = re.compile(
    r"(Parallel )?(?<!Bitmap )(Seq Scan|Index Only Scan|Index Scan|Bitmap Heap Scan)(?: using \S+)? on (\w+)"
)
_EVENTS_SCAN_ROWS = re.compile(r"Scan (?:using \S+ )?on events_p\d{8}\b.*? rows=(\d+) loops=(\d+)\)")
_BUFFERS = re.compile(r"Buffers: shared((?: \w+=\d+)+)")
_ROWS = re.compile(r"actual time=[0-9.]+\.\.[0-9.]+ rows=(\d+)")
_READS_EVENTS = re.compile(r"\b(?:FROM|JOIN)\s+events\b(?!_)", re.I)
_REMOVED = re.compile(r"Subplans Removed: (\d+)")


@dataclass
class Plan:
    """One statement as auto_explain reported it."""

    query: str
    duration_ms: float
    text: str

    @property
    def partitions(self) -> set[str]:
        return set(_PARTITION.findall(self.text))

    @property
    def removed_at_run_time(self) -> int:
        return sum(int(n) for n in _REMOVED.findall(self.text))

    @property
    def scans(self) -> dict[str, int]:
        """Scan kind -> count; partitions of `events` are counted as `events`, other tables by name."""
        out: dict[str, int] = {}
        for _parallel, kind, rel in _SCAN.findall(self.text):
            name = "events" if rel.startswith("events_p") else rel
            label = f"{kind} {name}"
            out[label] = out.get(label, 0) + 1
        return out

    @property
    def rows(self) -> int:
        m = _ROWS.search(self.text)
        return int(m.group(1)) if m else 0

    @property
    def events_rows_read(self) -> int:
        """Rows the scans of `events` partitions returned (after their filters), summed over loops."""
        return sum(int(n) * int(loops) for n, loops in _EVENTS_SCAN_ROWS.findall(self.text))

    @property
    def buffers(self) -> str:
        """The top node's shared buffers (hit/read), i.e. the whole statement's."""
        m = _BUFFERS.search(self.text)
        if not m:
            return "no buffers"
        parts = dict(kv.split("=") for kv in m.group(1).split())
        return f"buffers hit {int(parts.get('hit', 0)):,} read {int(parts.get('read', 0)):,}"

    @property
    def reads_events(self) -> bool:
        """The statement reads the partitioned `events` table (even if every partition was pruned)."""
        return bool(_READS_EVENTS.search(self.query)) or bool(self.partitions)

    @property
    def trivial(self) -> bool:
        """The snapshot's own `SELECT set_config(...)`: planned and logged, but reads no table."""
        return self.query.lstrip().lower().startswith("select set_config(")


def _cases(hot, today) -> list[tuple[str, Callable[[psycopg.Connection, Scope], object], Scope]]:
    """The direct warehouse calls of `benchmarks.queries` (keep the two lists in step)."""
    month = (today - timedelta(days=29), today)
    week = (today - timedelta(days=6), today)
    built = (today - timedelta(days=29), today - timedelta(days=2))  # every day aggregated
    pro = (PropertyFilter("plan", FilterOp.EQ, "pro"),)

    def overview(c: psycopg.Connection, s: Scope) -> object:
        return series.total_events(c, s), series.active_users(c, s, 1), series.top_events(c, s, 10)

    return [
        ("eventCounts DAY 30d", lambda c, s: series.event_counts(c, s, "day"), Scope(hot, *month)),
        ("eventCounts HOUR 7d New York", lambda c, s: series.event_counts(c, s, "hour"),
         Scope(hot, *week, "America/New_York")),
        ("eventCounts DAY 28 built days", lambda c, s: series.event_counts(c, s, "day"), Scope(hot, *built)),
        ("eventCounts DAY 28 built days, New York", lambda c, s: series.event_counts(c, s, "day"),
         Scope(hot, *built, "America/New_York")),
        ("metrics overview 28 built days", overview, Scope(hot, *built)),
        ("activeUsers DAU 30d", lambda c, s: series.active_users(c, s, 1), Scope(hot, *month)),
        ("topEvents 30d", lambda c, s: series.top_events(c, s, 10), Scope(hot, *month)),
        ("metrics overview 30d", overview, Scope(hot, *month)),
        ("eventCounts DAY 7d plan=pro (raw)", lambda c, s: series.event_counts(c, s, "day"),
         replace(Scope(hot, *week), filters=pro)),
        ("breakdown plan 7d (raw)", lambda c, s: explore.breakdown(c, s, "plan", 20), Scope(hot, *week)),
    ]  # fmt: skip


def capture(
    conn: psycopg.Connection, fn: Callable[[psycopg.Connection, Scope], object], scope: Scope
) -> list[Plan]:
    """Run one warehouse call as the API does (read snapshot) and return the plans of what it executed."""
    notices: list[str] = []

    def on_notice(diag: psycopg.errors.Diagnostic) -> None:
        if diag.message_primary and "plan:" in diag.message_primary:
            notices.append(diag.message_primary)

    conn.add_notice_handler(on_notice)
    try:
        with snapshot(conn, Settings().query.statement_timeout_ms * 6):
            fn(conn, scope)
    finally:
        conn.remove_notice_handler(on_notice)
    plans = []
    for text in notices:
        m = _NOTICE.match(text)
        if m:
            plans.append(Plan(m.group(2).strip(), float(m.group(1)), m.group(3).rstrip()))
    return plans


def run(size: str) -> dict:
    """Generate, aggregate, capture every statement's plan; `raw` holds the plans, name -> text."""
    cfg = SIZES[size]
    settings = Settings()
    today = datetime.now(UTC).date()
    days = [today - timedelta(days=cfg["days"] - 1 - i) for i in range(cfg["days"])]
    out: dict = {"size": size, "config": cfg, "machine": machine_notes(), "load_before": os.getloadavg()}
    results = []
    with scratch_database(settings.db.url) as db_url, psycopg.connect(db_url, autocommit=True) as conn:
        org = ensure_org(conn, "bench")
        projects = [ensure_project(conn, org, f"p{i}") for i in range(3)]
        out["generate_s"] = generate(conn, days, cfg["per_day"], projects, org)
        t = time.perf_counter()
        for d in days[:-2]:
            rebuild_day(conn, d)
        out["build_s"] = time.perf_counter() - t
        conn.execute("VACUUM ANALYZE")
        out["partitions_total"] = conn.execute(
            "SELECT count(*) FROM pg_inherits WHERE inhparent = 'events'::regclass"
        ).fetchone()[0]
        with psycopg.connect(db_url, autocommit=True) as traced:
            traced.execute("LOAD 'auto_explain'")
            for setting in _AUTO_EXPLAIN:
                traced.execute(f"SET {setting}")
            for name, fn, scope in _cases(projects[0], today):
                with snapshot(conn, 60_000):
                    fn(conn, scope)  # warm-up on the plain connection
                plans = capture(traced, fn, scope)
                results.append({"name": name, "scope": str(scope), "plans": [vars(p) for p in plans]})
    out["load_after"] = os.getloadavg()
    out["results"] = results
    out["raw"] = {
        f"{r['name']} — statement {i + 1}": f"-- {p['duration_ms']:.3f} ms\n-- Query Text:\n{p['query']}\n\n{p['text']}"
        for r in results
        for i, p in enumerate(r["plans"])
    }
    return out


def _scan_summary(scans: dict[str, int]) -> str:
    return ", ".join(f"{k}{f' x{n}' if n > 1 else ''}" for k, n in sorted(scans.items())) or "no table scan"


def render(result: dict) -> str:
    """Per question: statements, their time, pruning, scan kinds and rows; then a plain verdict line each."""
    cfg, total = result["config"], result["partitions_total"]
    lines = [
        f"data: {cfg['days']} days x {cfg['per_day']:,} events, 3 projects 60/30/10 %, generated in "
        f"{result['generate_s']:.0f}s; {cfg['days'] - 2} days aggregated in {result['build_s']:.0f}s; "
        f"`events` has {total} day partitions",
        "plans: auto_explain (log_analyze, log_buffers, text) in the session that runs the warehouse calls, "
        "inside the API's read snapshot; second (warm) run of each question",
        "",
    ]
    for r in result["results"]:
        plans = [Plan(**p) for p in r["plans"]]
        real = [p for p in plans if not p.trivial]
        lines.append(
            f"== {r['name']}: {len(plans)} statements with a plan ({len(real)} reading tables), "
            f"{sum(p.duration_ms for p in plans):.1f} ms in the executor =="
        )
        for i, p in enumerate(plans, 1):
            if p.trivial:
                lines.append(f"  {i}. set_config (snapshot's statement timeout) {p.duration_ms:.3f} ms")
                continue
            parts = p.partitions
            pruning = (
                f"events partitions scanned {len(parts)}/{total} (pruned {total - len(parts)}"
                + (f", {p.removed_at_run_time} at run time" if p.removed_at_run_time else "")
                + ")"
                if parts or p.reads_events
                else "no events partitions"
            )
            read = f", {p.events_rows_read:,} events rows scanned" if p.partitions else ""
            lines.append(
                f"  {i}. {p.duration_ms:8.2f} ms  rows {p.rows:>7,}  {pruning}{read}; {_scan_summary(p.scans)}; "
                f"{p.buffers}"
            )
        if not plans:
            lines.append("  NO PLAN CAPTURED")
    captured = sum(1 for r in result["results"] if r["plans"])
    lines += [
        "",
        f"questions with a plan: {captured}/{len(result['results'])}; "
        f"load average before {'/'.join(f'{v:.2f}' for v in result['load_before'])}, "
        f"after {'/'.join(f'{v:.2f}' for v in result['load_after'])}",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    result = scenario_cli("explain", SIZES, run, render, argv, doc=__doc__, machine=lambda r: r["machine"])
    if not all(r["plans"] for r in result["results"]):
        raise SystemExit("some questions produced no plan")


if __name__ == "__main__":
    main()
