"""What benchmarks/catchup.py and benchmarks/catchup_scaling.py measure with: an HTTP ingest client that keeps
the event ids the 202 bodies acknowledge, consumer lag read from the broker, the workers' landing counters,
CPU seconds of the workers, of PostgreSQL's backends and of the machine, and the scratch tenant and worker
environment they share.
"""

from __future__ import annotations

import asyncio
import os
import random
import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import psycopg
from confluent_kafka import Consumer, TopicPartition

from benchmarks.harness import free_port, services_env
from pulseops.settings import Settings
from warehouse.tenants import create_api_key, ensure_org, ensure_project

MAX_WORKERS = 4
PARTITIONS = 4  # at least the largest worker count; splits evenly over 1, 2 and 4 workers
BATCH = 1000
EVENT_NAMES = ("page_view", "click", "signup", "purchase", "search", "login")
PLANS = ("free", "pro", "enterprise")
# uuid4 bit layout: clear the version/variant bits, then set version 4 and variant 10xx
UUID_MASK = ~((0xF000 << 64) | (0xC000 << 48)) & ((1 << 128) - 1)
UUID_BITS = (0x4000 << 64) | (0x8000 << 48)


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
    h = f"{(random.getrandbits(128) & UUID_MASK) | UUID_BITS:032x}"
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
            f'{{"event":"{choice(EVENT_NAMES)}","distinct_id":"u-{rand(20_000)}","event_id":"{_uuid4()}",'
            f'"timestamp":"{choice(stamps)}","properties":{{"plan":"{choice(PLANS)}","path":"/pricing"}}}}'
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


ROWS_TOTAL = re.compile(rb"^pulseops_landing_rows_total ([0-9.e+]+)$", re.M)
DUPS_TOTAL = re.compile(rb"^pulseops_landing_duplicates_total ([0-9.e+]+)$", re.M)


def scrape(port: int, pattern: re.Pattern[bytes] = ROWS_TOTAL) -> int:
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


def metrics_base() -> int:
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


# ------------------------------------------------------------------------------------------- set-up


def tenant(db_url: str, slug: str) -> tuple[str, uuid.UUID]:
    """(ingest API key, project id) of a fresh project, rate limits out of the way: the limiter is not measured."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        org_id = ensure_org(conn, "bench")
        project_id = ensure_project(conn, org_id, slug)
        _, key = create_api_key(
            conn, org_id=org_id, project_id=project_id, kind="ingest", rate_per_s=1e9, burst=1e9
        )
    return key, project_id


def worker_env(db_url: str, bootstrap: str, suffix: str, group: str | None = None, metrics: int = 0) -> dict:
    """Service environment on this run's topics (suffix) with PARTITIONS partitions, optionally its own group."""
    env = services_env(db_url, bootstrap, Settings().redis.url, suffix, metrics_port=metrics)
    env["PULSEOPS_KAFKA__PARTITIONS"] = str(PARTITIONS)
    if group:
        env["PULSEOPS_KAFKA__CONSUMER_GROUP"] = group
    return env
