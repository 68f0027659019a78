"""The benchmark suite: `python -m benchmarks [--size small|medium|large] [--only a,b] [--out DIR] [--no-report]`
(also `pulseops bench …`). Runs every scenario in turn, prints its figures as it goes, survives a scenario
failing (the report shows FAILED and the traceback; the exit code is 1 at the end) and writes one dated
report with raw files, result JSON and plots (`benchmarks.report.write_suite_report`).

Scenario protocol — a module (or an adapter in `benchmarks.adapters`) provides:

    run(size: str) -> dict      # size is "small", "medium" or "large"; builds its own scratch database,
                                # Tansu broker and service processes (benchmarks.harness) and tears them down
    render(result: dict) -> str # the human-readable figures (printed, and the report's text)

and the result dict may carry, besides its own figures:

    "series":  dict[str, list[tuple[float, float]]]  # (seconds since the scenario's start, value) for plots;
               # a name "metric:line" puts lines sharing a metric on one panel ("latency p95 (ms):quiet")
    "raw":     dict[str, str]                         # raw output files, title -> text
    "targets": list[dict]                             # rows of the report's one table:
               # {"what": str, "target": str, "measured": str, "met": bool | None, "kind": "target" | "check",
               #  "ceiling": str, "ratio": float, "unjudged": str, "headline": str}  (benchmarks/verdict.py)
               # met None = recorded only; kind "check" = correctness: a miss fails the run like an exception;
               # "unjudged" says why a row is neither met nor missed ("not measured: offered X < required Y",
               # "not exercised"); "headline" names the row in HEADLINE below

Everything must be JSON-serializable with `default=str` (it is saved next to the report). Scenarios drive the
system from outside (HTTP, SQL, subprocesses): the import contract forbids `api`, `streams`, `orchestration`
and `dashboards` here.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import shlex
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from benchmarks.harness import stop_on_signals
from benchmarks.verdict import verdict

if TYPE_CHECKING:
    from benchmarks.report import Outcome

SIZES = ("small", "medium", "large")


@dataclass(frozen=True)
class Scenario:
    name: str
    title: str
    module: str  # "package.module:run_function:render_function", imported when the scenario runs
    sizes: tuple[str, ...] = SIZES
    # result -> summary rows, for modules whose results carry no "targets" of their own
    targets: str | None = None
    # a module someone is still writing: absent, the scenario is reported as not run instead of failing
    optional: bool = False

    def load(self) -> tuple[Callable[[str], dict], Callable[[dict], str], Callable[[dict], list] | None]:
        mod, run, render = self.module.split(":")
        m = importlib.import_module(mod)
        targets = None
        if self.targets is not None:
            tmod, tfn = self.targets.split(":")
            targets = getattr(importlib.import_module(tmod), tfn)
        return getattr(m, run), getattr(m, render), targets

    def size_for(self, size: str) -> str:
        """The requested size, or the largest this scenario defines (cold and orchestration stop at medium)."""
        return size if size in self.sizes else self.sizes[-1]


# The order: what ingest takes, what it gives back under load, then reading, then orchestration.
REGISTRY = [
    Scenario("ingest", "Ingest in the shipped configuration (wrk, rounds alternating with /healthz), landing drain vs COPY",
             "benchmarks.adapters:ingest_run:ingest_render"),
    Scenario("freshness", "Freshness: 202 -> visible in GraphQL (recentEvents, totalEvents), p50/p95",
             "benchmarks.freshness:run:render"),
    Scenario("skew", "Hot-tenant skew: a tenant offering 3x its key's limit beside a quiet one (p95 latency, freshness)",
             "benchmarks.skew:run:render"),
    Scenario("backpressure", "Backpressure: bursts above the key's limit, Retry-After honoured, no loss, recovery",
             "benchmarks.backpressure:run:render"),
    Scenario("catchup", "Worker catch-up, 1/2/4-worker scaling, stop/ingest/restart offset proof",
             "benchmarks.catchup:run:render", targets="benchmarks.adapters:catchup_targets"),
    Scenario("queries", "Dashboard queries over GraphQL, cached and uncached, vs direct SQL",
             "benchmarks.adapters:queries_run:queries_render"),
    Scenario("explain", "Query-plan capture: EXPLAIN ANALYZE of every dashboard query",
             "benchmarks.explain:run:render", targets="benchmarks.adapters:explain_targets"),
    Scenario("late", "Late-data correction latency through the Dagster daemon and the late-data sensor",
             "benchmarks.adapters:late_run:late_render"),
    Scenario("cold", "Cold tier: Parquet export, parity, DuckDB vs PostgreSQL",
             "benchmarks.adapters:cold_run:cold_render", sizes=("small", "medium")),
    # benchmarks/sustained.py (10 M events, then single events again; broker RSS) is being written: its result
    # joins the table through rows with "headline": "sustained" (or SUSTAINED_TARGETS below reads it)
    Scenario("sustained", "Sustained: 10 M events, then single events again vs before, broker RSS",
             "benchmarks.sustained:run:render", optional=True),
]  # fmt: skip
BY_NAME = {s.name: s for s in REGISTRY}

# The figures ("Hot path at the machine's limit"), always in the report's table in this order: one a run
# did not produce shows "not measured (why)". (id, scenario, figure, target); rows carry "headline": id.
HEADLINE = [
    ("ingest.single", "ingest", "ingest: single events vs /healthz of the same API processes (p99)", ">= 0.5x /healthz"),
    ("ingest.batch100", "ingest", "ingest: batches of 100", ">= 150,000 events/s"),
    ("ingest.batch1000", "ingest", "ingest: batches of 1,000", ">= 250,000 events/s"),
    ("landing.copy", "catchup", "landing: one worker vs binary COPY", ">= 0.5x COPY"),
    ("freshness.graphql", "freshness", "freshness: 202 -> visible in GraphQL p95 at >= 20,000 events/s offered and achieved", "<= 1 s"),
    ("skew.latency", "skew", "hot tenant at 3x its key's limit: quiet tenant p95 ingest latency, beside / alone", "<= 1.5x"),
    ("skew.freshness", "skew", "hot tenant at 3x its key's limit: quiet tenant p95 202 -> row visible, beside / alone", "<= 1.5x"),
    ("skew.landed", "skew", "hot tenant: every acknowledged event of both tenants landed", "0 missing, 0 duplicated"),
    ("backpressure.limited", "backpressure", "backpressure: burst above the limit answered 429, Retry-After on every one", "> 0 x 429, 0 without Retry-After"),
    ("backpressure.landed", "backpressure", "backpressure: every acknowledged event landed", "0 missing, 0 duplicated"),
    ("backpressure.recovery", "backpressure", "backpressure: burst end -> answers all 202 again", "recorded"),
    ("sustained", "sustained", "sustained: single events after 10 M events vs before; broker RSS", "see benchmarks/sustained.py"),
]  # fmt: skip


def run_scenario(scenario: Scenario, size: str) -> Outcome:
    from benchmarks.report import Outcome  # matplotlib, orjson, psycopg: not for `pulseops --help`

    actual = scenario.size_for(size)
    started = time.monotonic()
    if scenario.optional and importlib.util.find_spec(scenario.module.split(":")[0]) is None:
        return Outcome(scenario.name, scenario.title, actual, 0.0, skipped="module not written yet")
    try:
        run, render, targets = scenario.load()
        result = run(actual)
        text = render(result)
    except (Exception, SystemExit):  # SystemExit: the older benchmarks abort with it
        return Outcome(
            scenario.name, scenario.title, actual, time.monotonic() - started, error=traceback.format_exc()
        )
    seconds = time.monotonic() - started
    rows = list(result.get("targets") or [])
    if targets is not None:
        try:
            rows += targets(result)
        except Exception as exc:  # a renamed field must not hide the figures
            rows.append({"what": f"{scenario.name}: targets", "target": "readable", "kind": "check",
                         "measured": f"could not read: {exc!r}", "met": False})  # fmt: skip
    result["targets"] = rows
    return Outcome(scenario.name, scenario.title, actual, seconds, result=result, text=text, targets=rows)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Shared by `python -m benchmarks` and `pulseops bench`."""
    parser.add_argument("--size", choices=SIZES, default="small")
    parser.add_argument(
        "--only", help=f"comma-separated scenarios (default all, in this order: {', '.join(BY_NAME)})"
    )
    parser.add_argument("--out", type=Path, help="report folder (default docs/benchmarks; CI: a temp folder)")
    parser.add_argument("--no-report", action="store_true", help="print the figures, write nothing")


def run_cli(args: argparse.Namespace, command: str) -> int:
    names = [n.strip() for n in args.only.split(",") if n.strip()] if args.only else list(BY_NAME)
    unknown = [n for n in names if n not in BY_NAME]
    if unknown:
        print(f"unknown scenario(s) {', '.join(unknown)}; known: {', '.join(BY_NAME)}", file=sys.stderr)
        return 2
    from benchmarks.harness import ROOT, machine_notes
    from benchmarks.report import write_suite_report

    machine = machine_notes()
    load_before = os.getloadavg()
    started = time.monotonic()
    outcomes = []
    for i, name in enumerate(names, 1):
        scenario = BY_NAME[name]
        print(
            f"\n== [{i}/{len(names)}] {name} ({scenario.size_for(args.size)}): {scenario.title} ==",
            flush=True,
        )
        o = run_scenario(scenario, args.size)
        outcomes.append(o)
        if o.skipped:
            print(f"-- {name}: not run ({o.skipped})", flush=True)
            continue
        print(o.error if o.error else o.text, flush=True)
        for t in o.targets:
            print(f"  [{verdict(t)}] {t['what']}: {t['measured']} (target {t['target']})", flush=True)
        print(f"-- {name}: {'FAILED' if o.failed else 'ok'} in {o.seconds:.1f}s", flush=True)
    cross_scenario_rows(outcomes)
    outcomes = [o for o in outcomes if not o.skipped]
    wall = time.monotonic() - started
    load_after = os.getloadavg()
    failed = [o.name for o in outcomes if o.failed]
    print(f"\nsuite ({args.size}) done in {wall:.1f}s; load average {load_before[0]:.2f} -> {load_after[0]:.2f}; "
          f"failed: {', '.join(failed) or 'none'}")  # fmt: skip
    if not args.no_report:
        out = args.out or ROOT / "docs" / "benchmarks"
        path = write_suite_report(
            out, args.size, command, machine, outcomes, load_before, load_after, wall, HEADLINE
        )
        print(f"report: {path}")
    return 1 if failed else 0


def cross_scenario_rows(outcomes: list[Outcome]) -> None:
    """Rows that need two scenarios of one run: landing (catch-up's one worker) against binary COPY, taken
    from catch-up's result when it measures COPY itself, else from the ingest scenario of the same run."""
    from benchmarks.adapters import landing_vs_copy

    by_name = {o.name: o for o in outcomes if o.result is not None}
    if "catchup" not in by_name:
        return
    row = landing_vs_copy(
        by_name["catchup"].result, by_name["ingest"].result if "ingest" in by_name else None
    )
    by_name["catchup"].targets.append(row)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n")[0])
    add_arguments(parser)
    args = parser.parse_args(argv)
    stop_on_signals()
    command = "python -m benchmarks " + shlex.join(sys.argv[1:] if argv is None else argv)
    return run_cli(args, command.strip())
