"""What the warehouse must converge to for a generated stream: counts over DISTINCT (tenant, event_id)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import orjson

from pulseops.generator.model import GeneratedEvent


def _utc_day(timestamp: str) -> str:
    """UTC calendar day of an ISO-8601 timestamp; fast path for the generator's ``+00:00`` form."""
    if timestamp.endswith(("+00:00", "Z")):
        return timestamp[:10]
    return datetime.fromisoformat(timestamp).astimezone(UTC).strftime("%Y-%m-%d")


class GroundTruth:
    """Expected warehouse aggregates over DISTINCT (tenant, event_id) pairs, built incrementally.

    What the pipeline must converge to once every event has been ingested exactly once, whatever the
    duplicates, retries or arrival order. Attributes are flat dicts keyed by tuples:

    * ``event_counts[(tenant, day, event)]`` -> count
    * ``day_totals[(tenant, day)]`` -> count, ``day_users[(tenant, day)]`` -> set of distinct_ids
    * ``tenant_totals[tenant]`` -> count; ``duplicates`` counts skipped re-sends.

    Seen event_ids are not serialised, so after ``from_json`` only new ids can be deduplicated.
    """

    def __init__(self) -> None:
        self.event_counts: dict[tuple[str, str, str], int] = {}
        self.day_totals: dict[tuple[str, str], int] = {}
        self.day_users: dict[tuple[str, str], set[str]] = {}
        self.tenant_totals: dict[str, int] = {}
        self.duplicates = 0
        self._seen: dict[str, set[str]] = {}

    def add(self, event: GeneratedEvent) -> bool:
        """Count ``event`` unless its event_id was already seen for its tenant; True if counted."""
        tenant, p = event.tenant, event.payload
        seen = self._seen.get(tenant)
        if seen is None:
            seen = self._seen[tenant] = set()
        eid = p["event_id"]
        if eid in seen:
            self.duplicates += 1
            return False
        seen.add(eid)
        day = _utc_day(p["timestamp"])
        td = (tenant, day)
        ek = (tenant, day, p["event"])
        self.event_counts[ek] = self.event_counts.get(ek, 0) + 1
        self.day_totals[td] = self.day_totals.get(td, 0) + 1
        users = self.day_users.get(td)
        if users is None:
            users = self.day_users[td] = set()
        users.add(p["distinct_id"])
        self.tenant_totals[tenant] = self.tenant_totals.get(tenant, 0) + 1
        return True

    @property
    def total(self) -> int:
        """Number of distinct events counted."""
        return sum(self.tenant_totals.values())

    def unique_users(self, tenant: str, day: str) -> int:
        """Distinct distinct_ids seen for ``tenant`` on UTC ``day`` (``YYYY-MM-DD``)."""
        return len(self.day_users.get((tenant, day), ()))

    def to_dict(self) -> dict[str, Any]:
        """Nested, JSON-friendly form: tenants -> days -> {total, unique_users, events, distinct_ids}."""
        tenants: dict[str, Any] = {t: {"total": n, "days": {}} for t, n in sorted(self.tenant_totals.items())}
        for (t, day), n in sorted(self.day_totals.items()):
            users = self.day_users.get((t, day), set())
            tenants[t]["days"][day] = {
                "total": n,
                "unique_users": len(users),
                "events": {},
                "distinct_ids": sorted(users),
            }
        for (t, day, name), n in sorted(self.event_counts.items()):
            tenants[t]["days"][day]["events"][name] = n
        return {"version": 1, "total": self.total, "duplicates": self.duplicates, "tenants": tenants}

    def to_json(self) -> str:
        """Deterministic JSON (sorted keys) so two runs with the same seed diff cleanly."""
        return orjson.dumps(self.to_dict(), option=orjson.OPT_SORT_KEYS).decode()

    @classmethod
    def from_json(cls, data: str | bytes) -> GroundTruth:
        """Inverse of ``to_json``."""
        doc = orjson.loads(data)
        gt = cls()
        gt.duplicates = doc.get("duplicates", 0)
        for t, tdoc in doc["tenants"].items():
            gt.tenant_totals[t] = tdoc["total"]
            for day, ddoc in tdoc["days"].items():
                gt.day_totals[(t, day)] = ddoc["total"]
                gt.day_users[(t, day)] = set(ddoc["distinct_ids"])
                for name, n in ddoc["events"].items():
                    gt.event_counts[(t, day, name)] = n
        return gt

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, GroundTruth):
            return NotImplemented
        return (
            self.event_counts == other.event_counts
            and self.day_totals == other.day_totals
            and self.day_users == other.day_users
            and self.tenant_totals == other.tenant_totals
            and self.duplicates == other.duplicates
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return (
            f"GroundTruth(total={self.total}, tenants={len(self.tenant_totals)}, "
            f"duplicates={self.duplicates})"
        )


def ground_truth_for(events: Iterable[GeneratedEvent]) -> GroundTruth:
    """Ground truth of a whole stream (e.g. ``generate(cfg)`` or ``read_jsonl(path)``)."""
    gt = GroundTruth()
    add = gt.add
    for ev in events:
        add(ev)
    return gt
