"""Packed (format 2) and single (format 1) `events-raw` messages through a real `python -m streams` worker, a
real Tansu broker and the real warehouse: every event lands exactly once, bad events are dead-lettered alone
with their own bytes and index, and the worker's metrics count events, not messages.

Messages are produced straight to the topic (not through the ingest API) so that the test controls which
format, which duplicates and which corruption the worker sees.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import psycopg
import pytest
from confluent_kafka import Consumer, Producer

from benchmarks.harness import free_port
from pulseops.topics import ensure_topics
from tests.fixtures.system import System, landed_count, wait_until
from tests.utils.tenants import make_tenant
from warehouse.events import encode_forwarded, message_key, pack_raw_events

pytestmark = pytest.mark.slow


def _event(tenant: dict, n: int, event_id: uuid.UUID | None = None, **overrides) -> bytes:
    """One RawEvent as ingest encodes it (format 1; a packed message's elements are byte for byte these)."""
    now = datetime.now(UTC)
    body = {
        "org_id": str(tenant["org_id"]),
        "project_id": str(tenant["project_id"]),
        "event_id": str(event_id or uuid.uuid4()),
        "event": "page_view",
        "distinct_id": f"u-{n % 7}",
        "timestamp": (now - timedelta(minutes=n % 1440)).isoformat().replace("+00:00", "Z"),
        "received_at": now.isoformat().replace("+00:00", "Z"),
        "properties": {"path": f"/p/{n}", "plan": "pro"},
        "v": 1,
    }
    body.update(overrides)
    return json.dumps(body, separators=(",", ":")).encode()


def _pack(values: list[bytes]) -> bytes:
    [(_, value)] = pack_raw_events(values)
    return value


def _produce(system: System, values: list[bytes]) -> None:
    k = system.settings.kafka
    ensure_topics(k)
    producer = Producer({"bootstrap.servers": k.servers, "acks": "all"})
    for i, value in enumerate(values):
        producer.produce(k.topic_raw, value, key=message_key(uuid.UUID(int=0), f"u-{i % 3}"))
    assert producer.flush(10) == 0


def _start_worker_with_metrics(system: System) -> int:
    port = free_port()
    system.settings.streams.metrics_port = port  # worker 0 serves metrics on metrics_port + 0
    system.start_worker()
    return port


def _metric(port: int, name: str) -> float:
    """Sum of a metric's samples (all label sets); 0 while the worker is not serving yet."""
    try:
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
    except httpx.HTTPError:
        return 0.0
    return sum(float(v) for v in re.findall(rf"^{name}(?:{{[^}}]*}})? ([0-9.e+]+)$", text, re.M))


def _landed_ids(database_url: str, project_id) -> list[uuid.UUID]:
    with psycopg.connect(database_url) as conn:
        return [
            r[0] for r in conn.execute("SELECT event_id FROM events WHERE project_id = %s", (project_id,))
        ]


def _dlq_messages(system: System, n: int, timeout: float = 30) -> list[tuple[bytes, dict[str, bytes]]]:
    k = system.settings.kafka
    consumer = Consumer(
        {
            "bootstrap.servers": k.servers,
            "group.id": f"dlq-check-{k.topic_dlq}",
            "auto.offset.reset": "earliest",
        }
    )
    consumer.subscribe([k.topic_dlq])
    seen: list[tuple[bytes, dict[str, bytes]]] = []
    deadline = time.monotonic() + timeout
    while len(seen) < n and time.monotonic() < deadline:
        msg = consumer.poll(0.5)
        if msg is not None and msg.error() is None:
            seen.append((msg.value(), dict(msg.headers() or [])))
    consumer.close()
    return seen


def test_a_topic_holding_both_formats_lands_every_event_exactly_once(system_factory, db, database_url):
    tenant = make_tenant(db)
    ids = [uuid.uuid4() for _ in range(1_000)]
    singles = [_event(tenant, i, ids[i]) for i in range(0, 100)]  # format 1: events 0-99
    packs = [_pack([_event(tenant, i, ids[i]) for i in range(s, s + 100)]) for s in range(100, 1_000, 100)]
    # The same event ids again, across formats: 0-49 (first sent single) now packed, 150-199 (first sent
    # packed) now single, and 300-309 twice inside one packed message; none may land twice.
    again = [
        _pack([_event(tenant, i, ids[i]) for i in range(50)]),
        *(_event(tenant, i, ids[i]) for i in range(150, 200)),
        _pack([_event(tenant, i, ids[i]) for i in [*range(300, 310), *range(300, 310)]]),
    ]
    messages = [*singles[:50], packs[0], *singles[50:], *packs[1:], *again]
    system = system_factory()
    _produce(system, messages)
    port = _start_worker_with_metrics(system)
    wait_until(lambda: _metric(port, "pulseops_landing_messages_total") >= len(messages), 60, "all consumed")
    wait_until(lambda: landed_count(database_url) >= 1_000, 30, "all landed")
    time.sleep(1)  # anything landing twice would show by now
    landed = _landed_ids(database_url, tenant["project_id"])
    assert sorted(landed) == sorted(ids)
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT count(*) FROM event_ids").fetchone()[0] == 1_000
        assert conn.execute("SELECT sum(events) FROM landed_days").fetchone()[0] == 1_000
        assert conn.execute("SELECT count(*) FROM dead_letters").fetchone()[0] == 0
    # events, not messages: 1,000 new, 50 + 50 + 20 repeated; 100 + 9 + 52 messages
    assert _metric(port, "pulseops_landing_rows_total") == 1_000
    assert _metric(port, "pulseops_landing_duplicates_total") == 120
    assert _metric(port, "pulseops_landing_messages_total") == len(messages) == 161
    assert _metric(port, "pulseops_landing_batch_events_sum") == 1_120


def test_bad_events_inside_packed_messages_are_dead_lettered_alone(system_factory, db, database_url):
    tenant = make_tenant(db)
    bad_uuid = _event(tenant, 1, event_id="not-a-uuid")  # the packed array no longer decodes in one call
    bad_version = _event(tenant, 2, v=7)  # decodes, then refused on its own
    good = [_event(tenant, i) for i in range(10, 40)]
    first = _pack([*good[:10], bad_uuid, *good[10:20]])
    second = _pack([bad_version, *good[20:]])
    corrupt = first[: len(first) // 2]  # the array itself is cut: nothing in it can be trusted
    system = system_factory()
    _produce(system, [first, corrupt, second])
    port = _start_worker_with_metrics(system)
    wait_until(lambda: landed_count(database_url) >= 30, 60, "good events landed")
    with psycopg.connect(database_url) as conn:
        dead = wait_until(
            lambda: (
                conn.execute(
                    "SELECT reason, detail, payload, source_offset FROM dead_letters ORDER BY source_offset, id"
                ).fetchall()
                if conn.execute("SELECT count(*) FROM dead_letters").fetchone()[0] >= 3
                else None
            ),
            30,
            "dead letters recorded",
        )
    assert len(_landed_ids(database_url, tenant["project_id"])) == 30 == landed_count(database_url)
    by_payload = {bytes(p): (r, d) for r, d, p, _ in dead}
    assert set(by_payload) == {bad_uuid, bad_version, corrupt}
    assert (
        by_payload[bad_uuid][0] == "schema_violation"
        and "event 10 of a packed message" in by_payload[bad_uuid][1]
    )
    assert by_payload[bad_version][0] == "unsupported_version" and "event 0 of" in by_payload[bad_version][1]
    assert (
        by_payload[corrupt][0] == "invalid_json"
        and "packed message is not a JSON array" in by_payload[corrupt][1]
    )

    seen = {value: headers for value, headers in _dlq_messages(system, 3)}
    assert set(seen) == {bad_uuid, bad_version, corrupt}
    topic = system.settings.kafka.topic_raw
    assert seen[bad_uuid]["pulseops.dlq.index"] == b"10"
    assert seen[bad_version]["pulseops.dlq.index"] == b"0"
    assert "pulseops.dlq.index" not in seen[corrupt]  # the whole message, not one event of it
    assert seen[bad_uuid]["pulseops.dlq.reason"] == b"schema_violation"
    assert seen[corrupt]["pulseops.dlq.reason"] == b"invalid_json"
    sources = {v: h["pulseops.dlq.source"].decode() for v, h in seen.items()}
    assert all(s.startswith(f"{topic}/") for s in sources.values())
    assert sources[bad_uuid] != sources[corrupt]  # each names its own message's partition/offset

    assert _metric(port, "pulseops_landing_rows_total") == 30
    assert _metric(port, "pulseops_landing_dead_letters_total") == 3
    assert _metric(port, "pulseops_landing_duplicates_total") == 0
    assert _metric(port, "pulseops_landing_messages_total") == 3


def _item(n: int, event_id: uuid.UUID | str, **overrides) -> bytes:
    """A client item as the API forwards it in format 3 (no org, project or received_at of its own)."""
    body = {"event": "page_view", "distinct_id": f"u-{n % 7}", "event_id": str(event_id),
            "properties": {"path": f"/p/{n}"}, **overrides}  # fmt: skip
    return json.dumps(body, separators=(",", ":")).encode()


def _forward(tenant: dict, items: list[bytes]) -> bytes:
    batch = b"[" + b",".join(items) + b"]"
    return encode_forwarded(tenant["org_id"], tenant["project_id"], datetime.now(UTC), batch)


def test_forwarded_messages_land_once_beside_packed_ones_and_a_bad_item_alone(
    system_factory, db, database_url
):
    tenant = make_tenant(db)
    ids = [uuid.uuid4() for _ in range(300)]
    forwarded = [_forward(tenant, [_item(i, ids[i]) for i in range(s, s + 100)]) for s in (0, 100)]
    packed = _pack([_event(tenant, i, ids[i]) for i in range(150, 300)])  # 150-199 again, as format 2
    too_old = _item(0, uuid.uuid4(), timestamp="2000-01-01T00:00:00Z")
    mixed = _forward(tenant, [too_old, _item(0, ids[0])])  # a bad item and a duplicate of event 0
    system = system_factory()
    _produce(system, [*forwarded, packed, mixed])
    port = _start_worker_with_metrics(system)
    wait_until(lambda: _metric(port, "pulseops_landing_messages_total") >= 4, 60, "all consumed")
    wait_until(lambda: landed_count(database_url) >= 300, 30, "all landed")
    time.sleep(1)
    assert sorted(_landed_ids(database_url, tenant["project_id"])) == sorted(ids)
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT count(*) FROM event_ids").fetchone()[0] == 300
        [(reason, detail, payload)] = conn.execute(
            "SELECT reason, detail, payload FROM dead_letters"
        ).fetchall()
    assert reason == "timestamp_too_old" and "event 0 of" in detail
    dead = json.loads(bytes(payload))  # the format-1 value the item stands for
    assert dead["project_id"] == str(tenant["project_id"]) and dead["timestamp"].startswith("2000-01-01")
    assert _metric(port, "pulseops_landing_rows_total") == 300
    assert _metric(port, "pulseops_landing_duplicates_total") == 51
