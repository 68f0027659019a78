"""HTTP ingest against the real stack: validation, auth, tenant binding, clock skew, health and broker outage.

Each test gets its own app (real producer, pool and Redis) on its own topic, so what a test publishes is read
back exactly: a rejected request must leave nothing on the topic, an accepted event must be there once.
"""

from __future__ import annotations

import gzip
import json
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone

import httpx
import psycopg
import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from fastapi.testclient import TestClient

from api.main import create_app
from pulseops.settings import Settings
from tests.fixtures.system import make_settings, wait_until
from tests.utils.tenants import make_tenant, new_event
from warehouse.events import RawEvent, decode_raw_event, is_forwarded, split_message
from warehouse.tenants import ensure_org, ensure_project, revoke_api_key

MIB = 1024 * 1024
END_MARKER = "__test_end_marker__"


def read_topic(
    bootstrap: str, topic: str, timeout: float = 15.0, values: list[bytes] | None = None
) -> list[RawEvent]:
    """Every event on `topic`, read from the beginning, decoded (and each message's value into `values`).

    Tansu's high watermarks are not exact, so the end is found with markers: one is produced to each
    partition, after everything acknowledged before; reading stops once every partition's marker is seen.
    """
    marker = f"{END_MARKER}{uuid.uuid4().hex}".encode()
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all"})
    partitions = list(producer.list_topics(topic, timeout=timeout).topics[topic].partitions)
    for p in partitions:
        producer.produce(topic, marker, partition=p)
    assert producer.flush(timeout) == 0, "end markers not acknowledged"
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"test-{uuid.uuid4().hex}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "session.timeout.ms": 6000,
        }
    )
    try:
        # Offset 0, not OFFSET_BEGINNING: the topics are new per test, and resolving the start costs 0.5 s.
        consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
        out: list[RawEvent] = []
        waiting = set(partitions)
        deadline = time.monotonic() + timeout
        while waiting and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            assert msg.error() is None, msg.error()
            if msg.value() == marker:
                waiting.discard(msg.partition())
            elif not msg.value().startswith(END_MARKER.encode()):
                out.extend(decode_raw_event(v) for v in split_message(msg.value()))
                if values is not None:
                    values.append(msg.value())
        assert not waiting, f"end markers of partitions {waiting} not read in {timeout}s"
        return out
    finally:
        consumer.close()


@dataclass
class Ingest:
    client: TestClient
    settings: Settings
    tenant: dict

    @property
    def key(self) -> str:
        return self.tenant["ingest_key"]

    def post(self, path: str, body: object = None, *, key: str | None = "", **kw) -> httpx.Response:
        headers = dict(kw.pop("headers", {}))
        key = self.key if key == "" else key
        if key is not None:
            headers["X-API-Key"] = key
        if body is not None:
            kw["content"] = json.dumps(body).encode()
            headers.setdefault("Content-Type", "application/json")
        return self.client.post(path, headers=headers, **kw)

    def published(self) -> list[RawEvent]:
        return read_topic(self.settings.kafka.servers, self.settings.kafka.topic_raw)

    def accept_one(self) -> uuid.UUID:
        """Send one valid event (proves the pipe works after a rejection) and return its id."""
        ev = new_event(distinct_id="control")
        resp = self.post("/v1/events", ev)
        assert resp.status_code == 202, resp.text
        return uuid.UUID(ev["event_id"])

    def assert_published_once(self, *event_ids: uuid.UUID) -> list[RawEvent]:
        events = self.published()
        assert Counter(e.event_id for e in events) == Counter(event_ids)
        return events


def make_ingest(db: psycopg.Connection, database_url: str, bootstrap: str, redis_url: str, **ingest):
    settings = make_settings(database_url, bootstrap, redis_url, **ingest)
    tenant = make_tenant(db)
    return settings, tenant


@pytest.fixture(params=[True, False], ids=["asgi-fast-path", "fastapi-routes"])
def ingest(
    request: pytest.FixtureRequest, db: psycopg.Connection, database_url: str, broker: str, redis_url: str
) -> Iterator[Ingest]:
    """Every test runs against both ways of serving ingest (api/ingest/asgi.py and api/routes/ingest.py):
    their answers must be the same."""
    settings, tenant = make_ingest(db, database_url, broker, redis_url, fast_path=request.param)
    with TestClient(create_app(settings)) as client:
        yield Ingest(client, settings, tenant)


def assert_error(
    resp: httpx.Response, status: int, error: str | None = None, field: str | None = None, reason: str = ""
) -> dict:
    """The one error shape: {"error": code, "detail": [{"field", "reason"}]}, naming `field` and `reason`."""
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/json")
    body = resp.json()
    assert set(body) == {"error", "detail"}
    assert isinstance(body["error"], str) and body["error"]
    assert isinstance(body["detail"], list)
    for d in body["detail"]:
        assert set(d) == {"field", "reason"}
        assert isinstance(d["field"], str) and isinstance(d["reason"], str) and d["reason"]
    if error is not None:
        assert body["error"] == error
    if field is not None:
        matching = [d for d in body["detail"] if d["field"] == field]
        assert matching, f"no detail for field {field!r}: {body}"
        assert any(reason.lower() in d["reason"].lower() for d in matching), body
    return body


def iso(t: datetime) -> str:
    return t.isoformat()


def now() -> datetime:
    return datetime.now(UTC)


# -- JSON and schema --------------------------------------------------------------------------------------


def test_malformed_json_is_422_and_not_published(ingest: Ingest) -> None:
    resp = ingest.post("/v1/events", content=b'{"event": page_view, "distinct_id": "u"}')
    assert_error(resp, 422, "validation_error", "body", "malformed")
    resp = ingest.post("/v1/events", content=b'{"event": "page_view", "distinct_id": ')
    assert_error(resp, 422, "validation_error", "body", "truncated")
    resp = ingest.post("/v1/batch", content=b'{"batch": [{"event": "x",')
    assert_error(resp, 422, "validation_error", "body")
    ingest.assert_published_once(ingest.accept_one())


@pytest.mark.parametrize(
    ("override", "field", "reason"),
    [
        ({"event": 5}, "event", "Expected `str`, got `int`"),
        ({"properties": [1, 2]}, "properties", "Expected `object`, got `array`"),
        ({"distinct_id": {"id": 1}}, "distinct_id", "Expected `str`"),
        ({"event_id": "not-a-uuid"}, "event_id", "uuid"),
    ],
    ids=["event-int", "properties-list", "distinct-id-object", "event-id-not-uuid"],
)
def test_wrong_type_is_422_naming_the_field(ingest: Ingest, override: dict, field: str, reason: str) -> None:
    resp = ingest.post("/v1/events", new_event(**override))
    assert_error(resp, 422, "validation_error", field, reason)
    ingest.assert_published_once(ingest.accept_one())


@pytest.mark.parametrize("missing", ["event", "distinct_id"])
def test_missing_required_field_is_422_naming_it(ingest: Ingest, missing: str) -> None:
    ev = new_event()
    del ev[missing]
    assert_error(ingest.post("/v1/events", ev), 422, "validation_error", missing, "required")
    ingest.assert_published_once(ingest.accept_one())


def test_event_name_over_200_chars_is_422_and_200_is_accepted(ingest: Ingest) -> None:
    too_long = new_event(event="e" * 201)
    assert_error(ingest.post("/v1/events", too_long), 422, "validation_error", "event", "length <= 200")
    longest = new_event(event="e" * 200)
    assert ingest.post("/v1/events", longest).status_code == 202
    [published] = ingest.assert_published_once(uuid.UUID(longest["event_id"]))
    assert published.event == "e" * 200


# -- body size and encoding -------------------------------------------------------------------------------


def test_body_over_1_mib_is_413(ingest: Ingest) -> None:
    ev = new_event(properties={"pad": "x" * MIB})
    assert_error(ingest.post("/v1/events", ev), 413, "payload_too_large", "body")
    batch = {"batch": [new_event(properties={"pad": "y" * 20_000}) for _ in range(60)]}
    assert_error(ingest.post("/v1/batch", batch), 413, "payload_too_large", "body")
    ingest.assert_published_once(ingest.accept_one())


def test_gzip_body_is_accepted(ingest: Ingest) -> None:
    events = [new_event(distinct_id=f"u-{i}", properties={"i": i}) for i in range(3)]
    resp = ingest.post(
        "/v1/batch",
        content=gzip.compress(json.dumps({"batch": events}).encode()),
        headers={"Content-Encoding": "gzip", "Content-Type": "application/json"},
    )
    assert resp.status_code == 202, resp.text
    assert resp.json()["accepted"] == 3
    published = ingest.assert_published_once(*(uuid.UUID(e["event_id"]) for e in events))
    assert {e.distinct_id: json.loads(bytes(e.properties)) for e in published} == {
        f"u-{i}": {"i": i} for i in range(3)
    }


def test_gzip_bomb_is_413_quickly(ingest: Ingest) -> None:
    # 50 MiB of zeros inside a valid event body compresses to ~50 KiB: far under the 1 MiB wire limit.
    inner = b'{"event": "x", "distinct_id": "u", "properties": {"pad": "' + b"0" * (50 * MIB) + b'"}}'
    bomb = gzip.compress(inner, compresslevel=9)
    assert len(bomb) < MIB
    started = time.monotonic()
    resp = ingest.post("/v1/events", content=bomb, headers={"Content-Encoding": "gzip"})
    elapsed = time.monotonic() - started
    assert_error(resp, 413, "payload_too_large", "body", "decompressed")
    assert elapsed < 2.0, f"took {elapsed:.2f}s: the bomb was inflated"
    ingest.assert_published_once(ingest.accept_one())


@pytest.mark.parametrize(
    "payload",
    [b"this is not gzip at all", gzip.compress(json.dumps(new_event()).encode())[:-12]],
    ids=["garbage", "truncated"],
)
def test_invalid_gzip_is_400(ingest: Ingest, payload: bytes) -> None:
    resp = ingest.post("/v1/events", content=payload, headers={"Content-Encoding": "gzip"})
    assert_error(resp, 400, "invalid_gzip", "body")
    ingest.assert_published_once(ingest.accept_one())


def test_content_encoding_other_than_gzip_is_415(ingest: Ingest) -> None:
    resp = ingest.post("/v1/events", new_event(), headers={"Content-Encoding": "br"})
    assert_error(resp, 415, "unsupported_encoding", "Content-Encoding")
    ingest.assert_published_once(ingest.accept_one())


def test_multi_member_gzip_body_is_inflated_whole(ingest: Ingest) -> None:
    ev = new_event()
    raw = json.dumps(ev).encode()
    body = gzip.compress(raw[:20]) + gzip.compress(raw[20:])
    assert gzip.decompress(body) == raw
    resp = ingest.post("/v1/events", content=body, headers={"Content-Encoding": "gzip"})
    assert resp.status_code == 202, resp.text
    ingest.assert_published_once(uuid.UUID(ev["event_id"]))


# -- keys -------------------------------------------------------------------------------------------------


def test_unknown_key_is_401(ingest: Ingest) -> None:
    resp = ingest.post("/v1/events", new_event(), key="po_ingest_" + "x" * 32)
    assert_error(resp, 401, "unauthorized", "X-API-Key", "unknown")
    resp = ingest.post("/v1/batch", {"batch": [new_event()]}, key="po_ingest_" + "y" * 32)
    assert_error(resp, 401, "unauthorized", "X-API-Key")
    ingest.assert_published_once(ingest.accept_one())


def test_missing_key_is_401(ingest: Ingest) -> None:
    assert_error(
        ingest.post("/v1/events", new_event(), key=None), 401, "unauthorized", "X-API-Key", "missing"
    )
    assert_error(
        ingest.post("/v1/batch", {"batch": [new_event()]}, key=None), 401, "unauthorized", "X-API-Key"
    )
    ingest.assert_published_once(ingest.accept_one())


def test_revoked_key_is_401_once_the_cache_expires(ingest: Ingest, db: psycopg.Connection) -> None:
    first = ingest.accept_one()  # also puts the key in the API's cache
    assert revoke_api_key(db, ingest.tenant["ingest_key_id"])
    time.sleep(ingest.settings.ingest.key_cache_ttl_s + 0.2)
    ev = new_event()
    assert_error(ingest.post("/v1/events", ev), 401, "unauthorized", "X-API-Key", "revoked")
    assert_error(ingest.post("/v1/batch", {"batch": [new_event()]}), 401, "unauthorized", "X-API-Key")
    ingest.assert_published_once(first)


def test_read_key_cannot_ingest(ingest: Ingest) -> None:
    read_key = ingest.tenant["read_key"]
    assert_error(ingest.post("/v1/events", new_event(), key=read_key), 403, "forbidden", "X-API-Key", "read")
    assert_error(ingest.post("/v1/batch", {"batch": [new_event()]}, key=read_key), 403, "forbidden")
    ingest.assert_published_once(ingest.accept_one())


# -- tenant binding ---------------------------------------------------------------------------------------


@pytest.fixture
def other_project(db: psycopg.Connection) -> tuple[uuid.UUID, uuid.UUID]:
    org = ensure_org(db, "other-org")
    return org, ensure_project(db, org, "other")


@pytest.mark.parametrize("field", ["project_id", "org_id"])
def test_event_naming_another_tenant_is_422(
    ingest: Ingest, other_project: tuple[uuid.UUID, uuid.UUID], field: str
) -> None:
    org, project = other_project
    ev = new_event(**{field: str(project if field == "project_id" else org)})
    assert_error(ingest.post("/v1/events", ev), 422, "validation_error", field, "unknown field")
    # Also at the batch envelope level.
    batch = {"batch": [new_event()], field: str(project if field == "project_id" else org)}
    assert_error(ingest.post("/v1/batch", batch), 422, "validation_error", field)
    ingest.assert_published_once(ingest.accept_one())


def test_batch_event_naming_another_tenant_is_rejected_and_the_rest_land_in_the_keys_project(
    ingest: Ingest, other_project: tuple[uuid.UUID, uuid.UUID]
) -> None:
    org, project = other_project
    good = [new_event(distinct_id="a"), new_event(distinct_id="b")]
    batch = [good[0], new_event(project_id=str(project)), new_event(org_id=str(org)), good[1]]
    resp = ingest.post("/v1/batch", {"batch": batch})
    assert resp.status_code == 202, resp.text
    body = resp.json()
    assert body["accepted"] == 2
    assert body["event_ids"] == [good[0]["event_id"], good[1]["event_id"]]
    assert [(r["index"], r["field"]) for r in body["rejected"]] == [(1, "project_id"), (2, "org_id")]
    published = ingest.assert_published_once(*(uuid.UUID(e["event_id"]) for e in good))
    assert {e.project_id for e in published} == {ingest.tenant["project_id"]}
    assert {e.org_id for e in published} == {ingest.tenant["org_id"]}


# -- properties, NUL, timestamps ----------------------------------------------------------------------------


def test_properties_over_32_kib_are_422(ingest: Ingest) -> None:
    ev = new_event(properties={"pad": "x" * (32 * 1024)})
    assert_error(ingest.post("/v1/events", ev), 422, "validation_error", "properties", "larger than")
    just_under = new_event(properties={"pad": "x" * (32 * 1024 - 20)})
    assert ingest.post("/v1/events", just_under).status_code == 202
    ingest.assert_published_once(uuid.UUID(just_under["event_id"]))


def nested(levels: int) -> dict:
    value: dict = {"leaf": 1}
    for _ in range(levels - 1):
        value = {"n": value}
    return value


def test_properties_nested_20_levels_are_422_and_8_levels_pass(ingest: Ingest) -> None:
    deep = new_event(properties=nested(20))
    assert_error(ingest.post("/v1/events", deep), 422, "validation_error", "properties", "nested deeper")
    batch = {"batch": [new_event(properties=nested(20)), new_event(properties=nested(9))]}
    assert_error(ingest.post("/v1/batch", batch), 422, "validation_error", "batch[1].properties", "nested")
    ok = new_event(properties=nested(8))
    assert ingest.post("/v1/events", ok).status_code == 202
    [published] = ingest.assert_published_once(uuid.UUID(ok["event_id"]))
    assert json.loads(bytes(published.properties)) == nested(8)


@pytest.mark.parametrize("path", ["/v1/events", "/v1/batch"])
def test_pathologically_nested_json_is_422_not_500(
    db: psycopg.Connection, database_url: str, broker: str, redis_url: str, path: str
) -> None:
    settings, tenant = make_ingest(db, database_url, broker, redis_url)
    deep = b"[" * 3000 + b"]" * 3000  # 6 KB
    body = (
        b'{"event": "x", "distinct_id": "u", "properties": {"a": ' + deep + b"}}"
        if path == "/v1/events"
        else b'{"batch": [' + deep + b"]}"
    )
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        resp = client.post(path, content=body, headers={"X-API-Key": tenant["ingest_key"]})
    assert_error(resp, 422, "validation_error")


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ({"event": "page\x00view"}, "event"),
        ({"distinct_id": "user\x00-1"}, "distinct_id"),
        ({"properties": {"path": "/a\x00b"}}, "properties"),
        ({"properties": {"k\x00": "v"}}, "properties"),
    ],
    ids=["event", "distinct_id", "property-value", "property-key"],
)
def test_nul_character_is_422(ingest: Ingest, override: dict, field: str) -> None:
    assert_error(ingest.post("/v1/events", new_event(**override)), 422, "validation_error", field, "NUL")
    ingest.assert_published_once(ingest.accept_one())


def test_literal_backslash_u0000_text_in_properties_is_accepted(ingest: Ingest) -> None:
    ev = new_event(properties={"snippet": "printf('\\u0000')"})
    resp = ingest.post("/v1/events", ev)
    assert resp.status_code == 202, resp.text
    [published] = ingest.assert_published_once(uuid.UUID(ev["event_id"]))
    assert json.loads(bytes(published.properties)) == {"snippet": "printf('\\u0000')"}


@pytest.mark.parametrize(
    ("timestamp", "reason"),
    [
        ("2026-11-25T10:00:00", "UTC offset"),
        ("1970-01-01T00:00:00Z", "older than raw retention"),
        ("2999-01-01T00:00:00Z", "future"),
        ("2026-02-30T00:00:00Z", "Invalid RFC3339"),
        ("not a date", "Invalid RFC3339"),
        (1764064800, "Expected `datetime"),
    ],
    ids=["naive", "1970", "2999", "feb-30", "not-a-date", "epoch-number"],
)
def test_impossible_timestamp_is_422(ingest: Ingest, timestamp: object, reason: str) -> None:
    resp = ingest.post("/v1/events", new_event(timestamp=timestamp))
    assert_error(resp, 422, "validation_error", "timestamp", reason)
    ingest.assert_published_once(ingest.accept_one())


@pytest.mark.parametrize(
    "override",
    [
        {"timestamp": "9999-12-31T23:00:00-05:00"},
        {"timestamp": "0001-01-01T00:30:00+01:00"},
        {"timestamp": "2026-11-25T10:00:00Z", "sent_at": "9999-12-31T00:00:00Z"},
    ],
    ids=["utc-after-9999", "utc-before-year-1", "sent-at-far-future"],
)
def test_out_of_range_times_are_422_not_500(
    db: psycopg.Connection, database_url: str, broker: str, redis_url: str, override: dict
) -> None:
    settings, tenant = make_ingest(db, database_url, broker, redis_url)
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        resp = client.post(
            "/v1/events", json=new_event(**override), headers={"X-API-Key": tenant["ingest_key"]}
        )
    assert_error(resp, 422, "validation_error")


# -- batches ----------------------------------------------------------------------------------------------


def test_batch_of_1001_events_is_413_and_1000_is_accepted(ingest: Ingest) -> None:
    too_many = {"batch": [new_event() for _ in range(1001)]}
    assert_error(ingest.post("/v1/batch", too_many), 413, "batch_too_large", "batch", "1000")
    assert ingest.published() == []
    full = [new_event(distinct_id=f"u-{i}") for i in range(1000)]
    resp = ingest.post("/v1/batch", {"batch": full})
    assert resp.status_code == 202, resp.text
    assert resp.json()["accepted"] == 1000
    ingest.assert_published_once(*(uuid.UUID(e["event_id"]) for e in full))


def test_empty_batch_is_422(ingest: Ingest) -> None:
    assert_error(ingest.post("/v1/batch", {"batch": []}), 422, "validation_error", "batch", "at least one")
    assert_error(ingest.post("/v1/batch", {}), 422, "validation_error", "batch", "required")
    ingest.assert_published_once(ingest.accept_one())


def test_batch_accepts_valid_events_and_lists_invalid_ones_by_index(ingest: Ingest) -> None:
    valid = [new_event(distinct_id="a"), new_event(distinct_id="b"), new_event(distinct_id="c")]
    batch = [
        valid[0],
        new_event(timestamp="2026-11-25T10:00:00"),  # 1: naive
        valid[1],
        {"distinct_id": "no-name"},  # 3: missing event
        new_event(event="x" * 201),  # 4: too long
        valid[2],
        7,  # 6: not an object
    ]
    resp = ingest.post("/v1/batch", {"batch": batch})
    assert resp.status_code == 202, resp.text
    body = resp.json()
    assert set(body) == {"accepted", "event_ids", "rejected"}
    assert body["accepted"] == 3
    assert body["event_ids"] == [e["event_id"] for e in valid]
    assert [(r["index"], r["field"]) for r in body["rejected"]] == [
        (1, "timestamp"),
        (3, "event"),
        (4, "event"),
        (6, "body"),
    ]
    for r in body["rejected"]:
        assert set(r) == {"index", "field", "reason"} and r["reason"]
    ingest.assert_published_once(*(uuid.UUID(e["event_id"]) for e in valid))


def test_batch_with_only_invalid_events_is_422_listing_each(ingest: Ingest) -> None:
    batch = [new_event(event=""), {"event": "x"}, new_event(timestamp="1970-01-01T00:00:00Z")]
    body = assert_error(ingest.post("/v1/batch", {"batch": batch}), 422, "validation_error")
    assert [d["field"] for d in body["detail"]] == [
        "batch[0].event",
        "batch[1].distinct_id",
        "batch[2].timestamp",
    ]
    ingest.assert_published_once(ingest.accept_one())


def test_batch_rejects_events_with_nul_by_index_and_accepts_the_rest(ingest: Ingest) -> None:
    """A valid-schema batch skips the per-event NUL searches only when the body has no \\u0000 escape: one
    that has one still names each bad item (and literal backslash-u0000 text is not a NUL)."""
    valid = [new_event(distinct_id="a"), new_event(properties={"snippet": "printf('\\u0000')"})]
    batch = [
        valid[0],
        new_event(event="page\x00view"),
        new_event(distinct_id="user\x00-1"),
        new_event(properties={"path": "/a\x00b"}),
        valid[1],
    ]
    resp = ingest.post("/v1/batch", {"batch": batch})
    assert resp.status_code == 202, resp.text
    body = resp.json()
    assert body["event_ids"] == [e["event_id"] for e in valid]
    assert [(r["index"], r["field"]) for r in body["rejected"]] == [
        (1, "event"),
        (2, "distinct_id"),
        (3, "properties"),
    ]
    ingest.assert_published_once(*(uuid.UUID(e["event_id"]) for e in valid))


def test_a_valid_batch_with_client_ids_is_forwarded_as_sent_and_others_are_packed(ingest: Ingest) -> None:
    """Format 3 (warehouse/events.py) carries the client's items unchanged when nothing needed normalising;
    a server-assigned id or a rewritten timestamp needs format 2. Both stand for the same RawEvents."""
    an_hour_ago = (datetime.now(UTC) - timedelta(hours=1)).astimezone(timezone(timedelta(hours=1)))
    sent = [new_event(distinct_id="a"), new_event(timestamp=an_hour_ago.isoformat(), properties={})]
    assert ingest.post("/v1/batch", {"batch": sent}).status_code == 202
    assigned = new_event(distinct_id="b")
    del assigned["event_id"]
    resp = ingest.post("/v1/batch", {"batch": [assigned]})
    assert resp.status_code == 202, resp.text
    values: list[bytes] = []
    events = read_topic(ingest.settings.kafka.servers, ingest.settings.kafka.topic_raw, values=values)
    assert sorted(v[:7] for v in values) == [b'[{"org_', b'{"f":3,']
    forwarded = next(v for v in values if is_forwarded(v))
    assert b'"events":' + json.dumps(sent).encode() in forwarded  # the client's bytes, as sent
    by_id = {e.event_id: e for e in events}
    first, second = (by_id[uuid.UUID(ev["event_id"])] for ev in sent)
    for got in (first, second):
        assert (got.org_id, got.project_id) == (ingest.tenant["org_id"], ingest.tenant["project_id"])
    assert first.timestamp == first.received_at and second.timestamp == an_hour_ago
    assert by_id[uuid.UUID(resp.json()["event_ids"][0])].distinct_id == "b"


# -- clock skew and event ids ------------------------------------------------------------------------------


def test_client_clock_one_hour_behind_is_corrected(ingest: Ingest) -> None:
    client_now = now() - timedelta(hours=1)  # the client's clock is an hour slow
    happened = client_now - timedelta(minutes=2)
    single = new_event(timestamp=iso(happened), sent_at=iso(client_now))
    assert ingest.post("/v1/events", single).status_code == 202
    in_batch = new_event(distinct_id="b", timestamp=iso(happened))
    resp = ingest.post("/v1/batch", {"batch": [in_batch], "sent_at": iso(client_now)})
    assert resp.status_code == 202, resp.text
    published = ingest.assert_published_once(uuid.UUID(single["event_id"]), uuid.UUID(in_batch["event_id"]))
    for ev in published:
        shift = ev.timestamp - happened
        assert abs(shift - timedelta(hours=1)) < timedelta(seconds=5), shift
        assert ev.timestamp.utcoffset() == timedelta(0)


def test_skew_under_tolerance_is_not_applied(ingest: Ingest) -> None:
    happened = (now() - timedelta(minutes=3)).replace(microsecond=123456)
    single = new_event(timestamp=iso(happened), sent_at=iso(now() - timedelta(seconds=3)))
    assert ingest.post("/v1/events", single).status_code == 202
    in_batch = new_event(distinct_id="b", timestamp=iso(happened))
    sent_ahead = iso(now() + timedelta(seconds=3))
    assert ingest.post("/v1/batch", {"batch": [in_batch], "sent_at": sent_ahead}).status_code == 202
    published = ingest.assert_published_once(uuid.UUID(single["event_id"]), uuid.UUID(in_batch["event_id"]))
    assert [e.timestamp for e in published] == [happened, happened]


def test_resent_event_keeps_its_event_id(ingest: Ingest) -> None:
    ev = new_event(timestamp=iso(now() - timedelta(minutes=1)))
    first = ingest.post("/v1/events", ev)
    second = ingest.post("/v1/events", ev)
    assert first.status_code == second.status_code == 202
    assert first.json()["event_ids"] == second.json()["event_ids"] == [ev["event_id"]]
    via_batch = ingest.post("/v1/batch", {"batch": [ev]})
    assert via_batch.json()["event_ids"] == [ev["event_id"]]
    # The broker holds all three sends; landing dedups on (project, event_id).
    assert [e.event_id for e in ingest.published()] == [uuid.UUID(ev["event_id"])] * 3


def test_missing_event_id_gets_a_server_uuid(ingest: Ingest) -> None:
    ev = new_event()
    del ev["event_id"]
    resp = ingest.post("/v1/events", ev)
    assert resp.status_code == 202, resp.text
    [assigned] = resp.json()["event_ids"]
    resp = ingest.post("/v1/batch", {"batch": [ev, ev]})
    assert resp.status_code == 202, resp.text
    batch_ids = resp.json()["event_ids"]
    ids = [uuid.UUID(assigned), *(uuid.UUID(i) for i in batch_ids)]
    assert all(i.variant == uuid.RFC_4122 and i.version in (4, 7) for i in ids)  # random or time-ordered
    assert len(set(ids)) == 3
    ingest.assert_published_once(*ids)


# -- OpenAPI, health, metrics -----------------------------------------------------------------------------


def resolve(doc: dict, schema: dict) -> dict:
    while "$ref" in schema:
        name = schema["$ref"].removeprefix("#/components/schemas/")
        schema = doc["components"]["schemas"][name]
    return schema


def test_openapi_documents_ingest_bodies_and_responses(ingest: Ingest) -> None:
    resp = ingest.client.get("/openapi.json")
    assert resp.status_code == 200
    doc = resp.json()
    for path, required in (("/v1/events", {"event", "distinct_id"}), ("/v1/batch", {"batch"})):
        op = doc["paths"][path]["post"]
        body = op["requestBody"]
        assert body["required"] is True
        schema = resolve(doc, body["content"]["application/json"]["schema"])
        assert schema["type"] == "object"
        assert set(schema["required"]) == required
        assert {"202", "401", "413", "422", "429", "503"} <= set(op["responses"])
        for status in ("401", "413", "422", "429", "503"):
            err = resolve(doc, op["responses"][status]["content"]["application/json"]["schema"])
            assert set(err["properties"]) == {"error", "detail"}
        ok = resolve(doc, op["responses"]["202"]["content"]["application/json"]["schema"])
        assert {"accepted", "event_ids", "rejected"} <= set(ok["properties"])
        assert any(p["name"] == "X-API-Key" and p["in"] == "header" for p in op["parameters"])
    event = resolve(
        doc, doc["paths"]["/v1/events"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    )
    assert event["properties"]["event"]["maxLength"] == 200
    assert event.get("additionalProperties") is False  # a body cannot name another tenant


def test_healthz_is_200(ingest: Ingest) -> None:
    resp = ingest.client.get("/healthz")
    assert resp.status_code == 200 and resp.json() == {"status": "ok"}


def test_readyz_reports_broker_and_database_ok(ingest: Ingest) -> None:
    resp = ingest.client.get("/readyz")
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["status"] == "ok"
    assert body["checks"]["broker"] == "ok"
    assert body["checks"]["database"] == "ok"
    assert body["checks"]["rate_limiter"] == "redis"


def metric(text: str, name: str, labels: str = "") -> float:
    prefix = f"{name}{{{labels}}} " if labels else f"{name} "
    for line in text.splitlines():
        if line.startswith(prefix):
            return float(line.split()[-1])
    return 0.0


def test_metrics_count_accepted_and_rejected_events(ingest: Ingest) -> None:
    before = ingest.client.get("/metrics")
    assert before.status_code == 200
    assert "pulseops_ingest_events_accepted_total" in before.text
    assert "pulseops_ingest_events_rejected_total" in before.text
    batch = [new_event(), new_event(), new_event(timestamp="2026-11-25T10:00:00"), new_event(event=5)]
    assert ingest.post("/v1/batch", {"batch": batch}).status_code == 202
    after = ingest.client.get("/metrics").text
    accepted = "pulseops_ingest_events_accepted_total"
    rejected = "pulseops_ingest_events_rejected_total"
    assert metric(after, accepted) - metric(before.text, accepted) == 2
    for reason in ("timestamp", "event"):
        label = f'reason="{reason}"'
        assert metric(after, rejected, label) - metric(before.text, rejected, label) == 1


# -- broker outage ----------------------------------------------------------------------------------------


@pytest.mark.slow
def test_broker_down_answers_503_with_retry_after_then_recovers(
    db: psycopg.Connection, database_url: str, redis_url: str, tansu_factory
) -> None:
    tansu = tansu_factory().start()
    settings, tenant = make_ingest(db, database_url, tansu.bootstrap, redis_url)
    # Answer at once (no outage wait, api/ingest/publisher.py): tests/api/test_broker_outage_wait.py covers it.
    settings = settings.model_copy(update={"kafka": settings.kafka.model_copy(update={"outage_wait_ms": 0})})
    headers = {"X-API-Key": tenant["ingest_key"]}
    with TestClient(create_app(settings)) as client:
        before = new_event()
        assert client.post("/v1/events", json=before, headers=headers).status_code == 202
        tansu.stop()

        outage_ids, statuses = [], []
        deadline = time.monotonic() + 8
        while time.monotonic() < deadline:
            ev = new_event()
            outage_ids.append(uuid.UUID(ev["event_id"]))
            resp = client.post("/v1/events", json=ev, headers=headers)
            statuses.append(resp.status_code)
            assert_error(resp, 503, "broker_unavailable", "body")
            assert int(resp.headers["Retry-After"]) >= 1
            time.sleep(0.3)
        assert len(statuses) >= 3 and set(statuses) == {503}
        ready = client.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["checks"]["broker"] == "down"

        tansu_factory(port=tansu.port).start()
        recovered = None
        deadline = time.monotonic() + 30
        while recovered is None and time.monotonic() < deadline:
            ev = new_event(distinct_id="after")
            resp = client.post("/v1/events", json=ev, headers=headers)
            if resp.status_code == 202:
                recovered = uuid.UUID(ev["event_id"])
            else:
                assert_error(resp, 503, "broker_unavailable")
                time.sleep(0.5)
        assert recovered is not None, "ingest did not recover within 30 s of the broker's return"
        assert client.get("/readyz").status_code == 200
        # The new broker started empty. It gets the recovered event, and the 202'd event from before the
        # crash, which no worker had landed: the spool publishes it again. Nothing answered 503 is there.
        expected = sorted([uuid.UUID(before["event_id"]), recovered])
        wait_until(
            lambda: (
                sorted(e.event_id for e in read_topic(tansu.bootstrap, settings.kafka.topic_raw)) == expected
            ),
            20,
            "the spool re-published the event the broker lost",
            interval=1.0,
        )
    assert sorted(e.event_id for e in read_topic(tansu.bootstrap, settings.kafka.topic_raw)) == expected


def test_broker_pressure_answers_503_with_retry_after_and_publishes_nothing(ingest: Ingest) -> None:
    """While the embedded broker's keeper asks for a pause (pulseops/pressure.py: over its memory limit and
    landing behind), ingest answers 503 broker_full with Retry-After and nothing reaches the broker; when the
    keeper releases it (or its lease runs out), ingest accepts again."""
    from pulseops.pressure import pressure_path, raise_pressure, release_pressure

    path = pressure_path(ingest.settings.state_dir)
    raise_pressure(path, 30)
    try:
        time.sleep(0.3)  # each process looks at the file at most every 0.25 s
        refused = [new_event(), new_event()]
        resp = ingest.post("/v1/events", refused[0])
        assert_error(resp, 503, "broker_full", "body")
        assert int(resp.headers["Retry-After"]) >= 1
        resp = ingest.post("/v1/batch", {"batch": [refused[1]]})
        assert_error(resp, 503, "broker_full", "body")
    finally:
        release_pressure(path)
    time.sleep(0.3)
    accepted = ingest.accept_one()
    ingest.assert_published_once(accepted)  # the refused events were never published


def test_batch_rejects_a_number_postgresql_cannot_store_by_index(ingest: Ingest) -> None:
    """{"n":1e200000} is valid JSON that the batch fast paths kept as sent; PostgreSQL's jsonb refuses it, so
    landing failed the whole chunk on every retry (tests/streams/test_numeric_range.py). Refused by index."""
    valid = [new_event(distinct_id="a"), new_event(distinct_id="b")]
    bad = json.dumps(new_event(properties={"n": 0})).replace('"n": 0', '"n": 1e200000')
    body = '{"batch":[%s,%s,%s]}' % (json.dumps(valid[0]), bad, json.dumps(valid[1]))
    resp = ingest.post("/v1/batch", content=body.encode(), headers={"Content-Type": "application/json"})
    assert resp.status_code == 202, resp.text
    assert resp.json()["event_ids"] == [e["event_id"] for e in valid]
    assert [(r["index"], r["field"]) for r in resp.json()["rejected"]] == [(1, "properties")]
    ingest.assert_published_once(*(uuid.UUID(e["event_id"]) for e in valid))
    only_bad = ingest.post(
        "/v1/batch", content=b'{"batch":[%s]}' % bad.encode(), headers={"Content-Type": "application/json"}
    )
    assert_error(only_bad, 422, "validation_error", "batch[0].properties")


def test_batch_rejects_a_double_overflow_in_bracket_heavy_properties_by_index(ingest: Ingest) -> None:
    """Past 8 brackets the fast path decodes the properties to measure their depth; msgspec refuses 1e400
    there (as IngestEvent's dict does on the per-item path) and that error was a 500 for the whole batch."""
    valid = new_event(distinct_id="a")
    bad = json.dumps(new_event(properties={k: [1] for k in "abcdefgh"} | {"n": 0}))
    bad = bad.replace('"n": 0', '"n": 1e400')
    body = '{"batch":[%s,%s]}' % (json.dumps(valid), bad)
    resp = ingest.post("/v1/batch", content=body.encode(), headers={"Content-Type": "application/json"})
    assert resp.status_code == 202, resp.text
    assert [(r["index"], r["field"]) for r in resp.json()["rejected"]] == [(1, "properties")]
    ingest.assert_published_once(uuid.UUID(valid["event_id"]))
