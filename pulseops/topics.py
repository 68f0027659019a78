"""Topic specs shared by ingest (producer), streams (consumer) and the CLI; created with explicit configs.

Tansu's DescribeConfigs returns only configs set at creation, and Quix Streams reads retention.ms from it, so
every topic is created with retention.ms, retention.bytes and cleanup.policy spelled out.
"""

from __future__ import annotations

import logging

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from pulseops.settings import KafkaSettings

log = logging.getLogger(__name__)


def topic_config(settings: KafkaSettings, topic: str | None = None) -> dict[str, str]:
    """Configs of the raw topic, or of `topic`: the DLQ keeps its few records longer, in less room."""
    dlq = topic is not None and topic == settings.topic_dlq
    return {
        "retention.ms": str(settings.dlq_retention_ms if dlq else settings.retention_ms),
        "retention.bytes": str(settings.dlq_retention_bytes if dlq else settings.retention_bytes),
        "cleanup.policy": "delete",
    }


def landed_topics(kafka: KafkaSettings) -> dict[str, str]:
    """Every topic the landing workers consume, with its group: the raw topic, and the overflow topic when
    set (landed by a group of its own, KafkaSettings.overflow_group)."""
    topics = {kafka.topic_raw: kafka.consumer_group}
    if kafka.topic_overflow:
        topics[kafka.topic_overflow] = kafka.overflow_group
    return topics


def ensure_topics(settings: KafkaSettings, timeout: float = 10.0) -> list[str]:
    """Create the raw, DLQ and (when set) overflow topics if missing; returns the names created. Raises if the
    broker is down."""
    admin = AdminClient({"bootstrap.servers": settings.servers})
    existing = admin.list_topics(timeout=timeout).topics
    partitions = {settings.topic_raw: settings.partitions, settings.topic_dlq: settings.partitions}
    if settings.topic_overflow:
        partitions[settings.topic_overflow] = settings.overflow_partitions
    wanted = [
        NewTopic(
            name,
            num_partitions=n,
            replication_factor=settings.replication_factor,
            config=topic_config(settings, name),
        )
        for name, n in partitions.items()
        if name not in existing
    ]
    if not wanted:
        return []
    created = []
    for name, fut in admin.create_topics(wanted, request_timeout=timeout).items():
        try:
            fut.result()
            created.append(name)
        except KafkaException as exc:
            if exc.args[0].code() != 36:  # TOPIC_ALREADY_EXISTS: another process won the race
                raise
    log.info("created topics %s", created)
    return created
