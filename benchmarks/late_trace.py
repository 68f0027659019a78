"""Where a late event's time goes, per sample of the late-data benchmark (benchmarks/orchestration.py).

Each sample is split into stages from timestamps the system records itself, all wall clock on this machine:
  landed    202 -> the landing worker's row (`landed_days.last_landed_at` of the sample's (project, day): no
            other traffic touches those cells, and each has at most one late event pending)
  tick      landed -> creation of the run that rebuilt the day (`aggregate_builds.run_id`; the sensor tick
            requested it). Negative when a run already under way rebuilt the day after the event landed.
  start     run created -> its RUN_START event (queue, launcher, worker process start, code location import)
  rebuilt   run start (or landing, if later) -> the day's build began (`aggregate_builds.built_at`: now() of
            its transaction; other days of the run may be built before it)
  seen      build began -> GraphQL answered the true value from the aggregates (the build itself, its
            commit, the poll)
Per run (Dagster's run and event-log storage): queued, launch and step timings, days covered.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from statistics import median

import psycopg

STAGES = ("landed", "tick", "start", "rebuilt", "seen")


def sample_stamp(conn: psycopg.Connection, project: object, day: object) -> dict:
    """The (project, day)'s landing and build stamps, read when its sample is seen corrected."""
    row = conn.execute(
        "SELECT extract(epoch FROM l.last_landed_at), extract(epoch FROM b.built_at), b.run_id "
        "FROM landed_days l JOIN aggregate_builds b USING (project_id, day) "
        "WHERE l.project_id = %s AND l.day = %s",
        (project, day),
    ).fetchone()
    return {"landed": float(row[0]), "built": float(row[1]), "run_id": row[2]} if row else {}


def _epoch(ts: datetime) -> float:
    """Dagster stores naive UTC timestamps."""
    return ts.replace(tzinfo=UTC).timestamp()


def run_timelines(storage_url: str) -> dict[str, dict]:
    """Per run of the instance: created, events by type (first occurrence), step start/end, days covered."""
    runs: dict[str, dict] = {}
    with psycopg.connect(storage_url, autocommit=True) as conn:
        for run_id, job, status, created, body in conn.execute(
            "SELECT run_id, pipeline_name, status, create_timestamp, run_body FROM runs ORDER BY id"
        ):
            tags = json.loads(body).get("tags", {})
            days = tags.get("pulseops/days") or tags.get("dagster/partition") or ""
            runs[run_id] = {"job": job, "status": status, "created": _epoch(created),
                            "days": [d for d in days.split(",") if d], "events": {}, "steps": {}}  # fmt: skip
        for run_id, kind, step, ts in conn.execute(
            "SELECT run_id, dagster_event_type, step_key, timestamp FROM event_logs "
            "WHERE run_id <> '' AND dagster_event_type IS NOT NULL ORDER BY id"
        ):
            run = runs.get(run_id)
            if run is None:
                continue
            t = _epoch(ts)
            run["events"].setdefault(kind, t)
            if step and kind in ("STEP_START", "STEP_SUCCESS", "STEP_FAILURE"):
                span = run["steps"].setdefault(step, {})
                span["start" if kind == "STEP_START" else "end"] = t
    return runs


def _start(run: dict) -> float | None:
    return run["events"].get("PIPELINE_START") or run["events"].get("RUN_START")


def stages(samples: list[dict], runs: dict[str, dict]) -> list[dict]:
    """Per sample (`sent` wall time, `took` s, its `sample_stamp`): seconds per stage (None where unknown)."""
    out = []
    for s in samples:
        run = runs.get(s.get("run_id") or "")
        row = {k: None for k in STAGES} | {"took": s["took"], "run_id": s.get("run_id")}
        if "landed" in s:
            row["landed"] = s["landed"] - s["sent"]
            row["seen"] = s["sent"] + s["took"] - s["built"]
        if run and "landed" in s:
            row["tick"] = run["created"] - s["landed"]
            start = _start(run)
            if start is not None:
                row["start"] = max(0.0, start - max(run["created"], s["landed"]))
                row["rebuilt"] = s["built"] - max(start, s["landed"])
        out.append(row)
    return out


def _q(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(p * len(values)))]


def summary(rows: list[dict], runs: dict[str, dict]) -> str:
    """Stage percentiles over the samples, then one line per rebuild run."""
    lines = ["per-sample stages (s): stage p50 / p95 / max"]
    for k in (*STAGES, "took"):
        vals = [r[k] for r in rows if r.get(k) is not None]
        if vals:
            lines.append(
                f"  {k:8s} {median(vals):6.2f} / {_q(vals, 0.95):6.2f} / {max(vals):6.2f}  (n={len(vals)})"
            )
    lines.append(
        "runs (s): created (from the first), queued (created -> STARTING), launch (-> RUN_START), aggregates "
        "step, check steps, created -> end; days"
    )
    t0 = min((r["created"] for r in runs.values()), default=0.0)
    for run_id, r in runs.items():
        ev, steps, start = r["events"], r["steps"], _start(r)
        dequeued = ev.get("PIPELINE_STARTING") or ev.get("RUN_STARTING")
        end = ev.get("PIPELINE_SUCCESS") or ev.get("PIPELINE_FAILURE") or ev.get("RUN_SUCCESS")
        agg = next((v for k, v in steps.items() if k == "aggregates"), {})
        checks = [v for k, v in steps.items() if k != "aggregates" and "start" in v and "end" in v]

        def span(a: float | None, b: float | None) -> str:
            return f"{b - a:5.2f}" if a is not None and b is not None else "    -"

        check_span = (
            span(min(c["start"] for c in checks), max(c["end"] for c in checks)) if checks else "    -"
        )
        lines.append(
            f"  {run_id[:8]} {r['created'] - t0:7.1f} {span(r['created'], dequeued)} {span(dequeued or r['created'], start)} "
            f"{span(agg.get('start'), agg.get('end'))} {check_span} {span(r['created'], end)} "
            f"{len(r['days'])} {r['job']} {r['status']}"
        )
    return "\n".join(lines)


class Trace:
    """Collects the stamps of each sample while the benchmark runs, then the runs' timings at its end (before
    the scratch database and its Dagster instance are dropped). `summary` is the text the benchmark prints;
    the whole trace is written as JSON when PULSEOPS_BENCH_LATE_TRACE names a file."""

    def __init__(self, db_url: str) -> None:
        self.db_url, self.stamps, self.summary = db_url, [], "no stages traced"
        self._conn: psycopg.Connection | None = None

    def add(self, project: object, day: object, sent: float, took: float) -> None:
        """A sample seen corrected: `sent` wall time of its 202, `took` seconds until seen."""
        if self._conn is None:
            self._conn = psycopg.connect(self.db_url, autocommit=True)
        self.stamps.append({"sent": sent, "took": took, **sample_stamp(self._conn, project, day)})

    def finish(self, storage_url: str) -> None:
        if self._conn is not None:
            self._conn.close()
        runs = run_timelines(storage_url)
        rows = stages(self.stamps, runs)
        self.summary = summary(rows, runs)
        path = os.environ.get("PULSEOPS_BENCH_LATE_TRACE")
        if path:
            with open(path, "w") as f:
                json.dump({"samples": rows, "stamps": self.stamps, "runs": runs}, f, default=str, indent=1)
