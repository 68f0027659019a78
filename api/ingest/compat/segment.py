"""The Segment HTTP Tracking API, as analytics-node, segment-analytics-python and RudderStack's SDKs speak it.

`POST /v1/track`, `/v1/identify`, `/v1/page`, `/v1/screen`, `/v1/group`, `/v1/alias` (one message) and
`/v1/batch` (`{"batch": [...], "sentAt", "context"}`). The write key (a PulseOps ingest key) comes as the user
name of `Authorization: Basic`, or as `writeKey` in the body.

`/v1/batch` is also the native batch path. The two shapes never meet: a request with `X-API-Key` is native;
one without it is Segment's when it has `Authorization: Basic` or a top-level `writeKey`, and otherwise gets
the native 401 (`X-API-Key` missing). The native body cannot carry `writeKey` (unknown fields are refused), so
no request is readable both ways. Each shape's bad input gets its own errors.

Mapping (the identity contract the landing side relies on):
- track -> `event`; page -> `$pageview`, screen -> `$screen` (`name`, `category` in properties);
- identify -> `$identify`, distinct_id userId (else anonymousId), `$anon_distinct_id` = anonymousId when both
  are present, `$set` = traits;
- alias -> `$create_alias`, distinct_id userId, `alias` = previousId;
- group -> `$groupidentify`, `$group_type` "group", `$group_key` groupId, `$group_set` traits;
- `messageId` -> event_id (a non-UUID maps to a stable uuid5 under the project), `context` ->
  `$segment_context`, `integrations` -> `$segment_integrations`; time `timestamp` (else `originalTimestamp`),
  corrected by `sentAt` like the native `sent_at`.
Answers: 200 `{"success": true}` after the spool and the broker acknowledged.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import msgspec

from api.errors import ApiError
from api.ingest.compat.common import (
    Answer,
    CompatRequest,
    Mapped,
    Read,
    accept_mapped,
    accepted_body,
    authenticate,
    bad,
    basic_user,
    content_id,
    decode_json,
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

KINDS = ("track", "identify", "page", "screen", "group", "alias")
PATHS = {f"/v1/{kind}": kind for kind in KINDS}
# analytics.js (analytics-next) posts single messages to the first letter of their type, batches to /v1/b.
PATHS.update({f"/v1/{kind[0]}": kind for kind in KINDS})
BATCH_PATHS = ("/v1/batch", "/v1/b")
_KEY_MISSING = "missing: send the write key as the user name of Basic auth, or writeKey in the body"


def map_message(msg: Any, kind: str | None, project_id: uuid.UUID, envelope_context: Any = None) -> Mapped:
    """One Segment message -> IngestEvent, or EventRejected naming the field."""
    try:
        if not isinstance(msg, dict):
            raise EventRejected("body", "each message must be a JSON object")
        kind = kind or msg.get("type")
        if kind not in KINDS:
            raise EventRejected("type", "must be one of " + ", ".join(KINDS))
        user = text_id(msg.get("userId"), "userId")
        anon = text_id(msg.get("anonymousId"), "anonymousId")
        props: dict[str, Any] = {}
        if kind == "track":
            name = name_of(msg.get("event"), "event")
            props = dict(object_of(msg.get("properties"), "properties"))
        elif kind in ("page", "screen"):
            name = "$pageview" if kind == "page" else "$screen"
            props = dict(object_of(msg.get("properties"), "properties"))
            for field_name in ("name", "category"):
                if msg.get(field_name) is not None:
                    props.setdefault(field_name, msg[field_name])
        elif kind == "identify":
            name = "$identify"
            traits = object_of(msg.get("traits"), "traits")
            if traits:
                props["$set"] = traits
            if user and anon:
                props["$anon_distinct_id"] = anon
        elif kind == "group":
            name = "$groupidentify"
            group = text_id(msg.get("groupId"), "groupId")
            if group is None:
                raise EventRejected("groupId", "required for a group call")
            props = {
                "$group_type": "group",
                "$group_key": group,
                "$group_set": object_of(msg.get("traits"), "traits"),
            }
        else:  # alias
            name = "$create_alias"
            previous = text_id(msg.get("previousId"), "previousId")
            if previous is None:
                raise EventRejected("previousId", "required for an alias call")
            if user is None:
                raise EventRejected("userId", "required for an alias call")
            props = {"alias": previous}
        distinct = user or anon
        if distinct is None:
            raise EventRejected("userId", "userId or anonymousId is required")
        context = object_of(msg.get("context"), "context")
        if isinstance(envelope_context, dict) and envelope_context:
            context = {**envelope_context, **context}
        if context:
            props["$segment_context"] = context
            page = context.get("page")
            if kind == "page" and isinstance(page, dict) and isinstance(page.get("url"), str):
                props.setdefault("$current_url", page["url"])
        integrations = object_of(msg.get("integrations"), "integrations")
        if integrations:
            props["$segment_integrations"] = integrations
        stamp = msg.get("timestamp")
        field_name = "timestamp"
        if stamp is None:
            stamp, field_name = msg.get("originalTimestamp"), "originalTimestamp"
        event_id = event_id_for(msg.get("messageId"), project_id, "messageId") or content_id(project_id, msg)
        return make_event(
            event=name,
            distinct_id=distinct,
            event_id=event_id,
            timestamp=parse_time(stamp, field_name),
            properties=props,
            sent_at=parse_time(msg.get("sentAt"), "sentAt"),
        )
    except EventRejected as exc:
        return exc


def _envelope(raw: bytes) -> dict[str, Any]:
    payload = decode_json(raw)
    if not isinstance(payload, dict):
        raise bad("body", "must be a JSON object")
    return payload


async def _key(
    svc: IngestServices, keys: KeyCache, req: CompatRequest, payload: dict[str, Any] | None
) -> Any:
    user = basic_user(req.headers)
    if user is not None:
        return await authenticate(svc, keys, user, "Authorization", _KEY_MISSING)
    return await authenticate(svc, keys, (payload or {}).get("writeKey"), "writeKey", _KEY_MISSING)


def _sent_at(payload: dict[str, Any]) -> datetime | None:
    try:
        return parse_time(payload.get("sentAt"), "sentAt")
    except EventRejected as exc:
        raise bad(exc.field, exc.reason) from None


async def single(svc: IngestServices, keys: KeyCache, req: CompatRequest, read: Read) -> Answer:
    """`/v1/track`, `/v1/identify`, `/v1/page`, `/v1/screen`, `/v1/group`, `/v1/alias`."""
    try:
        row = None
        if basic_user(req.headers) is not None:
            row = await _key(svc, keys, req, None)
        payload = _envelope(await read())
        if row is None:
            row = await _key(svc, keys, req, payload)
        mapped = [map_message(payload, PATHS[req.path.rstrip("/")], row.project_id)]
        accepted, ids, rejected = await accept_mapped(svc, row, mapped, None, single=True)
        return Answer(200, accepted_body({"success": True}, accepted, ids, rejected))
    except ApiError as exc:
        return error_answer(exc)


async def batch(
    svc: IngestServices, keys: KeyCache, req: CompatRequest, read: Read, body: bytes | None = None
) -> Answer:
    """`/v1/batch` in Segment's shape. `body` when the dispatcher already read it (to find `writeKey`)."""
    try:
        row = None
        if basic_user(req.headers) is not None:
            row = await _key(svc, keys, req, None)
        payload = _envelope(body if body is not None else await read())
        if row is None:
            row = await _key(svc, keys, req, payload)
        messages = payload.get("batch")
        if not isinstance(messages, list):
            raise bad("batch", "required: a JSON array of messages")
        context = payload.get("context")
        mapped = [map_message(m, None, row.project_id, context) for m in messages]
        accepted, ids, rejected = await accept_mapped(svc, row, mapped, _sent_at(payload), single=False)
        return Answer(200, accepted_body({"success": True}, accepted, ids, rejected))
    except ApiError as exc:
        return error_answer(exc)


def is_segment_batch(headers: dict[str, str], body: bytes | None) -> bool:
    """Whether a `/v1/batch` request without `X-API-Key` is Segment's: Basic auth, or a top-level `writeKey`
    in the body (when given). Cheap: the body is searched before it is parsed."""
    if headers.get("authorization", "").lower().startswith("basic "):
        return True
    if body is None or b'"writeKey"' not in body:
        return False
    try:
        payload = msgspec.json.decode(body)
    except (msgspec.DecodeError, RecursionError):
        return False
    return isinstance(payload, dict) and "writeKey" in payload
