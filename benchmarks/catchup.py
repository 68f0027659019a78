"""Worker catch-up, worker scaling, PostgreSQL's own COPY rate and an offset/retry proof:
`python -m benchmarks.catchup --size …`.

Figures, all from one run, driven from outside (the broker's protocol, HTTP ingest, worker subprocesses, SQL):
  1. Catch-up: with no worker running, a backlog is produced to `events-raw` the way ingest publishes an
     accepted request from format 2 on: packed messages (warehouse/events.py `pack_raw_events`), 100 events
     of one project per message, realistic properties and event times over the last 20 h. It goes straight
     to the broker rather than through HTTP so that it is format 2 whatever the ingest API in this tree
     produces, and so filling it costs seconds, not the drain's own CPU. One landing worker then drains it:
     time to drain (landed == produced), rows/s, and a series (every 0.2 s) of landed rows and consumer lag.
  2. Scaling: the *same* backlog (same topic, 4 partitions) drained again by 2 (and at medium/large 4) worker
     processes (`python -m streams --index i`, one fresh consumer group per run, the landing tables emptied
     between runs). rows/s per worker count and speed-up over one worker. The machine has 2 cores: more than
     two workers cannot add CPU, and PostgreSQL, the broker and the sampler share those cores.
  3. PostgreSQL's own limit, same run, same database: binary COPY straight into `events` (no ledger), 50k rows
     per COPY + commit, as benchmarks/ingest.py's copy_baseline does, but with rows shaped like the backlog's
     and built before the clock starts (so it is PostgreSQL's rate, not the row generator's). Measured before
     the first drain and after the last; landing / COPY uses their mean.
  4. Offset / retry proof: a running worker is sent SIGTERM mid-stream, more events are ingested over HTTP
     while it is down, it is restarted and then SIGKILLed while landing its backlog, and restarted again. At
     the end the set of event ids the 202 bodies acknowledged is compared with the table: landed, duplicated
     (same (project_id, event_id) more than once in `events`), missing and unexpected must come out exact.

Figures 1-3 are benchmarks/catchup_scaling.py's, the client, lag, counter and CPU probes
benchmarks/catchup_instruments.py's; this module runs the proof and reports.
Writes a dated Markdown report to docs/benchmarks/ unless --no-report; `--plot PATH` saves the scaling PNG.
Run it under `flock /tmp/pulseops-bench.lock` on a shared machine.
"""

from __future__ import annotations

import argparse
import os
import signal
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import psycopg

from benchmarks.catchup_cpu import render_cpu
from benchmarks.catchup_instruments import (
    BATCH,
    DUPS_TOTAL,
    PARTITIONS,
    SendLog,
    count_rows,
    loadavg,
    metrics_base,
    scrape,
    send,
    tenant,
    worker_env,
)
from benchmarks.catchup_scaling import COPY_CHUNK, scaling
from benchmarks.harness import Services, free_port, machine_notes, scratch_database, tansu, wait_for
from benchmarks.report import write_report
from pulseops.settings import Settings

SIZES = {
    # small is the CI smoke size: 1 and 2 workers only (each consumer-group start costs seconds of joining).
    # The backlog is produced straight to the broker (a second for 100k events), so it can be large enough
    # for a drain of a few seconds, not one sample.
    "small": {
        "backlog": 100_000,
        "workers": (1, 2),
        "proof_before": 10_000,
        "proof_down": 10_000,
        "proof_rate": 20_000,
    },
    "medium": {
        "backlog": 1_000_000,
        "workers": (1, 2, 4),
        "proof_before": 200_000,
        "proof_down": 200_000,
        "proof_rate": 50_000,
    },
    "large": {
        "backlog": 3_000_000,
        "workers": (1, 2, 4),
        "proof_before": 500_000,
        "proof_down": 500_000,
        "proof_rate": 50_000,
    },
}


def proof(db_url: str, bootstrap: str, cfg: dict, log: Callable[[str], None]) -> dict:
    """SIGTERM mid-stream, ingest while down, restart, SIGKILL while landing, restart: counts must be exact."""
    suffix = uuid.uuid4().hex[:6]
    key, project_id = tenant(db_url, f"proof-{suffix}")
    base = metrics_base()
    env = worker_env(db_url, bootstrap, suffix, metrics=base)
    svc = Services(env, free_port())
    events: list[str] = []
    sent = SendLog()
    landed_now = lambda: count_rows(db_url, project_id)[0]  # noqa: E731
    try:
        svc.start_ingest(workers=2)
        down = _sigterm_mid_stream(svc, key, cfg, sent, landed_now, events)
        _sigkill_while_landing(svc, sent, down, landed_now, events)
        redelivered = _land_the_rest(svc, base, sent, landed_now, events)
    finally:
        svc.stop()
    out = {
        **_exact_counts(db_url, project_id, sent),
        "redelivered_deduplicated": redelivered,
        "retries": sent.retries,
        "statuses": sent.statuses,
        "timeline": events,
    }
    log(f"proof: {out}")
    return out


def _sigterm_mid_stream(
    svc: Services, key: str, cfg: dict, sent: SendLog, landed_now: Callable[[], int], events: list[str]
) -> int:
    """A warmed-up worker is sent SIGTERM halfway through the first N events of one paced stream; the rest and
    M more are ingested while it is down. Returns the rows landed once all N + M were acknowledged."""
    worker = svc.start_worker(0)
    send(svc.url, key, BATCH, log=sent)  # warm-up: the worker has joined its group and lands
    wait_for(lambda: landed_now() > 0, 120, "worker landing", 0.05)
    before, total = cfg["proof_before"], cfg["proof_before"] + cfg["proof_down"]
    # one paced stream: SIGTERM halfway through the first N events, the rest and M more arrive while down
    sender = threading.Thread(target=send, args=(svc.url, key, total - BATCH, cfg["proof_rate"], sent))
    sender.start()
    wait_for(lambda: sent.acknowledged >= before // 2, 120, "mid-stream", 0.02)
    events.append(
        f"SIGTERM worker at acknowledged {sent.acknowledged:,}, landed {landed_now():,} (load {loadavg()})"
    )
    worker.send_signal(signal.SIGTERM)
    worker.wait(60)
    svc.procs.remove(worker)
    at_exit = landed_now()
    events.append(
        f"worker exited with {worker.returncode} at landed {at_exit:,}; ingest goes on while it is down"
    )
    sender.join()
    if sent.acknowledged != total:
        raise RuntimeError(f"only {sent.acknowledged:,} of {total:,} acknowledged")
    down = landed_now()
    events.append(
        f"all {sent.acknowledged:,} acknowledged: N = {before:,} (SIGTERM halfway), then M = "
        f"{sent.acknowledged - before:,} more; landed still {down:,} while the worker is down"
    )
    return down


def _sigkill_while_landing(
    svc: Services, sent: SendLog, down: int, landed_now: Callable[[], int], events: list[str]
) -> None:
    """Restart the worker and SIGKILL it once it lands again: no flush, no offset commit."""
    worker = svc.start_worker(0)
    wait_for(lambda: landed_now() > down, 120, "restarted worker landing", 0.02)
    at_kill = landed_now()
    worker.kill()  # SIGKILL: no flush, no offset commit
    worker.wait(30)
    svc.procs.remove(worker)
    events.append(
        f"SIGKILL worker while landing its backlog: landed {at_kill:,} of {sent.acknowledged:,} "
        f"(uncommitted offsets are re-read by the next worker)"
    )


def _land_the_rest(
    svc: Services, base: int, sent: SendLog, landed_now: Callable[[], int], events: list[str]
) -> int:
    """Restart the worker until every acknowledged event landed; returns the re-deliveries its ledger dropped."""
    svc.start_worker(0)
    wait_for(lambda: landed_now() >= sent.acknowledged, 300, "all acknowledged events landed", 0.2)
    time.sleep(2 * Settings().streams.commit_interval_s + 1)  # anything re-read late would show up now
    redelivered = scrape(base, DUPS_TOTAL)
    events.append(f"restarted worker deduplicated {redelivered:,} re-delivered events (ledger)")
    return redelivered


def _exact_counts(db_url: str, project_id: uuid.UUID, sent: SendLog) -> dict:
    """The acknowledged event ids against the table and the ledger: landed, duplicated, missing, unexpected."""
    with psycopg.connect(db_url) as conn:
        landed, distinct = conn.execute(
            "SELECT count(*), count(DISTINCT event_id) FROM events WHERE project_id = %s", (project_id,)
        ).fetchone()
        ledger = conn.execute(
            "SELECT count(*) FROM event_ids WHERE project_id = %s", (project_id,)
        ).fetchone()[0]
        in_table = {
            str(r[0])
            for r in conn.execute("SELECT event_id FROM events WHERE project_id = %s", (project_id,))
        }
    acked = set(sent.ids)
    return {
        "sent": sent.sent,
        "acknowledged": sent.acknowledged,
        "acknowledged_distinct": len(acked),
        "landed": landed,
        "ledger": ledger,
        "duplicated": landed - distinct,
        "missing": len(acked - in_table),
        "unexpected": len(in_table - acked),
    }


# ------------------------------------------------------------------------------------------- protocol


def run(size: str) -> dict:
    """Run all three scenarios at `size`; the dict carries figures, `series` for plots and `raw` text."""
    cfg = SIZES[size]
    settings = Settings()
    out: dict = {"size": size, "config": cfg, "machine": machine_notes(), "partitions": PARTITIONS}
    say = lambda s: print(s, flush=True)  # noqa: E731
    with scratch_database(settings.db.url) as db_url, tansu() as bootstrap:
        out["scaling"] = scaling(db_url, bootstrap, cfg["backlog"], cfg["workers"], say)
        out["proof"] = proof(db_url, bootstrap, cfg, say)
    series: dict[str, list[tuple[float, float]]] = {}
    raw: dict[str, str] = {}
    for r in out["scaling"]["runs"]:
        w = f"{r['workers']} worker{'s' if r['workers'] > 1 else ''}"
        # "metric:line": the suite draws one panel per metric with a line per worker count
        series[f"landed rows:{w}"] = r["landed_series"]
        series[f"landed rows/s:{w}"] = r["rate_series"]
        series[f"consumer lag, broker (messages):{w}"] = r["lag_series"]
        series[f"backlog, acknowledged - landed (events):{w}"] = r["backlog_series"]
        raw[f"Samples, {w} (seconds, landed rows, broker consumer lag; -1 = not readable)"] = "\n".join(
            f"{t:7.2f} {n:>10,} {lag:>10,}" for t, n, lag in r.pop("samples")
        )
    out["series"] = series
    out["raw"] = raw
    return out


def _pg_us(measured: list[dict]) -> str:
    """Mean PostgreSQL backend CPU in microseconds per row over these COPYs or drains."""
    cpu = sum(m.get("postgres_cpu_s", 0.0) for m in measured)
    rows = sum(m.get("cpu_rows", m.get("rows", 0)) for m in measured)
    return f"{cpu / rows * 1e6:.1f} us" if rows and cpu else "n/a"


def render(result: dict) -> str:
    """Human-readable figures (what the report and the smoke test read)."""
    s, p = result["scaling"], result["proof"]
    one = s["runs"][0]
    copies = ", ".join(f"{c['rows_per_s']:,.0f}" for c in s["copy"]["measurements"])
    two = f"{s['two_vs_one']:.2f}x" if s["two_vs_one"] is not None else "not measured"
    lines = [
        f"== Worker catch-up: packed backlog ({s['events_per_message']} events/message, format 2) produced with "
        "no worker running ==",
        f"produced {s['sent']:,} events in {s['messages']:,} messages of {s['message_bytes'] / 1024:,.1f} KiB, "
        f"all acknowledged by the broker, in {s['ingest_s']:.1f}s (load {s['ingest_load']}); topic end offsets "
        f"{s['topic_end_offsets']:,} over {result['partitions']} partitions",
        f"1 worker: start-up {one['start_up_s']:.1f}s (spawn -> first rows committed), drained in "
        f"{one['drain_s']:.1f}s = {one['rows_per_s']:,.0f} rows/s; {one['wall_s']:.1f}s wall incl. start-up; "
        f"landed {one['landed']:,} == acknowledged {one['acknowledged']:,}: {one['landed'] == one['acknowledged']}, "
        f"duplicated {one['duplicated']}",
        f"PostgreSQL binary COPY into events (same table, same run, {COPY_CHUNK:,} rows per commit, before the "
        f"first drain and after the last): {copies} rows/s, mean {s['copy']['rows_per_s']:,.0f}",
        f"one worker / COPY = {s['landing_vs_copy']:.2f}; two workers / one worker = {two}",
        "PostgreSQL CPU per landed row (its backends' CPU over the rows, like with like: same table, same "
        f"indexes): COPY {_pg_us(s['copy']['measurements'])}; "
        + ", ".join(f"{r['workers']} worker(s) {_pg_us([r])}" for r in s["runs"]),
        "",
        f"== Scaling: the same backlog drained by {', '.join(str(r['workers']) for r in s['runs'])} worker "
        "processes (fresh consumer group each, landing tables emptied between runs) ==",
        f"{'workers':>7} {'start-up s':>10} {'drain s':>8} {'rows/s':>10} {'speed-up':>8} {'landed':>11} "
        f"{'dup':>4} {'worker CPU s':>12} {'rows/worker CPU s':>17} {'PG CPU s':>8} {'machine busy':>12}  "
        "load avg before -> after (1/5/15 min)",
    ]
    for r in s["runs"]:
        lines.append(
            f"{r['workers']:>7} {r['start_up_s']:>10.1f} {r['drain_s']:>8.1f} {r['rows_per_s']:>10,.0f} "
            f"{r['rows_per_s'] / one['rows_per_s']:>7.2f}x {r['landed']:>11,} {r['duplicated']:>4} "
            f"{r['worker_cpu_s']:>12.1f} {r['cpu_rows'] / max(r['worker_cpu_s'], 1e-9):>17,.0f} "
            f"{r['postgres_cpu_s']:>8.1f} {r['machine_busy']:>11.0%}  {r['load_before']} -> {r['load_after']}"
        )
    lines.append(
        "CPU columns cover the drain (first rows -> all landed): the workers' own CPU time, that of this "
        "database's PostgreSQL backends, and how busy the whole machine was (all users)"
    )
    lines += [
        "",
        "== CPU per drain from /proc (first rows -> all landed; pipeline = workers + PostgreSQL + broker) ==",
        *render_cpu(s["runs"]),
        f"two workers >= 1.6x one: {s['two_vs_one_verdict']['text']}",
    ]
    lines += [
        f"this machine has {os.cpu_count()} cores, shared by the workers, PostgreSQL, the broker, this sampler "
        "and other users: worker processes beyond the core count add no CPU; on a busy shared machine more "
        "processes only take a larger share of it from the other users' processes",
        "",
        "== Offset / retry proof (SIGTERM mid-stream, ingest while down, SIGKILL while landing) ==",
        *p["timeline"],
        f"sent {p['sent']:,} acknowledged {p['acknowledged']:,} (distinct ids {p['acknowledged_distinct']:,}) "
        f"landed {p['landed']:,} (ledger {p['ledger']:,})",
        f"duplicated {p['duplicated']} missing {p['missing']} unexpected {p['unexpected']} "
        f"(client retries {p['retries']}, statuses {p['statuses']})",
    ]
    return "\n".join(lines)


def plot(result: dict, path: Path) -> Path:
    """PNG for docs/scaling.md: landed rows over time per worker count, and rows/s per worker count."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = result["scaling"]["runs"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for r in runs:
        xs, ys = zip(*r["landed_series"], strict=True)
        left.plot(xs, [y / 1000 for y in ys], label=f"{r['workers']} worker(s)")
    left.set_xlabel("seconds since the workers were started")
    left.set_ylabel("landed rows (thousands)")
    left.set_title(f"Draining a {result['scaling']['acknowledged']:,}-event backlog")
    left.legend()
    left.grid(alpha=0.3)
    counts = [r["workers"] for r in runs]
    rates = [r["rows_per_s"] / 1000 for r in runs]
    bars = right.bar([str(c) for c in counts], rates, color="#4c72b0")
    for b, r in zip(bars, runs, strict=True):
        right.annotate(
            f"{r['rows_per_s'] / runs[0]['rows_per_s']:.2f}x\n"
            f"load {r['load_before'].split('/')[0]}->{r['load_after'].split('/')[0]}",
            (b.get_x() + b.get_width() / 2, b.get_height()),
            ha="center",
            va="bottom",
            fontsize=8,
        )
    right.set_xlabel("worker processes (same consumer group, 4 partitions)")
    right.set_ylabel("rows/s landed (thousands)")
    right.set_title(f"{os.cpu_count()}-core machine: speed-up over 1 worker")
    right.set_ylim(0, max(rates) * 1.3)
    right.grid(axis="y", alpha=0.3)
    fig.suptitle(f"PulseOps landing workers, {result['machine']['date']}", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.catchup", description=__doc__.split("\n")[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="small")
    parser.add_argument("--no-report", action="store_true")
    parser.add_argument("--plot", type=Path, help="save the scaling PNG here (e.g. docs/benchmarks/….png)")
    args = parser.parse_args(argv)
    result = run(args.size)
    text = render(result)
    print(text)
    if args.plot:
        print(f"plot: {plot(result, args.plot)}")
    if not args.no_report:
        command = f"python -m benchmarks.catchup --size {args.size}"
        path = write_report("catchup-scaling", args.size, command, result["machine"], text, result["raw"])
        print(f"report: {path}")
    p = result["proof"]
    if p["duplicated"] or p["missing"] or p["unexpected"] or p["landed"] != p["acknowledged"]:
        raise SystemExit("offset/retry proof FAILED: counts are not exact")


if __name__ == "__main__":
    main()
