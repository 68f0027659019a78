"""`pulseops status`'s landing section (pulseops/status.py) against a real Tansu: the raw topic against its
group, and the overflow topic against the overflow group when one is set."""

from __future__ import annotations

import uuid

from confluent_kafka import Consumer, Producer, TopicPartition

from benchmarks.harness import free_port
from pulseops.settings import KafkaSettings
from pulseops.status import landing_report, render
from pulseops.topics import ensure_topics


def _kafka(bootstrap: str, overflow: bool) -> KafkaSettings:
    suffix = uuid.uuid4().hex[:6]
    return KafkaSettings(
        bootstrap=bootstrap,
        topic_raw=f"raw-{suffix}",
        topic_dlq=f"dlq-{suffix}",
        consumer_group=f"landing-{suffix}",
        partitions=2,
        topic_overflow=f"overflow-{suffix}" if overflow else "",
        overflow_partitions=2,
    )


def _produce(bootstrap: str, topic: str, partition: int, n: int) -> None:
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


def _report(landing: dict) -> str:
    return render(
        {
            "state_dir": "/nowhere",
            "running": False,
            "services": [],
            "landing": landing,
            "warehouse": {"error": "not asked"},
            "dagster_daemon": {"error": "not asked"},
            "ok": False,
            "problems": ["not running"],
        }
    )


def test_the_overflow_topic_is_reported_against_its_own_group(broker) -> None:
    k = _kafka(broker, overflow=True)
    ensure_topics(k)
    _produce(broker, k.topic_raw, 0, 5)
    _produce(broker, k.topic_overflow, 1, 7)
    _commit(broker, k.consumer_group, k.topic_raw, {0: 5, 1: 0})
    _commit(broker, k.overflow_group, k.topic_overflow, {0: 0, 1: 3})

    problems: list[str] = []
    landing = landing_report(k, 5.0, problems)

    assert not problems
    assert (landing["topic"], landing["group"]) == (k.topic_raw, k.consumer_group)
    assert [(p["partition"], p["lag"]) for p in landing["partitions"]] == [(0, 0), (1, 0)]
    over = landing["overflow"]
    assert (over["topic"], over["group"]) == (k.topic_overflow, k.overflow_group)
    assert [(p["partition"], p["committed"], p["high"], p["lag"]) for p in over["partitions"]] == [
        (0, 0, 0, 0),
        (1, 3, 7, 4),
    ]
    assert over["partitions"][1]["behind_s"] is not None
    text = _report(landing)
    assert f"landing: topic {k.topic_raw}, group {k.consumer_group}" in text
    assert f"landing (overflow): topic {k.topic_overflow}, group {k.overflow_group}" in text
    assert text.count("lag        4") == 1


def test_without_an_overflow_topic_only_the_raw_topic_is_reported(broker) -> None:
    k = _kafka(broker, overflow=False)
    ensure_topics(k)
    landing = landing_report(k, 5.0, [])
    assert "overflow" not in landing and len(landing["partitions"]) == 2
    assert "overflow" not in _report(landing)


def test_a_down_broker_is_one_problem() -> None:
    k = _kafka(f"127.0.0.1:{free_port()}", overflow=True)
    problems: list[str] = []
    landing = landing_report(k, 1.0, problems)
    assert "error" in landing and "error" in landing["overflow"]
    assert len(problems) == 1 and problems[0].startswith(f"broker at {k.servers}")
    assert "unavailable" in _report(landing)
