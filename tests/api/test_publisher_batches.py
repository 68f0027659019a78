"""The ingest publisher writes one partition per window (api/ingest/publisher.py): concurrent requests share
a record batch instead of each making its own, which the embedded broker stores and lists on every fetch."""

from __future__ import annotations

import asyncio
import time
import uuid

from api.ingest.publisher import Delivery, Publisher
from pulseops.settings import KafkaSettings
from pulseops.topics import ensure_topics


def _publisher(broker: str, window_ms: int, hot_partitions: int) -> Publisher:
    suffix = uuid.uuid4().hex[:6]
    settings = KafkaSettings(
        bootstrap=broker,
        topic_raw=f"raw-{suffix}",
        topic_dlq=f"dlq-{suffix}",
        partitions=5,
        hot_partitions=hot_partitions,
        topic_overflow="",
        partition_window_ms=window_ms,
    )
    ensure_topics(settings, 10)
    publisher = Publisher(settings)
    publisher.refresh_partitions()
    return publisher


def _publish_many(publisher: Publisher, n: int, hot: bool = False) -> list[Delivery]:
    """n one-message requests at once, each with its own key (another user), as concurrent HTTP requests."""

    async def run() -> list[Delivery]:
        return await asyncio.gather(
            *(publisher.publish([(f"user-{i}".encode(), b"[{}]")], hot) for i in range(n))
        )

    return asyncio.run(run())


def _partitions(deliveries: list[Delivery]) -> set[int]:
    return {p for d in deliveries for p in d.offsets}


def test_concurrent_requests_of_one_window_share_one_partition_and_windows_rotate(broker: str) -> None:
    publisher = _publisher(broker, window_ms=200, hot_partitions=1)
    try:
        seen = []
        for _ in range(6):
            parts = _partitions(_publish_many(publisher, 40))
            assert len(parts) <= 2, parts  # one window's partition (two if the burst crossed a boundary)
            assert 4 not in parts  # the reserved hot partition is not a normal project's
            seen.append(parts)
            time.sleep(0.2)
        assert len(set().union(*seen)) >= 2, seen  # later windows write other partitions
        hot = _partitions(_publish_many(publisher, 20, hot=True))
        assert hot == {4}, hot  # hot projects keep to the reserved partition
    finally:
        publisher.close()


def test_window_zero_partitions_by_key(broker: str) -> None:
    publisher = _publisher(broker, window_ms=0, hot_partitions=1)
    try:
        parts = _partitions(_publish_many(publisher, 40))
        assert len(parts) >= 3, parts  # 40 users hash over the 4 normal partitions
        assert 4 not in parts
    finally:
        publisher.close()


def test_without_reserved_partitions_the_window_still_applies(broker: str) -> None:
    publisher = _publisher(broker, window_ms=10_000, hot_partitions=0)
    try:
        normal = _partitions(_publish_many(publisher, 30))
        hot = _partitions(_publish_many(publisher, 30, hot=True))
        assert len(normal) <= 2 and len(hot) <= 2, (normal, hot)  # nothing reserved: hot shares the window
    finally:
        publisher.close()
