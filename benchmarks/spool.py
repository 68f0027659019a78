"""What the ingest spool costs: `python -m benchmarks.spool --size …`.

The same ingest server (2 uvicorn processes, wrk -t2 -c64 on the same machine, no landing worker) runs with
the spool on (journal + fdatasync before publishing) and off (a 202 as durable as the broker), alternating
on/off rounds so that machine noise hits both alike.
"""

from __future__ import annotations

import os
import shutil
import statistics
import tempfile
import uuid

import orjson

from benchmarks.harness import Services, free_port, machine_notes, scratch_database, services_env, tansu
from benchmarks.ingest import _event, _lua_post, _tenant, run_wrk
from benchmarks.report import scenario_cli
from pulseops.settings import Settings

SIZES = {"small": {"seconds": 3, "rounds": 1}, "medium": {"seconds": 10, "rounds": 3}, "large": {"seconds": 20, "rounds": 3}}  # fmt: skip
CASES = (
    ("1 event/request", "/v1/events", orjson.dumps(_event(1)), 1),
    ("100 events/request", "/v1/batch", orjson.dumps({"batch": [_event(i) for i in range(100)]}), 100),
)


def run(size: str) -> dict:
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is required (apt-get install wrk)")
    cfg = SIZES[size]
    settings = Settings()
    raw: list[str] = []
    rows: list[dict] = []
    state = tempfile.mkdtemp(prefix="pulseops-spool-bench-")
    try:
        with scratch_database(settings.db.url) as db_url, tansu() as bootstrap:
            key, _, _ = _tenant(db_url, "spool")
            for rnd in range(cfg["rounds"]):
                for enabled in (True, False):
                    env = services_env(db_url, bootstrap, settings.redis.url, uuid.uuid4().hex[:6])
                    env.update(
                        {
                            "PULSEOPS_SPOOL__ENABLED": str(enabled).lower(),
                            "PULSEOPS_STATE_DIR": state,
                            "PULSEOPS_INGEST__RATE_PER_S": "10000000",
                            "PULSEOPS_INGEST__BURST": "10000000",
                        }
                    )
                    svc = Services(env, free_port())
                    try:
                        svc.start_ingest(workers=2)
                        for label, path, body, n in CASES:
                            r = run_wrk(f"{svc.url}{path}", _lua_post(key, body), cfg["seconds"], raw=raw)
                            ok = r["requests"] - r["status_errors"]
                            rows.append(
                                {
                                    "round": rnd,
                                    "spool": enabled,
                                    "case": label,
                                    "rps": r["rps"],
                                    "events_per_s": ok * n / (r["duration_us"] / 1e6),
                                    "p50_ms": r["p50_ms"],
                                    "p99_ms": r["p99_ms"],
                                    "non_2xx": r["status_errors"],
                                }
                            )
                            print(rows[-1], flush=True)
                    finally:
                        svc.stop()
    finally:
        shutil.rmtree(state, ignore_errors=True)
    return {"size": size, "rows": rows, "raw": {"wrk": "\n".join(raw)}, "load": os.getloadavg()}


def render(r: dict) -> str:
    lines = [
        "== Ingest with and without the spool (2 uvicorn processes, wrk -t2 -c64, no worker) ==",
        f"{'case':22} {'spool':>6} {'events/s (median)':>18} {'p50 ms':>8} {'p99 ms':>8} {'non-2xx':>8}",
    ]
    for label, *_ in CASES:
        for enabled in (True, False):
            sel = [x for x in r["rows"] if x["case"] == label and x["spool"] is enabled]
            lines.append(
                f"{label:22} {'on' if enabled else 'off':>6} "
                f"{statistics.median(x['events_per_s'] for x in sel):18,.0f} "
                f"{statistics.median(x['p50_ms'] for x in sel):8.2f} "
                f"{statistics.median(x['p99_ms'] for x in sel):8.2f} {sum(x['non_2xx'] for x in sel):8d}"
            )
    lines.append(f"load average after (1/5/15 min): {'/'.join(f'{x:.2f}' for x in r['load'])}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    scenario_cli("spool", SIZES, run, render, argv, doc=__doc__, machine=lambda _: machine_notes())


if __name__ == "__main__":
    main()
