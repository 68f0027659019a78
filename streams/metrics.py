"""Prometheus metrics of a landing worker, served on its own port (one per worker process)."""

from __future__ import annotations

import orjson
from prometheus_client import Counter, Gauge, Histogram

LANDED = Counter("pulseops_landing_rows_total", "Rows inserted into events (new, not duplicates).")
# Everything below counts events, not Kafka messages: a packed (format 2) message carries up to 1,000.
DUPLICATES = Counter(
    "pulseops_landing_duplicates_total", "Events whose (project, event_id) had already landed."
)
DEAD_LETTERS = Counter(
    "pulseops_landing_dead_letters_total",
    "Dead letters sent to the dead-letter topic: one per bad event, or one per unreadable message.",
    ["reason"],
)
IDENTITY = Counter(
    "pulseops_landing_identity_total",
    "Identity carried by landed events: kind=links (id pairs, repeats of a link included), "
    "kind=properties ($set/$set_once per id and key).",
    ["kind"],
)
MESSAGES = Counter("pulseops_landing_messages_total", "Kafka messages consumed (any format).")
BATCH_SIZE = Histogram(
    "pulseops_landing_batch_events",
    "Events per landing transaction.",
    buckets=(1, 10, 100, 500, 1000, 5000, 10000, 20000, 50000),
)
BATCH_SECONDS = Histogram(
    "pulseops_landing_batch_seconds",
    "Time to land one batch (COPY + merge + commit; decoding happens before, as messages arrive).",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
OFFSET_GAPS = Counter(
    "pulseops_landing_offset_gaps_total",
    "Times a partition's fetched offsets skipped some (the checkpoint is re-read; see streams/offsets.py OffsetGap).",
)
BROKER_REPLACED = Counter(
    "pulseops_landing_broker_replaced_total",
    "Times the raw topic's id changed under the worker, which then restarted itself (streams/fence.py).",
)
QUIET_FIRST = Counter(
    "pulseops_landing_quiet_first_total",
    "Chunks whose quiet projects landed in their own transaction ahead of a busy project's rows (streams/sink.py).",
)
DB_RETRIES = Counter("pulseops_landing_db_retries_total", "Batches put back because PostgreSQL failed.")
SECONDS_BEHIND = Gauge(
    "pulseops_landing_seconds_behind",
    "Now minus the receive time of the newest event in the last landed chunk.",
)
CONSUMER_LAG = Gauge(
    "pulseops_landing_consumer_lag", "Messages not yet consumed, per partition.", ["topic", "partition"]
)


def on_stats(stats_json: str) -> None:
    """librdkafka statistics callback: per-partition consumer lag, no extra broker round trips."""
    stats = orjson.loads(stats_json)
    for topic, t in stats.get("topics", {}).items():
        for pid, p in t.get("partitions", {}).items():
            lag = p.get("consumer_lag", -1)
            if pid != "-1" and lag >= 0:
                CONSUMER_LAG.labels(topic=topic, partition=pid).set(lag)
