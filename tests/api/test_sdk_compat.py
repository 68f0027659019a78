"""The PostHog capture and Segment HTTP Tracking API paths (api/ingest/compat) against the real stack.

Every test runs on both ways of serving ingest (the ASGI fast path and the FastAPI routes) and reads back
what was published on its own topic: an accepted event must be there exactly once with the mapped fields,
a refused request must leave nothing.
"""

from __future__ import annotations

import base64
import gzip
import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from urllib.parse import quote

import httpx
import psycopg
import pytest
from fastapi.testclient import TestClient

from api.ingest.compat.common import ID_NAMESPACE
from api.main import create_app
from tests.api.test_ingest_validation import Ingest, make_ingest, metric
from tests.utils.tenants import make_tenant, new_event
from warehouse.tenants import create_api_key


@pytest.fixture(params=[True, False], ids=["asgi-fast-path", "fastapi-routes"])
def ingest(
    request: pytest.FixtureRequest, db: psycopg.Connection, database_url: str, broker: str, redis_url: str
) -> Iterator[Ingest]:
    """Both ways of serving ingest (api/ingest/asgi.py and api/routes/compat.py) must answer the same."""
    settings, tenant = make_ingest(db, database_url, broker, redis_url, fast_path=request.param)
    with TestClient(create_app(settings)) as client:
        yield Ingest(client, settings, tenant)


def ph_event(**over) -> dict:
    return {
        "event": "clicked",
        "distinct_id": "u-1",
        "uuid": str(uuid.uuid4()),
        "properties": {"plan": "pro"},
        **over,
    }


def post(ingest: Ingest, path: str, body: object = None, *, raw: bytes | None = None, **kw) -> httpx.Response:
    content = raw if raw is not None else json.dumps(body).encode()
    return ingest.client.post(path, content=content, **kw)


def basic(key: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{key}:".encode()).decode()}


def error_of(resp: httpx.Response, status: int, field: str, reason: str = "") -> dict:
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert body["error"] and body["code"] == body["error"] and body["message"], body
    fields = {d["field"]: d["reason"] for d in body["detail"]}
    assert field in fields, body
    assert reason.lower() in fields[field].lower(), body
    return body


def props(ev) -> dict:
    return json.loads(bytes(ev.properties))


# -- PostHog ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/i/v0/e/", "/e/", "/capture/", "/capture", "/track/"])
def test_posthog_single_event_lands_once_with_its_uuid(ingest: Ingest, path: str) -> None:
    ev = ph_event(api_key=ingest.key, **{"$set": {"email": "a@b.c"}})
    ev["properties"]["token"] = ingest.key
    resp = post(ingest, path, ev)
    assert resp.status_code == 200, resp.text
    assert resp.json()["status"] == 1
    (got,) = ingest.assert_published_once(uuid.UUID(ev["uuid"]))
    assert (got.event, got.distinct_id) == ("clicked", "u-1")
    assert props(got) == {"plan": "pro", "$set": {"email": "a@b.c"}}  # the key is not stored


def test_posthog_python_batch_gzip_and_bearer(ingest: Ingest) -> None:
    events = [ph_event(distinct_id=f"u-{i}") for i in range(3)]
    body = gzip.compress(json.dumps({"batch": events, "sent_at": datetime.now(UTC).isoformat()}).encode())
    headers = {"Content-Encoding": "gzip", "Authorization": f"Bearer {ingest.key}"}
    resp = post(ingest, "/batch/", raw=body, headers=headers)
    assert resp.status_code == 200, resp.text
    ingest.assert_published_once(*(uuid.UUID(e["uuid"]) for e in events))


def test_posthog_js_gzip_js_body_and_query_clock_skew(ingest: Ingest) -> None:
    """posthog-js: gzip body as text/plain, distinct_id and token in properties, `_` = client clock in ms."""
    skew = timedelta(hours=1)  # the client's clock is an hour behind
    client_now = datetime.now(UTC) - skew
    ev = {"uuid": str(uuid.uuid4()), "event": "$pageview", "timestamp": client_now.isoformat(),
          "properties": {"distinct_id": "anon-1", "token": ingest.key, "$current_url": "http://x/"}}  # fmt: skip
    ms = int(client_now.timestamp() * 1000)
    resp = post(
        ingest,
        f"/e/?compression=gzip-js&ip=0&_={ms}&ver=1.0",
        raw=gzip.compress(json.dumps([ev]).encode()),
        headers={"Content-Type": "text/plain"},
    )
    assert resp.status_code == 200, resp.text
    (got,) = ingest.assert_published_once(uuid.UUID(ev["uuid"]))
    assert got.distinct_id == "anon-1"
    assert abs(got.timestamp - datetime.now(UTC)) < timedelta(minutes=1)
    assert "token" not in props(got)


def test_posthog_js_base64_form_body(ingest: Ingest) -> None:
    ev = ph_event(properties={"token": ingest.key, "distinct_id": "anon-2"})
    del ev["distinct_id"]
    data = base64.b64encode(json.dumps(ev).encode()).decode()
    resp = post(
        ingest,
        "/e/?compression=base64",
        raw=f"data={quote(data)}".encode(),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert resp.status_code == 200, resp.text
    (got,) = ingest.assert_published_once(uuid.UUID(ev["uuid"]))
    assert got.distinct_id == "anon-2"


def test_posthog_identify_alias_and_group_pass_through(ingest: Ingest) -> None:
    identify = {"event": "$identify", "uuid": str(uuid.uuid4()), "$set": {"name": "Ann"},
                "properties": {"distinct_id": "user-1", "$anon_distinct_id": "anon-1", "token": ingest.key}}  # fmt: skip
    alias = {"event": "$create_alias", "distinct_id": "anon-9", "uuid": str(uuid.uuid4()),
             "properties": {"distinct_id": "anon-9", "alias": "user-1"}}  # fmt: skip
    resp = post(ingest, "/batch/", {"api_key": ingest.key, "batch": [identify, alias]})
    assert resp.status_code == 200, resp.text
    got = {
        e.event: e
        for e in ingest.assert_published_once(uuid.UUID(identify["uuid"]), uuid.UUID(alias["uuid"]))
    }
    assert got["$identify"].distinct_id == "user-1"
    assert props(got["$identify"])["$anon_distinct_id"] == "anon-1"
    assert props(got["$identify"])["$set"] == {"name": "Ann"}
    assert got["$create_alias"].distinct_id == "anon-9"
    assert props(got["$create_alias"])["alias"] == "user-1"


def test_posthog_engage_without_event_name_is_a_set_event_and_offset_dates_it(ingest: Ingest) -> None:
    engage = {
        "$token": ingest.key,
        "$distinct_id": "u-9",
        "$set": {"plan": "team"},
        "uuid": str(uuid.uuid4()),
    }
    assert post(ingest, "/engage/", engage).status_code == 200
    old = ph_event(api_key=ingest.key, offset=3_600_000)  # captured an hour before it was sent
    assert post(ingest, "/capture/", old).status_code == 200
    got = {
        e.event: e for e in ingest.assert_published_once(uuid.UUID(engage["uuid"]), uuid.UUID(old["uuid"]))
    }
    assert got["$set"].distinct_id == "u-9" and props(got["$set"]) == {"$set": {"plan": "team"}}
    age = datetime.now(UTC) - got["clicked"].timestamp
    assert timedelta(minutes=59) < age < timedelta(minutes=61)


def test_posthog_ids_without_a_uuid_are_stable_for_retries(ingest: Ingest) -> None:
    named = ph_event(uuid="not-a-uuid", timestamp="2026-12-01T10:00:00Z")
    untimed = ph_event()
    del untimed["uuid"]
    timed = {**untimed, "timestamp": datetime.now(UTC).isoformat()}
    for _ in range(2):  # an SDK retry of the same request
        assert post(ingest, "/batch/", {"api_key": ingest.key, "batch": [named, timed]}).status_code == 200
    events = ingest.published()
    expected = uuid.uuid5(ID_NAMESPACE, f"{ingest.tenant['project_id']}/not-a-uuid")
    ids = [e.event_id for e in events]
    assert ids.count(expected) == 2 and len(set(ids)) == 2  # two sends, two distinct stable ids


def test_posthog_bad_input_gets_400_naming_the_field_and_nothing_is_published(ingest: Ingest) -> None:
    key = ingest.key
    unknown = "phc_" + "x" * 30  # pragma: allowlist secret
    error_of(post(ingest, "/e/", ph_event(api_key=unknown)), 401, "api_key", "unknown")
    error_of(post(ingest, "/e/", ph_event()), 401, "api_key", "missing")
    error_of(post(ingest, "/e/", ph_event(api_key=ingest.tenant["read_key"])), 403, "api_key", "read keys")
    no_name = ph_event(api_key=key)
    del no_name["event"]
    error_of(post(ingest, "/i/v0/e/", no_name), 400, "event", "required")
    error_of(post(ingest, "/batch/", {"api_key": key, "batch": [no_name]}), 400, "batch[0].event", "required")
    bad_gzip = {"Content-Encoding": "gzip"}
    error_of(post(ingest, "/batch/", raw=b"\x1f\x8bnot gzip", headers=bad_gzip), 400, "body", "gzip")
    error_of(post(ingest, "/e/?compression=gzip-js", raw=b"\x00garbage"), 400, "body", "not gzip")
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    error_of(
        post(ingest, "/e/?compression=base64", raw=b"data=%%%not*base64", headers=form), 400, "data", "base64"
    )
    error_of(post(ingest, "/e/", raw=b'{"event": '), 400, "body", "JSON")
    huge = json.dumps({"api_key": key, "batch": [ph_event(properties={"x": "y" * 1000})] * 1100}).encode()
    assert post(ingest, "/batch/", raw=huge).status_code == 413
    error_of(post(ingest, "/e/?compression=lz64", raw=b"x"), 415, "compression")
    assert ingest.published() == []


def test_posthog_batch_keeps_valid_events_and_lists_invalid_ones(ingest: Ingest) -> None:
    good = ph_event()
    resp = post(ingest, "/batch/", {"api_key": ingest.key, "batch": [ph_event(event=""), good]})
    assert resp.status_code == 200, resp.text
    assert resp.json()["rejected"] == [
        {"index": 0, "field": "event", "reason": resp.json()["rejected"][0]["reason"]}
    ]
    ingest.assert_published_once(uuid.UUID(good["uuid"]))


def test_flags_decide_and_remote_config_say_nothing_is_enabled(ingest: Ingest) -> None:
    for path in ("/flags/?v=2", "/decide/?v=3"):
        resp = post(ingest, path, {"token": ingest.key, "distinct_id": "u"})
        assert resp.status_code == 200, resp.text
        body = resp.json()
        assert body["featureFlags"] == {} and body["flags"] == {} and body["sessionRecording"] is False
        assert body["errorsWhileComputingFlags"] is False
    config = ingest.client.get(f"/array/{ingest.key}/config")
    assert config.status_code == 200 and config.json()["hasFeatureFlags"] is False
    assert config.headers["access-control-allow-origin"] == "*"
    script = ingest.client.get(f"/array/{ingest.key}/config.js")
    assert script.headers["content-type"].startswith("application/javascript")
    pre = ingest.client.options("/e/", headers={"Origin": "http://a", "Access-Control-Request-Method": "POST",
                                                "Access-Control-Request-Headers": "content-type"})  # fmt: skip
    assert pre.status_code == 204 and pre.headers["access-control-allow-origin"] == "*"
    assert ingest.published() == []


# -- Segment ---------------------------------------------------------------------------------------------


def seg(kind: str, **over) -> dict:
    return {"type": kind, "messageId": str(uuid.uuid4()), "userId": "user-1", "anonymousId": "anon-1",
            "timestamp": datetime.now(UTC).isoformat(), "context": {"library": {"name": "t"}}, **over}  # fmt: skip


def test_segment_batch_maps_every_call_by_the_identity_contract(ingest: Ingest) -> None:
    msgs = [
        seg("track", event="Signed Up", properties={"plan": "pro"}, integrations={"All": False}),
        seg("identify", traits={"email": "a@b.c"}),
        seg("alias", previousId="anon-1"),
        seg("group", groupId="g-1", traits={"name": "Acme"}),
        seg("page", name="Home", properties={"path": "/"}, context={"page": {"url": "http://x/"}}),
        seg("screen", name="Settings", userId=None),
    ]
    resp = post(
        ingest,
        "/v1/batch",
        {"batch": msgs, "sentAt": datetime.now(UTC).isoformat()},
        headers=basic(ingest.key),
    )
    assert resp.status_code == 200, resp.text
    assert resp.json()["success"] is True
    got = {e.event: e for e in ingest.assert_published_once(*(uuid.UUID(m["messageId"]) for m in msgs))}
    track = got["Signed Up"]
    assert track.distinct_id == "user-1"
    assert props(track) == {"plan": "pro", "$segment_context": {"library": {"name": "t"}},
                            "$segment_integrations": {"All": False}}  # fmt: skip
    ident = props(got["$identify"])
    assert got["$identify"].distinct_id == "user-1"
    assert (ident["$anon_distinct_id"], ident["$set"]) == ("anon-1", {"email": "a@b.c"})
    assert got["$create_alias"].distinct_id == "user-1" and props(got["$create_alias"])["alias"] == "anon-1"
    group = props(got["$groupidentify"])
    assert (group["$group_type"], group["$group_key"], group["$group_set"]) == (
        "group",
        "g-1",
        {"name": "Acme"},
    )
    page = props(got["$pageview"])
    assert (page["name"], page["path"], page["$current_url"]) == ("Home", "/", "http://x/")
    assert got["$screen"].distinct_id == "anon-1" and props(got["$screen"])["name"] == "Settings"


@pytest.mark.parametrize("path", ["/v1/track", "/v1/t"])
def test_segment_single_track_with_write_key_in_body_and_stable_message_id(ingest: Ingest, path: str) -> None:
    msg = {"writeKey": ingest.key, "event": "Bought", "userId": 42, "messageId": "ajs-next-abc123"}
    for _ in range(2):
        resp = post(ingest, path, msg)
        assert resp.status_code == 200, resp.text
    expected = uuid.uuid5(ID_NAMESPACE, f"{ingest.tenant['project_id']}/ajs-next-abc123")
    events = ingest.published()
    assert [e.event_id for e in events] == [expected, expected]  # the ledger keeps one
    assert events[0].distinct_id == "42"


def test_segment_identify_without_user_id_uses_the_anonymous_id(ingest: Ingest) -> None:
    msg = seg("identify", userId=None, traits={"a": 1})
    del msg["userId"]
    assert post(ingest, "/v1/identify", msg, headers=basic(ingest.key)).status_code == 200
    (got,) = ingest.assert_published_once(uuid.UUID(msg["messageId"]))
    assert got.distinct_id == "anon-1" and "$anon_distinct_id" not in props(got)


def test_segment_sent_at_corrects_client_clock_skew(ingest: Ingest) -> None:
    client_now = datetime.now(UTC) - timedelta(hours=2)
    msg = seg("track", event="e", timestamp=client_now.isoformat())
    resp = post(
        ingest, "/v1/batch", {"batch": [msg], "sentAt": client_now.isoformat(), "writeKey": ingest.key}
    )
    assert resp.status_code == 200, resp.text
    (got,) = ingest.assert_published_once(uuid.UUID(msg["messageId"]))
    assert abs(got.timestamp - datetime.now(UTC)) < timedelta(minutes=1)


def test_segment_bad_input_gets_400_naming_the_field(ingest: Ingest) -> None:
    auth = basic(ingest.key)
    error_of(post(ingest, "/v1/track", {"userId": "u"}, headers=auth), 400, "event", "required")
    error_of(post(ingest, "/v1/track", {"event": "e"}, headers=auth), 400, "userId", "anonymousId")
    error_of(post(ingest, "/v1/alias", {"userId": "u"}, headers=auth), 400, "previousId", "required")
    error_of(post(ingest, "/v1/batch", {"batch": [{"type": "nope", "userId": "u"}]}, headers=auth), 400,
             "batch[0].type", "one of")  # fmt: skip
    error_of(post(ingest, "/v1/track", {"event": "e", "userId": "u"}), 401, "writeKey", "missing")
    error_of(post(ingest, "/v1/track", {"event": "e", "userId": "u"}, headers=basic("wk_" + "z" * 30)), 401,
             "Authorization", "unknown")  # fmt: skip
    bad = {**auth, "Content-Encoding": "gzip"}
    error_of(post(ingest, "/v1/batch", raw=b"not gzip", headers=bad), 400, "body", "gzip")
    assert ingest.published() == []


def test_v1_batch_native_and_segment_shapes_keep_their_own_errors(ingest: Ingest) -> None:
    # native: X-API-Key decides; Segment's fields are unknown fields there
    resp = ingest.post("/v1/batch", {"batch": [seg("track", event="e")], "writeKey": ingest.key})
    assert resp.status_code == 422, resp.text
    assert "writeKey" in {d["field"] for d in resp.json()["detail"]} | {
        d["field"].split(".")[-1] for d in resp.json()["detail"]
    }
    resp = ingest.post("/v1/batch", {"batch": [{"distinct_id": "u"}]})
    assert resp.status_code == 422 and resp.json()["detail"][0]["field"] == "batch[0].event", resp.text
    # no X-API-Key and nothing of Segment's: the native 401, exactly as before
    resp = ingest.post("/v1/batch", {"batch": [new_event()]}, key=None)
    assert resp.status_code == 401 and resp.json() == {
        "error": "unauthorized", "detail": [{"field": "X-API-Key", "reason": "missing"}]}  # fmt: skip
    # Segment's shape: 400 naming Segment's fields
    resp = post(ingest, "/v1/batch", {"writeKey": ingest.key, "batch": [{"type": "track", "userId": "u"}]})
    error_of(resp, 400, "batch[0].event", "required")
    native = new_event()
    assert ingest.post("/v1/batch", {"batch": [native]}).status_code == 202
    ingest.assert_published_once(uuid.UUID(native["event_id"]))


def test_the_key_alone_decides_the_tenant(ingest: Ingest, db: psycopg.Connection) -> None:
    """Fields naming another project are data, never routing; of two keys the header's wins (docs/sdks.md)."""
    other = make_tenant(db, "globex", "shop")
    ev = ph_event(project_id=str(other["project_id"]), properties={"project_id": str(other["project_id"])})
    body = {"api_key": other["ingest_key"], "batch": [ev]}
    assert post(ingest, "/batch/", body, headers={"Authorization": f"Bearer {ingest.key}"}).status_code == 200
    msg = seg("track", event="e")
    body = {"writeKey": other["ingest_key"], "batch": [msg]}
    assert post(ingest, "/v1/batch", body, headers=basic(ingest.key)).status_code == 200
    landed = ingest.assert_published_once(uuid.UUID(ev["uuid"]), uuid.UUID(msg["messageId"]))
    assert {(e.org_id, e.project_id) for e in landed} == {
        (ingest.tenant["org_id"], ingest.tenant["project_id"])
    }


# -- limits and metrics ----------------------------------------------------------------------------------


def test_rate_limit_is_429_with_retry_after_on_both_protocols(ingest: Ingest, db: psycopg.Connection) -> None:
    t = ingest.tenant
    _, slow = create_api_key(
        db, org_id=t["org_id"], project_id=t["project_id"], kind="ingest", rate_per_s=1, burst=2
    )
    batch = [ph_event() for _ in range(2)]
    assert post(ingest, "/batch/", {"api_key": slow, "batch": batch}).status_code == 200
    resp = post(ingest, "/batch/", {"api_key": slow, "batch": [ph_event()]})
    assert resp.status_code == 429 and int(resp.headers["Retry-After"]) >= 1, resp.text
    resp = post(ingest, "/v1/batch", {"batch": [seg("track", event="e")]}, headers=basic(slow))
    assert resp.status_code == 429 and int(resp.headers["Retry-After"]) >= 1, resp.text
    assert resp.json()["code"] == "rate_limited"


def test_metrics_count_compat_events_like_native_ones(ingest: Ingest) -> None:
    before = ingest.client.get("/metrics").text
    resp = post(ingest, "/batch/", {"api_key": ingest.key, "batch": [ph_event(), ph_event(event=7)]})
    assert resp.status_code == 200, resp.text
    post(ingest, "/v1/batch", {"writeKey": ingest.key, "batch": [seg("track", event="e")]})
    after = ingest.client.get("/metrics").text
    accepted, rejected = "pulseops_ingest_events_accepted_total", "pulseops_ingest_events_rejected_total"
    assert metric(after, accepted) - metric(before, accepted) == 2
    label = 'reason="event"'
    assert metric(after, rejected, label) - metric(before, rejected, label) == 1
