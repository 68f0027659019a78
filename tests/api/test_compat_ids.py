"""A PostHog `uuid` / Segment `messageId` becomes the event_id (api/ingest/compat/common.py `event_id_for`):
parsed by msgspec first for speed, the result must be exactly what `uuid.UUID` (or the uuid5 fallback) gives,
since a retried message must land on the same id across versions."""

from __future__ import annotations

import uuid

import pytest

from api.ingest.compat.common import ID_NAMESPACE, event_id_for

PROJECT = uuid.UUID("0b7e3a4c-2f4d-4c7a-9a1e-5d6f7a8b9c0d")
TEXTS = [
    "6f1c3c2e-6a43-5b8e-9a55-2f0d7c1f4b10",
    "6F1C3C2E-6A43-5B8E-9A55-2F0D7C1F4B10",
    "6f1c3c2e6a435b8e9a552f0d7c1f4b10",  # pragma: allowlist secret (a UUID without hyphens)
    "{6f1c3c2e-6a43-5b8e-9a55-2f0d7c1f4b10}",
    "urn:uuid:6f1c3c2e-6a43-5b8e-9a55-2f0d7c1f4b10",
    "6f1c3c2e-6a435b8e-9a55-2f0d7c1f4b10",
    "6f1c3c2e-6a43-5b8e-9a55-2f0d7c1f4b1",
    " 6f1c3c2e-6a43-5b8e-9a55-2f0d7c1f4b10",
    "00000000-0000-0000-0000-000000000000",
    "ajs-next-1700000000000-abc",
    "g" * 36,
    "12345",
]


def _reference(text: str) -> uuid.UUID:
    try:
        return uuid.UUID(text)
    except ValueError:
        return uuid.uuid5(ID_NAMESPACE, f"{PROJECT}/{text}")


@pytest.mark.parametrize("text", TEXTS)
def test_event_id_is_what_uuid_or_uuid5_gives(text: str) -> None:
    got = event_id_for(text, PROJECT, "uuid")
    assert type(got) is uuid.UUID
    assert got == _reference(text)


def test_numeric_ids_are_read_as_text() -> None:
    assert event_id_for(12345, PROJECT, "uuid") == _reference("12345")
