"""The dashboard's consumer lag (api/graphql/lag.py) against a real Tansu: the raw topic's records its group
has not committed, plus the overflow topic's that the overflow group has not committed."""

from __future__ import annotations

import uuid

from confluent_kafka import Consumer, Producer, TopicPartition

from api.graphql.lag import ConsumerLag
from pulseops.settings import KafkaSettings
from pulseops.topics import ensure_topics


def _produce(bootstrap: str, topic: str, partition: int, n: int) -> None:
    """One record per batch: Tansu's ListOffsets (what the lag reads) is exact for those."""
    p = Producer({"bootstrap.servers": bootstrap})
    for i in range(n):
        p.produce(topic, f"r{i}".encode(), partition=partition)
        assert p.flush(10) == 0


def _commit(bootstrap: str, group: str, topic: str, offsets: dict[int, int]) -> None:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        c.commit(offsets=[TopicPartition(topic, p, o) for p, o in offsets.items()], asynchronous=False)
    finally:
        c.close()


def test_lag_adds_the_overflow_topic_against_its_own_group(broker) -> None:
    suffix = uuid.uuid4().hex[:6]
    k = KafkaSettings(
        bootstrap=broker,
        topic_raw=f"raw-{suffix}",
        topic_dlq=f"dlq-{suffix}",
        consumer_group=f"landing-{suffix}",
        partitions=2,
        topic_overflow=f"overflow-{suffix}",
        overflow_partitions=2,
    )
    ensure_topics(k)
    _produce(broker, k.topic_raw, 0, 4)
    _produce(broker, k.topic_overflow, 1, 6)
    _commit(broker, k.consumer_group, k.topic_raw, {0: 4, 1: 0})

    def lag(settings: KafkaSettings) -> int | None:
        measure = ConsumerLag(settings, ttl_s=0)
        try:
            return measure()
        finally:
            measure.close()

    assert lag(k.model_copy(update={"topic_overflow": ""})) == 0  # the raw topic alone is landed
    assert lag(k) == 6  # the overflow group never committed: all of its records
    _commit(broker, k.consumer_group, k.topic_overflow, {1: 6})  # the raw group's commits do not count
    assert lag(k) == 6
    _commit(broker, k.overflow_group, k.topic_overflow, {0: 0, 1: 2})
    assert lag(k) == 4
    _produce(broker, k.topic_raw, 1, 3)
    assert lag(k) == 7
