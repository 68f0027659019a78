"""PostgresLandingSink: a Quix Streams BatchingSink that lands each checkpoint with binary COPY.

Quix commits Kafka offsets only after `flush()` returned, so offsets move only after the PostgreSQL commits.
A failed landing raises SinkBackpressureError: Quix drops the batches, pauses, seeks back to the committed
offsets and re-reads them; the (project, event_id) ledger makes the replay land once.

Two deviations from a plain `write(batch)` sink, both for throughput (see docs/benchmarks/):
- `flush()` takes all partitions' batches of a checkpoint together and cuts them into chunks of
  `batch_max_rows`, instead of one transaction per partition batch.
- Decoding (Python, holds the GIL) of chunk n+1 overlaps the landing of chunk n in one background thread,
  which mostly waits on PostgreSQL. Every chunk is its own transaction; flush returns after the last commit.
Decoding happens here, in one loop per chunk, rather than as a per-message StreamingDataFrame step: a Quix
step costs several microseconds per message, and the worker's Python time is its first limit.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime

import psycopg
from confluent_kafka import Producer
from quixstreams.sinks import BatchingSink, SinkBackpressureError, SinkBatch

from pulseops.settings import Settings
from streams import metrics
from streams.decode import Rejected, Window, decode
from warehouse.db import connect
from warehouse.landing import DeadLetter, LandingRow, PartitionCache, land_batch
from warehouse.partitions import ensure_window

log = logging.getLogger(__name__)

RETRYABLE = (psycopg.OperationalError, psycopg.errors.DeadlockDetected, psycopg.errors.SerializationFailure)


class _DlqUnavailable(Exception):
    pass


class PostgresLandingSink(BatchingSink):
    def __init__(self, settings: Settings) -> None:
        super().__init__()
        self.settings = settings
        self._conn: psycopg.Connection | None = None
        self._partitions = PartitionCache()
        self._dlq: Producer | None = None
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="landing")
        self._failures = 0

    def setup(self) -> None:
        self._dlq = Producer(
            {
                "bootstrap.servers": self.settings.kafka.servers,
                "acks": "all",
                "linger.ms": 5,
                "message.timeout.ms": 10_000,
            }
        )
        self._connection()

    def _connection(self) -> psycopg.Connection:
        if self._conn is None or self._conn.closed:
            self._conn = connect(self.settings.db.url, connect_timeout=5, autocommit=True)
            self._partitions.reset()
            # Partitions ahead are created on every (re)connect; missing days are still created on demand.
            ensure_window(
                self._conn,
                datetime.now(UTC).date(),
                back_days=1,
                ahead_days=self.settings.warehouse.partitions_ahead_days,
            )
        return self._conn

    # -- Quix entry points --------------------------------------------------------------------------------
    def write(self, batch: SinkBatch) -> None:
        self._land_all([batch])

    def flush(self) -> None:
        try:
            if self._batches:
                self._land_all(list(self._batches.values()))
        finally:
            self._batches.clear()

    # -- landing --------------------------------------------------------------------------------------------
    def _land_all(self, batches: list[SinkBatch]) -> None:
        started = time.perf_counter()
        window = Window(self.settings.warehouse.raw_retention_days, self.settings.ingest.max_future_s)
        pending: Future | None = None
        total = 0
        try:
            for rows, dead, n in self._decoded_chunks(batches, window):
                total += n
                if pending is not None:
                    pending.result()
                if dead:
                    self._publish_dead_letters(dead)
                pending = self._pool.submit(self._land_chunk, rows, dead, n)
            if pending is not None:
                pending.result()
        except RETRYABLE as exc:
            self._drop_connection()
            metrics.DB_RETRIES.inc()
            delay = self._backoff()
            log.warning("landing failed (%s); re-reading from committed offsets in %.1fs", exc, delay)
            raise SinkBackpressureError(retry_after=delay) from exc
        except _DlqUnavailable as exc:
            delay = self._backoff()
            log.warning("dead-letter topic unavailable (%s); retrying in %.1fs", exc, delay)
            raise SinkBackpressureError(retry_after=delay) from exc
        self._failures = 0
        metrics.BATCH_SIZE.observe(total)
        metrics.BATCH_SECONDS.observe(time.perf_counter() - started)

    def _backoff(self) -> float:
        """Exponential backoff from db_retry_after_s up to 30 s while PostgreSQL stays down."""
        self._failures += 1
        return min(30.0, self.settings.streams.db_retry_after_s * 2 ** (self._failures - 1))

    def _decoded_chunks(
        self, batches: Iterable[SinkBatch], window: Window
    ) -> Iterator[tuple[list[LandingRow], list[DeadLetter], int]]:
        limit = self.settings.streams.batch_max_rows
        rows: dict[tuple[int, int], LandingRow] = {}
        dead: list[DeadLetter] = []
        n = 0
        for batch in batches:
            topic, partition = batch.topic, batch.partition
            for item in batch:
                out = decode(item.value, window)
                n += 1
                if type(out) is tuple:
                    rows.setdefault((out[0].int, out[2].int), out)  # int keys hash in C, UUIDs in Python
                else:
                    assert isinstance(out, Rejected)
                    value = item.value if isinstance(item.value, bytes) else b""
                    dead.append(
                        DeadLetter(out.reason.value, out.detail[:2000], value, topic, partition, item.offset)
                    )
                if n >= limit:
                    yield list(rows.values()), dead, n
                    rows, dead, n = {}, [], 0
        if n:
            yield list(rows.values()), dead, n

    def _land_chunk(self, rows: list[LandingRow], dead: list[DeadLetter], n: int) -> None:
        result = land_batch(self._connection(), rows, dead, self._partitions)
        metrics.LANDED.inc(result.landed)
        metrics.DUPLICATES.inc(n - len(dead) - result.landed)
        for d in dead:
            metrics.DEAD_LETTERS.labels(reason=d.reason).inc()
        if rows:
            newest = max(r[6] for r in rows)
            metrics.SECONDS_BEHIND.set((datetime.now(UTC) - newest).total_seconds())

    def _publish_dead_letters(self, dead: list[DeadLetter]) -> None:
        """Original bytes as the value, the reason in headers (Kafka Connect's DLQ convention)."""
        assert self._dlq is not None
        failures: list[str] = []

        def on_delivery(err, _msg) -> None:
            if err is not None:
                failures.append(str(err))

        for d in dead:
            self._dlq.produce(
                self.settings.kafka.topic_dlq,
                d.payload,
                headers=[
                    ("pulseops.dlq.reason", d.reason.encode()),
                    ("pulseops.dlq.detail", d.detail.encode()),
                    (
                        "pulseops.dlq.source",
                        f"{d.source_topic}/{d.source_partition}/{d.source_offset}".encode(),
                    ),
                ],
                on_delivery=on_delivery,
            )
        remaining = self._dlq.flush(10)
        if remaining or failures:
            raise _DlqUnavailable(failures[0] if failures else f"{remaining} undelivered")

    def _drop_connection(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):  # already broken
                self._conn.close()
        self._conn = None
