"""Hot projects publish through a producer of their own (api/ingest/publisher.py): a quiet project's request is
acknowledged while a hot project's large requests are still queued or in flight, instead of waiting for the one
produce request in flight to carry them."""

from __future__ import annotations

import asyncio
import os
import uuid

from api.ingest.publisher import Publisher
from pulseops.settings import KafkaSettings
from pulseops.topics import ensure_topics


def _publisher(broker: str, hot_partitions: int) -> Publisher:
    suffix = uuid.uuid4().hex[:6]
    settings = KafkaSettings(
        bootstrap=broker,
        topic_raw=f"raw-{suffix}",
        topic_dlq=f"dlq-{suffix}",
        partitions=3,
        hot_partitions=hot_partitions,
        topic_overflow="",  # the reserved partitions' producer (test_overflow_topic.py: the overflow topic)
        compression="none",
    )
    ensure_topics(settings, 10)
    publisher = Publisher(settings)
    publisher.refresh_partitions()
    return publisher


async def _quiet_beside_hot(publisher: Publisher) -> tuple[int, list]:
    """Queue ~24 MB for a hot project, then publish one quiet message: (hot messages still undelivered when the
    quiet one was acknowledged, every delivery)."""
    big = os.urandom(600 * 1024)  # random: the broker must take every byte
    hot = [asyncio.ensure_future(publisher.publish([(b"hot-%d" % i, big)], hot=True)) for i in range(40)]
    await asyncio.sleep(0)  # the hot requests are queued first
    quiet = await publisher.publish([(b"quiet", b"{}")])
    undelivered = sum(not h.done() for h in hot)
    deliveries = [quiet, *await asyncio.gather(*hot)]
    return undelivered, deliveries


class _Counting:
    """A producer that counts the messages handed to it."""

    def __init__(self, real: object) -> None:
        self.real, self.produced = real, 0

    def __getattr__(self, name: str) -> object:
        return getattr(self.real, name)

    def __len__(self) -> int:
        return len(self.real)  # type: ignore[arg-type]

    def produce(self, *args, **kwargs) -> None:
        self.produced += 1
        self.real.produce(*args, **kwargs)  # type: ignore[attr-defined]


def test_a_quiet_request_is_not_queued_behind_a_hot_one(broker: str) -> None:
    publisher = _publisher(broker, hot_partitions=1)
    try:
        assert publisher._hot_producer is not None
        main, hot = _Counting(publisher._producer), _Counting(publisher._hot_producer)
        publisher._producer, publisher._hot_producer = main, hot  # type: ignore[assignment]
        undelivered, deliveries = asyncio.run(_quiet_beside_hot(publisher))
        assert (main.produced, hot.produced) == (1, 40), "hot messages must go through their own producer"
        assert undelivered > 0, "the quiet request waited until every hot request was acknowledged"
        quiet, *hot = deliveries
        assert set(quiet.offsets) <= {0, 1}  # the normal partitions
        assert all(set(d.offsets) == {2} for d in hot)  # the reserved one
    finally:
        publisher.close()


def test_without_reserved_partitions_there_is_one_producer(broker: str) -> None:
    publisher = _publisher(broker, hot_partitions=0)
    try:
        assert publisher._hot_producer is None
        _, deliveries = asyncio.run(_quiet_beside_hot(publisher))
        assert len(deliveries) == 41 and all(d.offsets for d in deliveries)
    finally:
        publisher.close()
