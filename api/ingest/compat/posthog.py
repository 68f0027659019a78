"""The PostHog capture protocol, as posthog-js, posthog-python and posthog-node speak it.

Capture: `POST /e/`, `/i/v0/e/`, `/capture/`, `/batch/`, `/track/`, `/engage/` (with or without the trailing
slash). A body is one event, a JSON array of events, or `{"api_key", "batch": [...], "sent_at"}`; it may be
gzip (`Content-Encoding: gzip`, or posthog-js's gzip-js: a gzip body sent as text/plain, with or without
`?compression=gzip-js`) or a form `data=<base64 JSON>` (posthog-js's sendBeacon). The project key is
`Authorization: Bearer`, else the body's `api_key` / `token` (also an event's `token` / `properties.token`).

Mapping to RawEvent: `uuid` -> event_id (a non-UUID maps to a stable uuid5); `distinct_id` from the event,
else `$distinct_id`, `properties.distinct_id`; top-level `$set` / `$set_once` move into properties (where
posthog-js already sends them); `properties.token` (the key itself) is dropped; `$identify`, `$create_alias`,
`$groupidentify` and their properties pass through unchanged. Time: `timestamp` (ISO), corrected by the
request's `sent_at` (body, or `?sent_at=` / `?_=` in ms) like the native `sent_at`, or `offset` ms before now.

Answers: 200 `{"status": 1}` after the spool and the broker acknowledged (posthog-python treats any other
2xx as an error). `/decide/`, `/flags/` and `/array/<token>/config` answer "no flags, no session recording,
no surveys" in the shapes the SDKs parse, so posthog-js runs without errors.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs

from api.errors import ApiError
from api.ingest.body import gunzip
from api.ingest.compat.common import (
    Answer,
    CompatRequest,
    Mapped,
    Read,
    accept_mapped,
    accepted_body,
    authenticate,
    b64decode,
    bad,
    bearer_key,
    content_id,
    decode_json,
    encode,
    epoch_ms,
    error_answer,
    event_id_for,
    make_event,
    name_of,
    object_of,
    parse_time,
    text_id,
)
from api.ingest.schemas import EventRejected
from api.ingest.service import IngestServices
from api.security import KeyCache

CAPTURE_PATHS = ("/e/", "/i/v0/e/", "/capture/", "/batch/", "/track/", "/engage/")
FLAGS_PATHS = ("/decide/", "/flags/")
_KEY_MISSING = "missing: send the ingest key as api_key or token in the body, or Authorization: Bearer"
_COMPRESSIONS = ("", "gzip", "gzip-js", "base64")


def _decode(raw: bytes, req: CompatRequest, max_bytes: int) -> Any:
    """The request's JSON whatever way posthog-js wrapped it."""
    compression = req.query.get("compression", "").lower()
    if compression not in _COMPRESSIONS:
        raise ApiError(415, "unsupported_encoding", [("compression", "only gzip-js and base64 are accepted")])
    data = raw
    if data[:2] == b"\x1f\x8b":
        data = gunzip(data, max_bytes)
    elif compression in ("gzip", "gzip-js") and data.lstrip()[:1] not in (b"{", b"["):
        # JSON as is passes: a proxy may have inflated it (Content-Encoding), or posthog-js fell back
        raise bad("body", f"compression={compression} but the body is not gzip", "invalid_gzip")
    ctype = req.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if ctype == "application/x-www-form-urlencoded" or data[:5] == b"data=":
        form = parse_qs(data.decode("utf-8", "replace"), keep_blank_values=True)
        values = form.get("data")
        if not values or not values[0].strip():
            raise bad("data", "required: the form field carrying the events")
        text = values[0].strip()
        compression = form.get("compression", [compression])[0].lower()
        if compression == "base64" or not text.startswith(("{", "[")):
            data = b64decode(text, "data")
        else:
            data = text.encode()
    elif compression == "base64" and data[:1] not in (b"{", b"["):
        data = b64decode(data.decode("latin-1"), "body")
    return decode_json(data)


def _sent_at(envelope: dict[str, Any], req: CompatRequest) -> datetime | None:
    value = envelope.get("sent_at")
    if value is not None:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return epoch_ms(str(int(value)), "sent_at")
        try:
            return parse_time(value, "sent_at")
        except EventRejected as exc:
            raise bad(exc.field, exc.reason) from None
    for name in ("sent_at", "_"):
        if req.query.get(name):
            return epoch_ms(req.query[name], name)
    return None


def _key_in(envelope: dict[str, Any], events: list[Any]) -> Any:
    for source in (envelope, events[0] if events and isinstance(events[0], dict) else {}):
        for name in ("api_key", "token", "$token"):
            if source.get(name):
                return source[name]
        props = source.get("properties")
        if isinstance(props, dict) and props.get("token"):
            return props["token"]
    return None


def map_event(item: Any, project_id: uuid.UUID, key: str | None, engage: bool) -> Mapped:
    """One PostHog event -> IngestEvent, or EventRejected naming the field."""
    try:
        if not isinstance(item, dict):
            raise EventRejected("body", "each event must be a JSON object")
        props = dict(object_of(item.get("properties"), "properties"))
        name = item.get("event")
        if name is None and engage:
            name = "$set"  # /engage/ carries person updates without an event name
        name = name_of(name, "event")
        distinct = None
        for source, field_name in (
            (item, "distinct_id"),
            (item, "$distinct_id"),
            (props, "distinct_id"),
            (props, "$distinct_id"),
        ):
            distinct = text_id(source.get(field_name), field_name)
            if distinct is not None:
                break
        if distinct is None:
            raise EventRejected("distinct_id", "required: distinct_id (or properties.distinct_id)")
        for set_name in ("$set", "$set_once"):
            top = item.get(set_name)
            if top is not None:
                top = object_of(top, set_name)
                inner = props.get(set_name)
                props[set_name] = {**inner, **top} if isinstance(inner, dict) else top
        for secret in ("token", "$token", "api_key"):
            if key is not None and props.get(secret) == key:
                del props[secret]
        timestamp = parse_time(item.get("timestamp"), "timestamp")
        offset = item.get("offset")
        if timestamp is None and offset is not None:
            if not isinstance(offset, int) or isinstance(offset, bool) or offset < 0:
                raise EventRejected("offset", "must be milliseconds (a non-negative integer)")
            timestamp = datetime.now(UTC) - timedelta(milliseconds=offset)
        event_id = event_id_for(item.get("uuid"), project_id, "uuid") or content_id(project_id, item)
        sent_at = item.get("sent_at")
        return make_event(
            event=name,
            distinct_id=distinct,
            event_id=event_id,
            timestamp=timestamp,
            properties=props,
            sent_at=parse_time(sent_at, "sent_at") if isinstance(sent_at, str) else None,
        )
    except EventRejected as exc:
        return exc


async def capture(svc: IngestServices, keys: KeyCache, req: CompatRequest, read: Read) -> Answer:
    """Any PostHog capture path: one event, an array, or a batch envelope."""
    try:
        header_key = bearer_key(req.headers)
        row = None
        if header_key is not None:
            row = await authenticate(svc, keys, header_key, "Authorization", _KEY_MISSING)
        payload = _decode(await read(), req, svc.settings.ingest.max_body_bytes)
        single = False
        if isinstance(payload, list):
            envelope: dict[str, Any] = {}
            events = payload
        elif isinstance(payload, dict):
            if "batch" in payload:
                if not isinstance(payload["batch"], list):
                    raise bad("batch", "must be a JSON array of events")
                envelope, events = payload, payload["batch"]
            else:
                envelope, events, single = payload, [payload], True
        else:
            raise bad("body", "must be a JSON object (one event or {batch: [...]}) or an array of events")
        key_text = header_key
        if row is None:
            key_text = _key_in(envelope, events)
            row = await authenticate(svc, keys, key_text, "api_key", _KEY_MISSING)
        sent_at = _sent_at(envelope, req)
        engage = req.path.rstrip("/") == "/engage"
        mapped = [map_event(e, row.project_id, key_text, engage) for e in events]
        accepted, ids, rejected = await accept_mapped(svc, row, mapped, sent_at, single=single)
        return Answer(200, accepted_body({"status": 1}, accepted, ids, rejected))
    except ApiError as exc:
        return error_answer(exc)


# What a project without feature flags, session replay, surveys or site apps answers: posthog-js reads
# these keys (packages/core types PostHogRemoteConfig / PostHogFlagsResponse) and then stays quiet.
REMOTE_CONFIG: dict[str, Any] = {
    "supportedCompression": ["gzip", "gzip-js"],
    "hasFeatureFlags": False,
    "sessionRecording": False,
    "surveys": False,
    "productTours": False,
    "heatmaps": False,
    "capturePerformance": False,
    "autocapture_opt_out": False,
    "autocaptureExceptions": False,
    "captureDeadClicks": False,
    "elementsChainAsString": True,
    "defaultIdentifiedOnly": True,
    "isAuthenticated": False,
    "toolbarParams": {},
    "config": {"enable_collect_everything": True},
    "siteApps": [],
    "errorTracking": False,
    "logs": False,
}


def flags_body() -> dict[str, Any]:
    return {
        **REMOTE_CONFIG,
        "flags": {},
        "featureFlags": {},
        "featureFlagPayloads": {},
        "errorsWhileComputingFlags": False,
        "quotaLimited": [],
        "requestId": str(uuid.uuid4()),
    }


async def flags(svc: IngestServices, keys: KeyCache, req: CompatRequest, read: Read) -> Answer:
    """`/decide/` and `/flags/` (GET or POST): no flags. The body is read and dropped; it returns nothing of
    any tenant, so the key is not looked up."""
    if req.method == "POST":
        try:
            await read()
        except ApiError as exc:
            return error_answer(exc)
    return Answer(200, encode(flags_body()))


def remote_config(token: str, script: bool) -> Answer:
    """`GET /array/<token>/config` (JSON) and `/array/<token>/config.js` (what the loader script evaluates)."""
    config = {**REMOTE_CONFIG, "token": token}
    if not script:
        return Answer(200, encode(config), {"Cache-Control": "max-age=300"})
    payload = encode({"config": config, "siteApps": []}).decode()
    body = (
        "(function(){window._POSTHOG_REMOTE_CONFIG=window._POSTHOG_REMOTE_CONFIG||{};"
        f"window._POSTHOG_REMOTE_CONFIG[{encode(token).decode()}]={payload};}})();"
    )
    return Answer(200, body.encode(), {"Cache-Control": "max-age=300"}, "application/javascript")
