"""`pulseops status`: is everything up, how far behind is landing, when did the last event land.

Reads what the running system itself uses (up.json in the state dir: the database and broker `pulseops up`
chose), so it answers for that system even when the embedded fallbacks were started. Every part is
best-effort and bounded by a few seconds: a down broker or database is reported, never waited for.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pulseops import runtime
from pulseops.settings import KafkaSettings, Settings

_QUIET = logging.getLogger("pulseops.status.kafka")
_QUIET.addHandler(logging.NullHandler())
_QUIET.propagate = False
HEARTBEAT_STALE_S = 90.0  # Dagster's daemons beat every 30 s (dagster/_daemon/daemon.py); three missed = down


def gather(settings: Settings, timeout: float = 3.0) -> dict[str, Any]:
    """Everything `render` prints, as plain data (also `pulseops status --json`); `ok` is False when a
    service, the broker, the database or Dagster's daemon is down."""
    state = Path(settings.state_dir)
    info = runtime.read_info(state)
    problems: list[str] = []
    up = runtime.running(state)
    services = runtime.services(state) if up else []
    if not up:
        problems.append("not running (pulseops up)")
    elif not services:
        problems.append("supervisord does not answer")
    for s in services:
        if not s.up:
            problems.append(f"{s.name} {s.state.lower()}")
    report: dict[str, Any] = {
        "state_dir": str(state),
        "running": up,
        "pid": info.get("pid") if up else None,
        "supervisord_pid": info.get("supervisord_pid") if up else None,
        "services": [s.__dict__ for s in services],
    }
    kafka = info.get("kafka") or settings.kafka.servers
    topic = info.get("topic_raw") or settings.kafka.topic_raw
    group = info.get("consumer_group") or settings.kafka.consumer_group
    # a system started before up.json named its overflow topic had none
    overflow = info.get("topic_overflow", "" if info.get("topic_raw") else settings.kafka.topic_overflow)
    landed = settings.kafka.model_copy(
        update={"bootstrap": kafka, "topic_raw": topic, "consumer_group": group, "topic_overflow": overflow}
    )
    report["landing"] = landing_report(landed, timeout, problems)
    db_url = info.get("db_url") or settings.db.url
    try:
        report["warehouse"] = _warehouse(db_url, timeout)
    except Exception as exc:
        report["warehouse"] = {"error": str(exc).strip()}
        problems.append(f"database: {str(exc).strip().splitlines()[0]}")
    home = info.get("dagster_home") or settings.orchestration.dagster_home or str(state / "dagster")
    try:
        beats = daemon_heartbeats(home)
        report["dagster_daemon"] = beats
        if not beats:
            problems.append("Dagster daemon: no heartbeat")
        elif stale := [b["daemon"] for b in beats if b["age_s"] is None or b["age_s"] > HEARTBEAT_STALE_S]:
            problems.append(f"Dagster daemon: no heartbeat for 90 s from {', '.join(stale)}")
    except Exception as exc:
        report["dagster_daemon"] = {"error": str(exc).strip()}
        problems.append(f"Dagster daemon: {str(exc).strip().splitlines()[0] if str(exc).strip() else exc!r}")
    report["problems"] = problems
    report["ok"] = not problems
    return report


def landing_report(kafka: KafkaSettings, timeout: float, problems: list[str]) -> dict[str, Any]:
    """The raw topic against its landing group and, when `topic_overflow` is set, under "overflow" the overflow
    topic against its own group (pulseops/settings.py `overflow_group`): landing is behind if either is. A
    broker that does not answer is added to `problems`."""
    report = _landing(kafka.servers, kafka.topic_raw, kafka.consumer_group, timeout, problems)
    if kafka.topic_overflow:
        report["overflow"] = _landing(
            kafka.servers, kafka.topic_overflow, kafka.overflow_group, timeout, problems
        )
    return report


def _landing(bootstrap: str, topic: str, group: str, timeout: float, problems: list[str]) -> dict[str, Any]:
    try:
        return {"topic": topic, "group": group, "partitions": landing_lag(bootstrap, topic, group, timeout)}
    except Exception as exc:
        problem = f"broker at {bootstrap}: {exc}"
        if problem not in problems:  # a down broker fails both topics alike: said once
            problems.append(problem)
        return {"topic": topic, "group": group, "error": str(exc)}


def landing_lag(bootstrap: str, topic: str, group: str, timeout: float) -> list[dict[str, Any]]:
    """Per partition: the group's committed offset, the high watermark, the lag, and how old the oldest
    unlanded message is (seconds behind; 0 when nothing waits).

    Reads from the committed offsets with a consumer that never joins the group: the high watermark is the one
    a fetch reports (Tansu's ListOffsets is short by the rest of the last batch, see pulseops/broker.py), and
    the first message fetched is the oldest unlanded one."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group,  # only to read its committed offsets: never subscribes, never commits
            "enable.auto.commit": False,
            "fetch.wait.max.ms": 10,
            "socket.timeout.ms": int(timeout * 1000),
        },
        logger=_QUIET,  # librdkafka's connection errors on stderr: the report says it once, in one line
    )
    try:
        meta = consumer.list_topics(topic, timeout=timeout).topics.get(topic)
        if meta is None or meta.error is not None:
            raise RuntimeError(f"topic {topic} not found")
        parts = [TopicPartition(topic, p) for p in sorted(meta.partitions)]
        committed = {tp.partition: tp.offset for tp in consumer.committed(parts, timeout=timeout)}
        consumer.assign([TopicPartition(topic, p, max(o, 0)) for p, o in committed.items()])
        oldest: dict[int, float] = {}
        high: dict[int, int] = {}
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not (
            len(high) == len(parts) and all(high[p] <= max(c, 0) or p in oldest for p, c in committed.items())
        ):
            for msg in consumer.consume(500, 0.05):
                if msg.error() is None and msg.partition() not in oldest:
                    oldest[msg.partition()] = msg.timestamp()[1] / 1000
                    consumer.pause([TopicPartition(topic, msg.partition())])
            for p in committed:
                _lo, hi = consumer.get_watermark_offsets(TopicPartition(topic, p), cached=True)
                if hi >= 0:
                    high[p] = hi
        now = time.time()
        out = []
        for p, c in sorted(committed.items()):
            hi = high.get(p)
            lag = None if hi is None else max(0, hi - max(c, 0))
            behind = (
                round(max(0.0, now - oldest[p]), 1) if lag and p in oldest else (0.0 if lag == 0 else None)
            )
            out.append(
                {
                    "partition": p,
                    "committed": c if c >= 0 else None,
                    "high": hi,
                    "lag": lag,
                    "behind_s": behind,
                }
            )
        return out
    finally:
        consumer.close()


def _warehouse(db_url: str, timeout: float) -> dict[str, Any]:
    import psycopg

    from warehouse.health import system_health

    now = datetime.now(UTC)
    with psycopg.connect(db_url, connect_timeout=max(1, int(timeout)), autocommit=True) as conn:
        h = system_health(conn, now)
    return {
        "last_landed_at": h.last_landed_at.isoformat(timespec="seconds") if h.last_landed_at else None,
        "last_landed_age_s": round((now - h.last_landed_at).total_seconds(), 1) if h.last_landed_at else None,
        "stale_days": h.stale_days,
        "dead_letters_24h": h.dead_letters_24h,
    }


def daemon_heartbeats(dagster_home: str) -> list[dict[str, Any]]:
    """The last heartbeat of each Dagster daemon (sensors, schedules, run queue, backfills) from its storage."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from dagster import DagsterInstance

        with DagsterInstance.from_config(dagster_home) as instance:
            beats = instance.get_daemon_heartbeats()
            required = set(instance.get_required_daemon_types())
    now = time.time()
    out = [
        {"daemon": name, "age_s": round(now - hb.timestamp, 1), "errors": len(hb.errors or [])}
        for name, hb in sorted(beats.items())
        if name in required  # rows of daemons this instance does not run (any more) are old news
    ]
    return out + [{"daemon": name, "age_s": None, "errors": 0} for name in sorted(required - beats.keys())]


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = int(seconds)
    return f"{s // 3600}:{s // 60 % 60:02}:{s % 60:02}"


def render(report: dict[str, Any]) -> str:
    lines = [
        f"PulseOps ({report['state_dir']}): "
        + (
            f"running, pulseops up pid {report['pid']}, supervisord pid {report['supervisord_pid']}"
            if report["running"]
            else "not running"
        )
    ]
    if report["services"]:
        lines.append(f"  {'service':20} {'state':9} {'pid':>7}  {'uptime':>9}  restarts")
        for s in report["services"]:
            state = "up" if s["up"] else f"DOWN ({s['state'].lower()})"
            pid = s["pid"] or "-"
            lines.append(
                f"  {s['name']:20} {state:9} {pid:>7}  {_age(s['uptime_s'] if s['up'] else None):>9}  {s['restarts']}"
            )
    landing = report["landing"]
    for name, entry in (("landing", landing), ("landing (overflow)", landing.get("overflow"))):
        if entry is None:
            continue
        lines.append(f"{name}: topic {entry['topic']}, group {entry['group']}")
        if "error" in entry:
            lines.append(f"  unavailable: {entry['error']}")
            continue
        for p in entry["partitions"]:
            behind = "-" if p["behind_s"] is None else f"{p['behind_s']:g} s behind"
            lag = "?" if p["lag"] is None else p["lag"]
            lines.append(f"  partition {p['partition']:<3} lag {lag!s:>8}  {behind}")
    wh = report["warehouse"]
    lines.append("warehouse:")
    if "error" in wh:
        lines.append(f"  unavailable: {wh['error']}")
    else:
        last = (
            f"{wh['last_landed_at']} ({wh['last_landed_age_s']:g} s ago)"
            if wh["last_landed_at"]
            else "none yet"
        )
        lines += [
            f"  last landed event      {last}",
            f"  stale days to rebuild  {wh['stale_days']}",
            f"  dead letters (24 h)    {wh['dead_letters_24h']}",
        ]
    lines.append("Dagster daemon heartbeats:")
    beats = report["dagster_daemon"]
    if isinstance(beats, dict):
        lines.append(f"  unavailable: {beats['error']}")
    elif not beats:
        lines.append("  none")
    else:
        lines += [
            f"  {b['daemon']:24} "
            + ("never" if b["age_s"] is None else f"{b['age_s']:g} s ago")
            + (f", {b['errors']} errors" if b["errors"] else "")
            for b in beats
        ]
    lines.append("OK" if report["ok"] else "DOWN: " + "; ".join(report["problems"]))
    return "\n".join(lines)
