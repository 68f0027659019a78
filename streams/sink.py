"""PostgresLandingSink: a Quix Streams BatchingSink that lands each checkpoint's batch with COPY.

Quix commits Kafka offsets only after `flush()` (which calls `write()`) returned, so offsets move only after
the PostgreSQL commit. A failed write raises SinkBackpressureError: Quix drops the batch, pauses, seeks back
to the committed offsets and re-reads them; the (project, event_id) ledger makes the replay land once.

Decoding happens here, in one tight loop per batch, rather than as a per-message StreamingDataFrame step:
a Quix step costs several microseconds per message, and the worker's Python time is its first limit.
"""

from __future__ import annotations

import contextlib
import logging
import time
from datetime import UTC, datetime

import psycopg
from confluent_kafka import Producer
from quixstreams.sinks import BatchingSink, SinkBackpressureError, SinkBatch

from pulseops.settings import Settings
from streams import metrics
from streams.decode import Rejected, Window, decode
from warehouse.db import connect
from warehouse.landing import DeadLetter, LandingRow, PartitionCache, land_batch

log = logging.getLogger(__name__)


class PostgresLandingSink(BatchingSink):
    def __init__(self, settings: Settings) -> None:
        super().__init__()
        self.settings = settings
        self._conn: psycopg.Connection | None = None
        self._partitions = PartitionCache()
        self._dlq: Producer | None = None

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
        return self._conn

    def write(self, batch: SinkBatch) -> None:
        started = time.perf_counter()
        window = Window(self.settings.warehouse.raw_retention_days, self.settings.ingest.max_future_s)
        rows: dict[tuple, LandingRow] = {}
        dead: list[DeadLetter] = []
        topic, partition = batch.topic, batch.partition
        newest_received: datetime | None = None
        for item in batch:
            out = decode(item.value, window)
            if type(out) is tuple:
                rows.setdefault((out[0], out[2]), out)
            else:
                assert isinstance(out, Rejected)
                value = item.value if isinstance(item.value, bytes) else b""
                dead.append(
                    DeadLetter(out.reason.value, out.detail[:2000], value, topic, partition, item.offset)
                )
        if rows:
            newest_received = max(r[6] for r in rows.values())
        try:
            if dead:
                self._publish_dead_letters(dead, batch)
            result = land_batch(self._connection(), list(rows.values()), dead, self._partitions)
        except (
            psycopg.OperationalError,
            psycopg.errors.DeadlockDetected,
            psycopg.errors.SerializationFailure,
        ) as exc:
            self._drop_connection()
            metrics.DB_RETRIES.inc()
            log.warning(
                "landing failed (%s); retrying batch in %.1fs", exc, self.settings.streams.db_retry_after_s
            )
            raise SinkBackpressureError(retry_after=self.settings.streams.db_retry_after_s) from exc
        except _DlqUnavailable as exc:
            log.warning("dead-letter topic unavailable (%s); retrying batch", exc)
            raise SinkBackpressureError(retry_after=self.settings.streams.db_retry_after_s) from exc
        metrics.LANDED.inc(result.landed)
        metrics.DUPLICATES.inc(batch.size - len(dead) - result.landed)
        metrics.BATCH_SIZE.observe(batch.size)
        metrics.BATCH_SECONDS.observe(time.perf_counter() - started)
        for d in dead:
            metrics.DEAD_LETTERS.labels(reason=d.reason).inc()
        if newest_received is not None:
            metrics.SECONDS_BEHIND.labels(partition=str(partition)).set(
                (datetime.now(UTC) - newest_received).total_seconds()
            )

    def _publish_dead_letters(self, dead: list[DeadLetter], batch: SinkBatch) -> None:
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

    def cleanup(self) -> None:
        self._drop_connection()
        if self._dlq is not None:
            self._dlq.flush(5)


class _DlqUnavailable(Exception):
    pass
