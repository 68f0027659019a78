"""streams.decode's fast path (`_plain`): every event it lets through lands exactly as the full checks
(`_check`) land it, and every event those checks reject still reaches them, in packed (format 2) and forwarded
(format 3) messages alike. Pure: no services."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest

import streams.decode as decode_module
from streams.decode import MAX_PROPERTIES_BYTES, Decoded, Reason, Window, decode_message
from warehouse.events import encode_forwarded, pack_raw_events

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
WINDOW = Window(retention_days=90, max_future_s=24 * 3600, now=NOW)
ORG, PROJECT = uuid.uuid4(), uuid.uuid4()
RECEIVED = "2026-11-25T11:00:01Z"


def iso(ts: datetime) -> str:
    return ts.isoformat().replace("+00:00", "Z")


# (event name, distinct_id, timestamp, raw properties JSON): one per way an event can differ from the plain one
CASES = {
    "plain": ("page_view", "u-1", "2026-11-25T11:00:00Z", b'{"path":"/"}'),
    "offset-time": ("page_view", "u-1", "2026-11-25T13:00:00+02:00", b'{"path":"/"}'),
    "plus-zero-offset": ("page_view", "u-1", "2026-11-25T11:00:00+00:00", b'{"path":"/"}'),
    "oldest-edge": ("page_view", "u-1", iso(WINDOW.oldest), b"{}"),
    "newest-edge": ("page_view", "u-1", iso(WINDOW.newest), b"{}"),
    "too-old": ("page_view", "u-1", iso(WINDOW.oldest - timedelta(microseconds=1)), b"{}"),
    "too-new": ("page_view", "u-1", iso(WINDOW.newest + timedelta(microseconds=1)), b"{}"),
    "spaced-props": ("page_view", "u-1", "2026-11-25T11:00:00Z", b' \n {"path":"/"} '),
    "array-props": ("page_view", "u-1", "2026-11-25T11:00:00Z", b"[1,2]"),
    "string-props": ("page_view", "u-1", "2026-11-25T11:00:00Z", b'"x"'),
    "max-props": ("page_view", "u-1", "2026-11-25T11:00:00Z", b'{"p":"' + b"x" * (MAX_PROPERTIES_BYTES - 8) + b'"}'),
    "big-props": ("page_view", "u-1", "2026-11-25T11:00:00Z", b'{"p":"' + b"x" * MAX_PROPERTIES_BYTES + b'"}'),
    "nul-escape": ("page_view", "u-1", "2026-11-25T11:00:00Z", b'{"p":"a\\u0000b"}'),
    "escaped-backslash": ("page_view", "u-1", "2026-11-25T11:00:00Z", b'{"p":"a\\\\u0000b"}'),
    "nul-name": ("page\x00view", "u-1", "2026-11-25T11:00:00Z", b"{}"),
    "nul-distinct-id": ("page_view", "u\x00-1", "2026-11-25T11:00:00Z", b"{}"),
    "non-ascii": ("kauf", "nutzer-ü", "2026-11-25T11:00:00Z", '{"stadt":"Zürich"}'.encode()),
    "bad-utf8-props": ("page_view", "u-1", "2026-11-25T11:00:00Z", b'{"p":"\xff\xfe"}'),
}  # fmt: skip


LANDS = {"plain", "offset-time", "plus-zero-offset", "oldest-edge", "newest-edge", "spaced-props", "max-props",
         "escaped-backslash", "non-ascii"}  # fmt: skip


def raw_event(name: str, distinct: str, ts: str, props: bytes, v: int = 1) -> bytes:
    head = json.dumps(
        {"org_id": str(ORG), "project_id": str(PROJECT), "event_id": str(uuid.uuid4()), "event": name,
         "distinct_id": distinct, "timestamp": ts, "received_at": RECEIVED, "v": v}
    ).encode()  # fmt: skip
    return head[:-1] + b', "properties": ' + props + b"}"


def forwarded_item(name: str, distinct: str, ts: str, props: bytes) -> bytes:
    head = json.dumps(
        {"event": name, "distinct_id": distinct, "event_id": str(uuid.uuid4()), "timestamp": ts}
    ).encode()
    return head[:-1] + b', "properties": ' + props + b"}"


def both_paths(value: bytes, monkeypatch: pytest.MonkeyPatch) -> tuple[Decoded, Decoded]:
    fast = decode_message(value, WINDOW)
    with monkeypatch.context() as m:
        m.setattr(decode_module, "_plain", lambda *_: False)  # every event through _check
        full = decode_message(value, WINDOW)
    return fast, full


@pytest.mark.parametrize("case", sorted(CASES))
def test_packed_fast_path_lands_what_the_full_checks_land(case: str, monkeypatch: pytest.MonkeyPatch) -> None:
    events = [raw_event(*CASES["plain"]), raw_event(*CASES[case]), raw_event(*CASES["plain"], v=2)]
    [(_, value)] = pack_raw_events(events)
    fast, full = both_paths(value, monkeypatch)
    assert fast == full
    assert fast.rejected[-1][2].reason is Reason.UNSUPPORTED_VERSION  # a version the fast path must not pass
    assert len(fast.rows) == 1 + (case in LANDS)


@pytest.mark.parametrize("case", sorted(CASES))
def test_forwarded_fast_path_lands_what_the_full_checks_land(
    case: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    items = [forwarded_item(*CASES["plain"]), forwarded_item(*CASES[case])]
    value = encode_forwarded(
        ORG, PROJECT, datetime(2026, 11, 25, 11, 0, 1, tzinfo=UTC), b"[" + b",".join(items) + b"]"
    )
    fast, full = both_paths(value, monkeypatch)
    assert fast == full
    assert len(fast.rows) == 1 + (case in LANDS)
    assert all(r[1].utcoffset() == timedelta(0) for r in fast.rows)
