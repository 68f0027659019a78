"""Request bodies of the ingest API and their conversion to RawEvent.

msgspec, not pydantic, decodes these: the single-event path must stay near 10 µs of Python per event to reach
the ingest targets on two cores. A valid batch is decoded in one call (TypedBatch); a batch with a bad item is
decoded item by item, so the bad event is reported by index while the rest are accepted.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import msgspec

from api.ingest.ids import uuid7_batch
from warehouse.events import RawEvent, encode_raw_event, has_nul_escape, has_unstorable_number

EventName = Annotated[str, msgspec.Meta(min_length=1, max_length=200, description="Event name, 1-200 chars.")]
DistinctId = Annotated[
    str, msgspec.Meta(min_length=1, max_length=200, description="The user (or device) the event is about.")
]


class IngestEvent(msgspec.Struct, forbid_unknown_fields=True):
    """One event. Send `event_id` so that retries are safe: the server deduplicates on (project, event_id)."""

    event: EventName
    distinct_id: DistinctId
    timestamp: Annotated[
        datetime | None,
        msgspec.Meta(description="ISO-8601 with a UTC offset. Missing: the time the server received it."),
    ] = None
    event_id: Annotated[
        uuid.UUID | None,
        msgspec.Meta(
            description="Client-chosen UUID; missing: assigned by the server (then retries duplicate)."
        ),
    ] = None
    properties: Annotated[
        dict[str, Any], msgspec.Meta(description="JSON object, at most 32 KiB encoded and 8 levels deep.")
    ] = {}
    sent_at: Annotated[
        datetime | None,
        msgspec.Meta(
            description="Client clock when the request was sent; event time is corrected by "
            "(server receive time - sent_at) to undo client clock skew."
        ),
    ] = None


class IngestBatch(msgspec.Struct, forbid_unknown_fields=True):
    """Up to 1,000 events (1 MiB decompressed). Items are validated one by one."""

    batch: list[msgspec.Raw]
    sent_at: datetime | None = None


class FastEvent(IngestEvent, forbid_unknown_fields=True, gc=False):
    """IngestEvent with `properties` kept as the client's JSON text: building a dict per event only to encode
    it again was the largest per-event cost of a valid batch. msgspec still checks the text is valid JSON
    (escapes, control characters) while skipping it; `EventBuilder.check` checks the rest. gc=False: its
    fields (str, datetime, UUID, Raw) cannot form a reference cycle, and a 1,000-event batch of tracked
    structs set off the cyclic collector during every decode."""

    properties: msgspec.Raw = msgspec.Raw(b"{}")


class TypedBatch(msgspec.Struct, forbid_unknown_fields=True):
    """The same body as IngestBatch, decoded in one call: the fast path when every item is valid. Any
    error sends the body through IngestBatch, which reports each bad item by index."""

    batch: list[FastEvent]
    sent_at: datetime | None = None


class BatchSlice(msgspec.Struct):
    """A batch body's `batch` array as the client's bytes: forwarded as is once every item was validated
    (warehouse/events.py, format 3)."""

    batch: msgspec.Raw


class Rejection(msgspec.Struct):
    index: int
    field: str
    reason: str


class AcceptedResponse(msgspec.Struct):
    """202: every accepted event was acknowledged by the broker."""

    accepted: int
    event_ids: list[uuid.UUID]
    rejected: list[Rejection] = []


class ErrorDetail(msgspec.Struct):
    field: str
    reason: str


class ErrorResponse(msgspec.Struct):
    error: str
    detail: list[ErrorDetail] = []


class EventRejected(Exception):
    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


def split_validation_error(exc: msgspec.ValidationError | msgspec.DecodeError) -> tuple[str, str]:
    """msgspec says 'Expected `str`, got `int` - at `$.event`'; return ('event', 'Expected `str`, got `int`')."""
    text = str(exc)
    reason, sep, path = text.rpartition(" - at `")
    if not sep:
        if text.startswith("Object missing required field `"):
            return text.split("`")[1], "required field missing"
        if text.startswith("Object contains unknown field `"):
            name = text.split("`")[1]
            return name, unknown_field_reason(name)
        return "body", text
    field = path.rstrip("`").removeprefix("$").lstrip(".") or "body"
    if reason.startswith("Object missing required field `"):
        return f"{field}.{reason.split('`')[1]}" if field != "body" else reason.split("`")[1], "required"
    if reason.startswith("Object contains unknown field `"):
        name = reason.split("`")[1]
        return (f"{field}.{name}" if field != "body" else name), unknown_field_reason(name)
    return field, reason


def unknown_field_reason(name: str) -> str:
    if name in ("org_id", "project_id", "org", "project", "tenant"):
        return "unknown field: the API key decides org and project"
    if name == "batch":
        return "unknown field: send batches to POST /v1/batch"
    return "unknown field: put custom data in `properties`"


_decode_event = msgspec.json.Decoder(IngestEvent).decode
_json_encode = msgspec.json.encode
_decode_any = msgspec.json.decode
_Raw = msgspec.Raw
_decode_object = msgspec.json.Decoder(dict[str, Any]).decode


def _depth(value: Any, limit: int) -> int:
    """Nesting depth of containers, stopping early once past `limit`."""
    if isinstance(value, dict):
        children = value.values()
    elif isinstance(value, list):
        children = value
    else:
        return 0
    deepest = 0
    for child in children:
        if isinstance(child, dict | list):
            deepest = max(deepest, _depth(child, limit))
            if deepest >= limit:
                break
    return deepest + 1


def _depth_of(props: bytes, limit: int) -> int:
    """Nesting depth of raw properties (up to limit + 1). Decoding them can fail where skipping them did not
    (msgspec refuses a float past double range, e.g. 1e400, as IngestEvent's dict does): EventRejected, not
    a 500 for the whole batch."""
    try:
        return _depth(_decode_any(props), limit + 1)
    except msgspec.DecodeError as exc:
        raise EventRejected("properties", split_validation_error(exc)[1]) from None
    except RecursionError:
        raise EventRejected("properties", "nested too deeply") from None


class EventBuilder:
    """Turns validated request events into encoded RawEvent messages for one request."""

    def __init__(
        self,
        *,
        org_id: uuid.UUID,
        project_id: uuid.UUID,
        received_at: datetime,
        sent_at: datetime | None,
        max_properties_bytes: int,
        max_properties_depth: int,
        max_past: timedelta,
        max_future: timedelta,
        skew_tolerance: timedelta = timedelta(seconds=5),
        expected_events: int = 1,
    ) -> None:
        self._expected = expected_events
        self._ids: Iterator[uuid.UUID] | None = None
        self.skew_tolerance = skew_tolerance
        self.org_id = org_id
        self.project_id = project_id
        self.received_at = received_at
        self.skew = self._skew(sent_at, received_at)
        self.max_properties_bytes = max_properties_bytes
        self.max_properties_depth = max_properties_depth
        self.oldest = received_at - max_past
        self.newest = received_at + max_future
        self._now_in_range = self.oldest <= received_at <= self.newest
        # True when the whole request body holds no `\u0000` escape: JSON cannot carry a raw NUL, so then no
        # string of any event can hold one and `check` skips its three per-event NUL searches (~0.7 us of an
        # event's ~5 us of Python, measured on batches of 100 and 1,000).
        self.nul_free = False

    def _skew(self, sent_at: datetime | None, received_at: datetime) -> timedelta:
        """Client clock error. Below the tolerance it is network latency: leaving it out keeps a retried
        event's time identical, so its UTC day (and the day it is counted in) cannot flip at midnight."""
        if sent_at is None:
            return timedelta(0)
        if sent_at.tzinfo is None:
            raise EventRejected("sent_at", "must include a UTC offset")
        try:
            skew = received_at - sent_at
        except OverflowError:
            raise EventRejected("sent_at", "out of range") from None
        return skew if abs(skew) >= self.skew_tolerance else timedelta(0)

    def _next_id(self) -> uuid.UUID:
        if self._ids is None:
            self._ids = iter(uuid7_batch(self._expected))
        try:
            return next(self._ids)
        except StopIteration:
            self._ids = iter(uuid7_batch(self._expected))
            return next(self._ids)

    def decode(self, raw: bytes) -> IngestEvent:
        try:
            return _decode_event(raw)
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            raise EventRejected(*split_validation_error(exc)) from None
        except RecursionError:
            raise EventRejected("properties", "nested too deeply") from None

    def build(self, ev: IngestEvent) -> tuple[uuid.UUID, bytes]:
        """Validate what the schema cannot express; returns (event_id, encoded RawEvent)."""
        raw = self.check(ev)
        return raw.event_id, encode_raw_event(raw)

    def _compact(self, props: bytes) -> bytes:
        """Raw properties that are not plainly an object, or longer than the cap: decoded and encoded again,
        so a non-object is refused with IngestEvent's message and the cap counts compact JSON, as before."""
        try:
            return _json_encode(_decode_object(props))
        except msgspec.ValidationError as exc:
            raise EventRejected("properties", split_validation_error(exc)[1]) from None
        except RecursionError:
            raise EventRejected("properties", "nested too deeply") from None

    def _event_time(self, ev: IngestEvent) -> datetime:
        if ev.timestamp is None:
            event_time = self.received_at
        else:
            if ev.timestamp.tzinfo is None:
                raise EventRejected("timestamp", "must include a UTC offset, e.g. 2026-11-25T10:00:00Z")
            skew = self.skew if ev.sent_at is None else self._skew(ev.sent_at, self.received_at)
            try:
                event_time = (ev.timestamp + skew).astimezone(UTC)
            except (OverflowError, ValueError):
                raise EventRejected("timestamp", "out of range") from None
        if event_time < self.oldest:
            raise EventRejected("timestamp", f"older than raw retention ({self.oldest.date()})")
        if event_time > self.newest:
            raise EventRejected("timestamp", "too far in the future")
        return event_time

    def forward(self, events: list[IngestEvent]) -> list[uuid.UUID] | None:
        """The event ids of a batch whose items can be forwarded as sent (warehouse/events.py, format 3), or
        None: then some item needs `check` one by one (rejected, normalised, no event_id, clock skew). The
        same checks as `check` for such items, without a RawEvent per event: about half of a valid batch's
        per-event Python, on the path a client that sends its own event ids takes."""
        if not self.nul_free or self.skew or not self._now_in_range:
            return None
        cap, limit, raw_type = self.max_properties_bytes, self.max_properties_depth, _Raw
        ids = []
        for ev in events:
            event_id, value = ev.event_id, ev.properties
            if event_id is None or ev.sent_at is not None or type(value) is not raw_type:
                return None
            if ev.timestamp is not None:
                try:
                    self._event_time(ev)
                except EventRejected:
                    return None
            props = bytes(value)
            if props[:1] != b"{" or len(props) > cap or has_unstorable_number(props):
                return None
            try:
                if props.count(b"{") + props.count(b"[") > limit and _depth_of(props, limit) > limit:
                    return None
            except EventRejected:
                return None
            ids.append(event_id)
        return ids

    def check(self, ev: IngestEvent) -> RawEvent:
        """Validate what the schema cannot express; returns the RawEvent to publish. Runs once per event of
        every batch, so the common case (no timestamp, properties as sent) takes no detour."""
        nul_free = self.nul_free
        if not nul_free:
            if "\x00" in ev.event:
                raise EventRejected("event", "NUL character not allowed")
            if "\x00" in ev.distinct_id:
                raise EventRejected("distinct_id", "NUL character not allowed")
        now = ev.timestamp is None and self._now_in_range
        event_time = self.received_at if now else self._event_time(ev)
        value = ev.properties
        if type(value) is _Raw:  # FastEvent: the client's text, valid JSON already
            props = bytes(value)
            if props[:1] != b"{" or len(props) > self.max_properties_bytes:
                props = self._compact(props)
                value = _Raw(props)
            if has_unstorable_number(props):  # as sent; IngestEvent's dict would refuse or round it
                raise EventRejected("properties", "holds a number PostgreSQL cannot store")
        else:
            props = _json_encode(value) if value else b"{}"
            value = _Raw(props)
        if len(props) > self.max_properties_bytes:
            raise EventRejected("properties", f"larger than {self.max_properties_bytes} bytes encoded")
        if not nul_free and b"\\u0000" in props and has_nul_escape(props):
            raise EventRejected("properties", "NUL character not allowed")
        # Nesting needs at least depth + 1 brackets, and counting bytes is C-fast: walk the object only then.
        limit = self.max_properties_depth
        if props.count(b"{") + props.count(b"[") > limit and _depth_of(props, limit) > limit:
            raise EventRejected("properties", f"nested deeper than {limit} levels")
        return RawEvent(
            self.org_id,
            self.project_id,
            ev.event_id or self._next_id(),
            ev.event,
            ev.distinct_id,
            event_time,
            self.received_at,
            value,
        )


def openapi_components() -> tuple[dict, dict]:
    """JSON schemas of the request/response bodies for the OpenAPI document."""
    (event, batch, accepted, error), components = msgspec.json.schema_components(
        [IngestEvent, IngestBatch, AcceptedResponse, ErrorResponse],
        ref_template="#/components/schemas/{name}",
    )
    refs = {"IngestEvent": event, "IngestBatch": batch, "AcceptedResponse": accepted, "ErrorResponse": error}
    return refs, components
