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

Writes a dated Markdown report to docs/benchmarks/ unless --no-report; `--plot PATH` saves the scaling PNG.
Run it under `flock /tmp/pulseops-bench.lock` on a shared machine.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import random
import re
import signal
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import msgspec
import psycopg
from confluent_kafka import Consumer, Producer, TopicPartition

from benchmarks.harness import (
    Services,
    free_port,
    machine_notes,
    scratch_database,
    services_env,
    tansu,
    wait_for,
)
from benchmarks.report import write_report
from pulseops.settings import KafkaSettings, Settings
from pulseops.topics import ensure_topics
from warehouse.events import RawEvent, encode_raw_event, message_key, pack_raw_events
from warehouse.partitions import ensure_window
from warehouse.tenants import create_api_key, ensure_org, ensure_project

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
MAX_WORKERS = 4
PARTITIONS = 4  # at least the largest worker count; splits evenly over 1, 2 and 4 workers
BATCH = 1000
SAMPLE_S = 0.2  # a small drain takes 1-3 s
EVENTS_PER_MESSAGE = 100  # a typical SDK flush; ingest packs one accepted request into one message
COPY_CHUNK = 50_000
_EVENT_NAMES = ("page_view", "click", "signup", "purchase", "search", "login")
_PLANS = ("free", "pro", "enterprise")
_PATHS = ("/", "/pricing", "/docs", "/docs/getting-started", "/blog/launch", "/signup", "/account/settings")
_COUNTRIES = ("US", "DE", "FR", "GB", "IN", "BR", "JP", "CA")
_DEVICES = ("desktop", "mobile", "tablet")
# uuid4 bit layout: clear the version/variant bits, then set version 4 and variant 10xx
_UUID_MASK = ~((0xF000 << 64) | (0xC000 << 48)) & ((1 << 128) - 1)
_UUID_BITS = (0x4000 << 64) | (0x8000 << 48)


# ------------------------------------------------------------------------------------------- sending


@dataclass
class SendLog:
    """What the client sent and what the 202 bodies acknowledged (event ids as the server returned them)."""

    sent: int = 0
    acknowledged: int = 0
    ids: list[str] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    retries: int = 0
    seconds: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)


def _uuid4() -> str:
    """A random (version 4) UUID as text, without building uuid.UUID objects (3x cheaper)."""
    h = f"{(random.getrandbits(128) & _UUID_MASK) | _UUID_BITS:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def _batch_body(n: int, now: datetime) -> bytes:
    """n events with client-chosen event ids (so a retried request lands once), spread over the last 20 h.

    Built as text: the client shares the two cores with the ingest processes it measures, so it must be cheap.
    """
    stamps = [
        (now - timedelta(seconds=s)).isoformat(timespec="seconds") for s in random.sample(range(72_000), 64)
    ]
    choice, rand = random.choice, random.randrange
    events = b",".join(
        (
            f'{{"event":"{choice(_EVENT_NAMES)}","distinct_id":"u-{rand(20_000)}","event_id":"{_uuid4()}",'
            f'"timestamp":"{choice(stamps)}","properties":{{"plan":"{choice(_PLANS)}","path":"/pricing"}}}}'
        ).encode()
        for _ in range(n)
    )
    return b'{"batch":[' + events + b"]}"


async def _send(
    url: str, key: str, total: int, log: SendLog, rate: float | None = None, concurrency: int = 8
) -> None:
    """POST `total` events in batches of 1,000; retry 429/503/transport errors with the same body."""
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    queue: asyncio.Queue[bytes | None] = asyncio.Queue(maxsize=concurrency * 2)
    started = time.monotonic()

    async def worker(client: httpx.AsyncClient) -> None:
        while (body := await queue.get()) is not None:
            n = body.count(b'"event_id"')
            for _attempt in range(120):
                try:
                    r = await client.post("/v1/batch", content=body)
                except httpx.TransportError:
                    log.retries += 1
                    await asyncio.sleep(0.5)
                    continue
                log.statuses[r.status_code] = log.statuses.get(r.status_code, 0) + 1
                if r.status_code == 202:
                    doc = r.json()
                    with log.lock:
                        log.acknowledged += doc["accepted"]
                        log.ids.extend(doc["event_ids"])
                    break
                if r.status_code not in (429, 502, 503, 504):
                    raise RuntimeError(f"ingest answered {r.status_code}: {r.text[:300]}")
                log.retries += 1
                await asyncio.sleep(min(5.0, float(r.headers.get("Retry-After", "0.5"))))
            else:
                raise RuntimeError("a batch was not acknowledged after 120 attempts")
            log.sent += n

    headers = {"X-API-Key": key, "Content-Type": "application/json"}
    async with httpx.AsyncClient(
        base_url=url, headers=headers, limits=limits, timeout=httpx.Timeout(30)
    ) as client:
        tasks = [asyncio.create_task(worker(client)) for _ in range(concurrency)]
        done = 0
        while done < total:
            n = min(BATCH, total - done)
            if rate:
                delay = started + done / rate - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
            await queue.put(_batch_body(n, datetime.now(UTC)))
            done += n
        for _ in tasks:
            await queue.put(None)
        await asyncio.gather(*tasks)
    log.seconds = time.monotonic() - started


def send(url: str, key: str, total: int, rate: float | None = None, log: SendLog | None = None) -> SendLog:
    """Blocking send (fills `log` as it goes, so another thread can watch progress)."""
    log = log if log is not None else SendLog()
    asyncio.run(_send(url, key, total, log, rate))
    return log


# ------------------------------------------------------------------------------------------- observing


class Offsets:
    """Consumer lag of one group as the broker sees it: high watermark minus committed offset, summed.

    Never subscribes, so it does not join the group it reads. Tansu under-reports high watermarks slightly
    right after heavy produce (measured), so the exact backlog is acknowledged - landed; both are kept.
    """

    def __init__(self, bootstrap: str, topic: str, group: str, partitions: int) -> None:
        self.topic = topic
        self.partitions = partitions
        self.consumer = Consumer(
            {"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False}
        )

    def lag(self) -> int:
        try:
            tps = [TopicPartition(self.topic, p) for p in range(self.partitions)]
            committed = self.consumer.committed(tps, timeout=5)
            total = 0
            for tp in committed:
                low, high = self.consumer.get_watermark_offsets(
                    TopicPartition(self.topic, tp.partition), timeout=5, cached=False
                )
                total += max(0, high - (tp.offset if tp.offset >= 0 else low))
            return total
        except Exception:
            return -1

    def end_offsets(self) -> int:
        return sum(
            self.consumer.get_watermark_offsets(TopicPartition(self.topic, p), timeout=5, cached=False)[1]
            for p in range(self.partitions)
        )

    def close(self) -> None:
        self.consumer.close()


_ROWS_TOTAL = re.compile(rb"^pulseops_landing_rows_total ([0-9.e+]+)$", re.M)
_DUPS_TOTAL = re.compile(rb"^pulseops_landing_duplicates_total ([0-9.e+]+)$", re.M)


def scrape(port: int, pattern: re.Pattern[bytes] = _ROWS_TOTAL) -> int:
    """One worker's counter from its Prometheus endpoint (0 while it is not up yet): cheap to poll,
    unlike count(*) over millions of freshly inserted rows, which would compete with the landing."""
    try:
        m = pattern.search(httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=1).content)
    except httpx.HTTPError:
        return 0
    return int(float(m.group(1))) if m else 0


def count_rows(db_url: str, project_id: uuid.UUID) -> tuple[int, int]:
    """(rows in events, distinct (project_id, event_id) among them) for one project."""
    with psycopg.connect(db_url) as conn:
        return conn.execute(
            "SELECT count(*), count(DISTINCT event_id) FROM events WHERE project_id = %s", (project_id,)
        ).fetchone()


_TICK = os.sysconf("SC_CLK_TCK")


def process_cpu_s(pids: list[int]) -> float:
    """utime + stime of these processes, in seconds (processes that are gone count 0)."""
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / _TICK
        except (OSError, IndexError, ValueError):
            pass
    return total


def machine_cpu_s() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot, all cores and all users."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    idle = values[3] + values[4]
    return (sum(values) - idle) / _TICK, sum(values) / _TICK


@dataclass
class CpuMark:
    """CPU used so far by the workers, by this database's PostgreSQL backends, and by the whole machine.

    On a shared machine rows/s depends on what others run; rows per CPU-second of the workers and of
    PostgreSQL does much less, so both are reported."""

    workers: float
    postgres: float
    busy: float
    total: float

    @classmethod
    def take(cls, worker_pids: list[int], conn: psycopg.Connection) -> CpuMark:
        backends = [
            r[0]
            for r in conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        ]
        busy, total = machine_cpu_s()
        return cls(process_cpu_s(worker_pids), process_cpu_s(backends), busy, total)


def loadavg() -> str:
    return "/".join(f"{v:.2f}" for v in os.getloadavg())


def _metrics_base() -> int:
    """A base port with the next 3 free too (worker i serves metrics on base + i)."""
    for _ in range(50):
        base = free_port()
        if base < 65000 and all(_free(base + i) for i in range(1, MAX_WORKERS)):
            return base
    raise RuntimeError("no 4 consecutive free ports")


def _free(port: int) -> bool:
    import socket

    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


# ------------------------------------------------------------------------------------------- scenarios


def _tenant(db_url: str, slug: str) -> tuple[str, uuid.UUID]:
    with psycopg.connect(db_url, autocommit=True) as conn:
        org_id = ensure_org(conn, "bench")
        project_id = ensure_project(conn, org_id, slug)
        _, key = create_api_key(
            conn, org_id=org_id, project_id=project_id, kind="ingest", rate_per_s=1e9, burst=1e9
        )
    return key, project_id


def _env(db_url: str, bootstrap: str, suffix: str, group: str | None = None, metrics: int = 0) -> dict:
    env = services_env(db_url, bootstrap, Settings().redis.url, suffix, metrics_port=metrics)
    env["PULSEOPS_KAFKA__PARTITIONS"] = str(PARTITIONS)
    if group:
        env["PULSEOPS_KAFKA__CONSUMER_GROUP"] = group
    return env


@dataclass
class Backlog:
    """What was produced to the topic before any worker ran."""

    events: int
    messages: int
    seconds: float
    bytes: int
    project_id: uuid.UUID
    org_id: uuid.UUID
    load: str


def _events(org_id: uuid.UUID, project_id: uuid.UUID, n: int, rnd: random.Random) -> list[RawEvent]:
    """n events like an SDK's: event times over the last 20 h, received now, 4-5 low-cardinality properties."""
    now = datetime.now(UTC)
    enc = msgspec.json.Encoder()
    choice, below = rnd.choice, rnd.randrange
    out = []
    for _ in range(n):
        props = {"path": choice(_PATHS), "plan": choice(_PLANS), "country": choice(_COUNTRIES),
                 "device": choice(_DEVICES)}  # fmt: skip
        if below(5) == 0:
            props["amount"] = round(rnd.lognormvariate(3.0, 0.8), 2)
        out.append(
            RawEvent(
                org_id=org_id,
                project_id=project_id,
                event_id=uuid.UUID(int=(rnd.getrandbits(128) & _UUID_MASK) | _UUID_BITS),
                event=choice(_EVENT_NAMES),
                distinct_id=f"u-{below(20_000)}",
                timestamp=now - timedelta(milliseconds=below(72_000_000)),
                received_at=now,
                properties=msgspec.Raw(enc.encode(props)),
            )
        )
    return out


def produce_backlog(db_url: str, bootstrap: str, suffix: str, total: int) -> Backlog:
    """Produce `total` events as packed (format 2) messages of EVENTS_PER_MESSAGE, keyed like ingest keys
    them (project + first event's user), acks=all; returns once the broker acknowledged every message."""
    _, project_id = _tenant(db_url, f"backlog-{suffix}")
    with psycopg.connect(db_url) as conn:
        org_id = conn.execute("SELECT org_id FROM projects WHERE id = %s", (project_id,)).fetchone()[0]
    env = _env(db_url, bootstrap, suffix)
    kafka = KafkaSettings(
        bootstrap=bootstrap, topic_raw=env["PULSEOPS_KAFKA__TOPIC_RAW"], topic_dlq=env["PULSEOPS_KAFKA__TOPIC_DLQ"],
        partitions=PARTITIONS, retention_ms=int(env["PULSEOPS_KAFKA__RETENTION_MS"]),
    )  # fmt: skip
    ensure_topics(kafka)
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "acks": "all",
            "linger.ms": 20,
            "queue.buffering.max.kbytes": 1 << 20,
        }
    )
    failed: list[str] = []

    def on_delivery(err, _msg) -> None:
        if err is not None:
            failed.append(str(err))

    rnd = random.Random(f"backlog-{suffix}")
    load = loadavg()
    started = time.monotonic()
    messages = size = 0
    for first in range(0, total, 10 * EVENTS_PER_MESSAGE):
        events = _events(org_id, project_id, min(10 * EVENTS_PER_MESSAGE, total - first), rnd)
        for i in range(0, len(events), EVENTS_PER_MESSAGE):
            group = events[i : i + EVENTS_PER_MESSAGE]
            for start, value in pack_raw_events([encode_raw_event(e) for e in group]):
                key = message_key(project_id, group[start].distinct_id)
                while True:
                    try:
                        producer.produce(kafka.topic_raw, value, key, on_delivery=on_delivery)
                        break
                    except BufferError:
                        producer.poll(0.05)
                messages += 1
                size += len(value)
        producer.poll(0)
    remaining = producer.flush(60)
    if remaining or failed:
        raise RuntimeError(f"backlog not acknowledged: {remaining} undelivered, errors {failed[:3]}")
    return Backlog(total, messages, time.monotonic() - started, size, project_id, org_id, load)


def copy_baseline(db_url: str, rows: int, org_id: uuid.UUID, project_id: uuid.UUID, seed: str) -> dict:
    """PostgreSQL's own limit for this table: binary COPY straight into `events`, COPY_CHUNK rows per commit.

    Rows are shaped like the backlog's (same generator) and built before each COPY's clock starts; only
    COPY + commit are timed. Callers empty the landing tables before and after."""
    rnd = random.Random(seed)
    took = cpu = 0.0
    with psycopg.connect(db_url, autocommit=True) as conn:
        ensure_window(conn, datetime.now(UTC).date(), back_days=2, ahead_days=0)
        backend = [conn.info.backend_pid]
        done = 0
        while done < rows:
            chunk = [
                (e.project_id, e.timestamp, e.event_id, e.org_id, e.event, e.distinct_id, e.received_at,
                 bytes(e.properties).decode())
                for e in _events(org_id, project_id, min(COPY_CHUNK, rows - done), rnd)
            ]  # fmt: skip
            started, cpu_before = time.perf_counter(), process_cpu_s(backend)
            with (
                conn.transaction(),
                conn.cursor() as cur,
                cur.copy(
                    "COPY events (project_id, event_time, event_id, org_id, event_name, distinct_id, received_at,"
                    " properties) FROM STDIN (FORMAT BINARY)"
                ) as copy,
            ):
                copy.set_types(
                    ["uuid", "timestamptz", "uuid", "uuid", "text", "text", "timestamptz", "jsonb"]
                )
                for row in chunk:
                    copy.write_row(row)
            took += time.perf_counter() - started
            cpu += process_cpu_s(backend) - cpu_before
            done += len(chunk)
    return {"rows": rows, "seconds": took, "rows_per_s": rows / took, "postgres_cpu_s": cpu}


def drain(
    db_url: str, bootstrap: str, suffix: str, project_id: uuid.UUID, acknowledged: int, workers: int
) -> dict:
    """Start `workers` processes in a fresh consumer group on the backlog topic; sample until all landed."""
    group = f"pulseops-landing-{suffix}-w{workers}-{uuid.uuid4().hex[:4]}"
    base = _metrics_base()
    env = _env(db_url, bootstrap, suffix, group, metrics=base)
    offsets = Offsets(bootstrap, env["PULSEOPS_KAFKA__TOPIC_RAW"], group, PARTITIONS)
    svc = Services(env, 0)
    load_before = loadavg()
    samples: list[tuple[float, int, int]] = []  # (seconds since start, landed, broker lag)
    timeout = max(180.0, acknowledged / 4000)
    monitor = psycopg.connect(db_url, autocommit=True)
    marks: list[CpuMark] = []
    first_landed = 0
    t0 = time.monotonic()
    try:
        for i in range(workers):
            svc.start_worker(i)
        pids = [p.pid for p in svc.procs]
        while True:
            landed = sum(scrape(base + i) for i in range(workers))
            samples.append((time.monotonic() - t0, landed, offsets.lag()))
            if (landed > 0 and not marks) or landed >= acknowledged:
                marks.append(CpuMark.take(pids, monitor))  # at the first rows, and at the end
                first_landed = first_landed if len(marks) > 1 else landed
            if landed >= acknowledged:
                break
            if time.monotonic() - t0 > timeout:
                raise TimeoutError(
                    f"{workers} worker(s): {landed:,} of {acknowledged:,} landed in {timeout:.0f}s"
                )
            if any(p.poll() is not None for p in svc.procs):
                raise RuntimeError(f"a worker exited early: {[p.returncode for p in svc.procs]}")
            time.sleep(SAMPLE_S)
        # the counters are cumulative per process; confirm with the table itself
        done_t = samples[-1][0]
        rows, distinct = count_rows(db_url, project_id)
        samples.append((time.monotonic() - t0, rows, offsets.lag()))
    finally:
        svc.stop()
        offsets.close()
        monitor.close()
    load_after = loadavg()
    a, b = marks[0], marks[-1]
    cpu = {
        "worker_cpu_s": b.workers - a.workers,
        "postgres_cpu_s": b.postgres - a.postgres,
        "machine_busy": (b.busy - a.busy) / max(b.total - a.total, 1e-9),
        "cpu_rows": acknowledged - first_landed,  # rows landed between the two marks
    }
    first = next(t for t, n, _ in samples if n > 0)
    prev_t = max([t for t, n, _ in samples if n == 0] or [0.0])
    start_up = (first + prev_t) / 2  # first rows committed between the last empty sample and this one
    drain_s = max(done_t - start_up, SAMPLE_S)
    rates = [(round(b[0], 2), (b[1] - a[1]) / (b[0] - a[0])) for a, b in itertools.pairwise(samples)]
    return {
        "workers": workers,
        "acknowledged": acknowledged,
        "landed": rows,
        "duplicated": rows - distinct,
        "start_up_s": start_up,
        "drain_s": drain_s,
        "wall_s": done_t,
        "rows_per_s": acknowledged / drain_s,
        **cpu,
        "load_before": load_before,
        "load_after": load_after,
        "landed_series": [(round(t, 2), float(n)) for t, n, _ in samples],
        "lag_series": [(round(t, 2), float(lag)) for t, _, lag in samples if lag >= 0],
        "backlog_series": [(round(t, 2), float(acknowledged - n)) for t, n, _ in samples],
        "rate_series": rates,
        "samples": samples,
    }


def _empty_landing_tables(db_url: str) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("TRUNCATE events, event_ids, landed_days, dead_letters")


def scaling(
    db_url: str, bootstrap: str, backlog: int, worker_counts: tuple[int, ...], log: Callable[[str], None]
) -> dict:
    """One backlog, produced once, drained by each worker count in turn (the catch-up is the 1-worker run);
    PostgreSQL's COPY into the same table before the first drain and after the last."""
    suffix = uuid.uuid4().hex[:6]
    b = produce_backlog(db_url, bootstrap, suffix, backlog)
    log(
        f"backlog: {b.events:,} events in {b.messages:,} packed messages ({b.bytes / b.messages / 1024:,.1f} KiB "
        f"each) acknowledged by the broker in {b.seconds:.1f}s"
    )
    offsets = Offsets(bootstrap, f"events-raw-{suffix}", "none", PARTITIONS)
    end_offsets = offsets.end_offsets()
    offsets.close()
    copies = []
    _empty_landing_tables(db_url)
    copies.append(copy_baseline(db_url, backlog, b.org_id, b.project_id, f"copy-{suffix}-0"))
    log(f"PostgreSQL binary COPY into events: {copies[-1]['rows_per_s']:,.0f} rows/s")
    runs = []
    for workers in worker_counts:
        _empty_landing_tables(db_url)
        run_ = drain(db_url, bootstrap, suffix, b.project_id, b.events, workers)
        log(
            f"{workers} worker(s): {run_['rows_per_s']:,.0f} rows/s, start-up {run_['start_up_s']:.1f}s, "
            f"drain {run_['drain_s']:.1f}s, load {run_['load_before']} -> {run_['load_after']}"
        )
        runs.append(run_)
    _empty_landing_tables(db_url)
    copies.append(copy_baseline(db_url, backlog, b.org_id, b.project_id, f"copy-{suffix}-1"))
    _empty_landing_tables(db_url)
    log(f"PostgreSQL binary COPY into events: {copies[-1]['rows_per_s']:,.0f} rows/s")
    copy_rate = sum(c["rows_per_s"] for c in copies) / len(copies)
    by_workers = {r["workers"]: r["rows_per_s"] for r in runs}
    return {
        "backlog": backlog,
        "sent": b.events,
        "acknowledged": b.events,
        "messages": b.messages,
        "events_per_message": EVENTS_PER_MESSAGE,
        "message_bytes": b.bytes / max(b.messages, 1),
        "ingest_s": b.seconds,
        "ingest_load": b.load,
        "topic_end_offsets": end_offsets,
        "runs": runs,
        # `copy.rows_per_s` is the key the suite's landing-vs-COPY row reads (benchmarks/adapters.py)
        "copy": {"rows_per_s": copy_rate, "rows": backlog, "measurements": copies},
        "landing_vs_copy": by_workers[1] / copy_rate,
        "two_vs_one": by_workers[2] / by_workers[1] if 2 in by_workers else None,
    }


def proof(db_url: str, bootstrap: str, cfg: dict, log: Callable[[str], None]) -> dict:
    """SIGTERM mid-stream, ingest while down, restart, SIGKILL while landing, restart: counts must be exact."""
    suffix = uuid.uuid4().hex[:6]
    key, project_id = _tenant(db_url, f"proof-{suffix}")
    base = _metrics_base()
    env = _env(db_url, bootstrap, suffix, metrics=base)
    svc = Services(env, free_port())
    events: list[str] = []
    landed_now = lambda: count_rows(db_url, project_id)[0]  # noqa: E731
    try:
        svc.start_ingest(workers=2)
        worker = svc.start_worker(0)
        sent = SendLog()
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
        worker = svc.start_worker(0)
        wait_for(lambda: landed_now() >= sent.acknowledged, 300, "all acknowledged events landed", 0.2)
        time.sleep(2 * Settings().streams.commit_interval_s + 1)  # anything re-read late would show up now
        redelivered = scrape(base, _DUPS_TOTAL)
        events.append(f"restarted worker deduplicated {redelivered:,} re-delivered events (ledger)")
    finally:
        svc.stop()
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
    out = {
        "sent": sent.sent,
        "acknowledged": sent.acknowledged,
        "acknowledged_distinct": len(acked),
        "landed": landed,
        "ledger": ledger,
        "duplicated": landed - distinct,
        "missing": len(acked - in_table),
        "unexpected": len(in_table - acked),
        "redelivered_deduplicated": redelivered,
        "retries": sent.retries,
        "statuses": sent.statuses,
        "timeline": events,
    }
    log(f"proof: {out}")
    return out


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


def _per_cpu(r: dict) -> str:
    """Rows per worker CPU-second over the drain; n/a when the drain was too short to measure."""
    return f"{r['cpu_rows'] / r['worker_cpu_s']:,.0f}" if r["worker_cpu_s"] >= 0.1 else "n/a"


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
