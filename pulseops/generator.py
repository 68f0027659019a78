"""Deterministic, skewed event generator: the demo data of `pulseops up --demo`, benchmarks and correctness drills.

Real analytics traffic is not uniform, and the interesting failures (hot partitions, late-arriving
uploads, client retries) only show up under skew. This module produces a seeded stream that mimics it:

* tenants in tiers ("hot" / "medium" / "quiet") with weighted shares of the traffic;
* per tenant a user pool with power-law activity, each user active only on a subset of days;
* Zipf-like event-name popularity and low-cardinality properties (path, plan, country, device),
  plus a numeric ``amount`` on purchases;
* a diurnal/weekly curve with a few burst hours and a few burst seconds;
* late events (timestamped 1 hour .. ``max_late_days`` before they are sent) emitted at the END of the
  stream, the way delayed mobile uploads arrive;
* exact duplicates (same ``event_id`` and payload) re-sent later in the stream, like SDK retries.

Alongside it: a ``GroundTruth`` over distinct event_ids to compare the warehouse against, JSONL writers,
and an async HTTP sender for ``POST /v1/batch`` that honours ``Retry-After``.

CLI: ``python -m pulseops.generator --events N --days D --seed S --out DIR`` (the demo of `pulseops up --demo`,
the benchmarks and the tests use it).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import itertools
import math
import os
import random
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import httpx
import msgspec
import orjson

__all__ = [
    "DEFAULT_EVENT_NAMES",
    "MAX_AGE_DAYS",
    "GeneratedEvent",
    "GeneratorConfig",
    "GroundTruth",
    "SendReport",
    "TenantSpec",
    "default_tenants",
    "generate",
    "ground_truth_for",
    "main",
    "read_jsonl",
    "send_http",
    "send_http_sync",
    "tiered_tenants",
    "write_ground_truth",
    "write_jsonl",
]

# Ingest rejects events older than raw_retention_days - 1 = 89 days *at receive time*; windows are clamped
# one hour short of that so a replay that takes a while is not partly rejected as too old.
MAX_AGE_DAYS = 89
_AGE_MARGIN = timedelta(hours=1)

_US_PER_MS = 1_000
_MS_PER_SECOND = 1_000
_MS_PER_HOUR = 3_600_000
_MS_PER_DAY = 86_400_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

# Event names in descending popularity: rank k gets weight 1 / k**zipf_exponent.
DEFAULT_EVENT_NAMES: tuple[str, ...] = (
    "page_view",
    "click",
    "screen_view",
    "session_start",
    "scroll",
    "search",
    "form_submit",
    "login",
    "add_to_cart",
    "feature_used",
    "purchase",
    "signup",
    "logout",
    "share",
    "video_play",
    "file_download",
    "invite_sent",
    "subscription_started",
    "error",
    "subscription_cancelled",
)

_PATHS = (
    "/",
    "/pricing",
    "/docs",
    "/dashboard",
    "/blog",
    "/features",
    "/settings",
    "/account",
    "/about",
    "/integrations",
    "/changelog",
    "/careers",
)
# Some events only happen on one page; keeps (event, path) combinations plausible.
_FIXED_PATHS = {"signup": "/signup", "purchase": "/checkout", "add_to_cart": "/pricing", "login": "/login"}
_AMOUNT_EVENTS = frozenset({"purchase"})
_PLANS = (("free", 0.70), ("pro", 0.24), ("enterprise", 0.06))
_COUNTRIES = (
    ("US", 0.34),
    ("DE", 0.12),
    ("GB", 0.10),
    ("FR", 0.08),
    ("IN", 0.08),
    ("BR", 0.07),
    ("JP", 0.06),
    ("CA", 0.06),
    ("NL", 0.05),
    ("AU", 0.04),
)
_DEVICES = (("desktop", 0.55), ("mobile", 0.40), ("tablet", 0.05))

# uuid4 layout without uuid.UUID objects (3x faster): clear version/variant bits, then set 4 / 10xx.
_UUID_MASK = ~((0xF000 << 64) | (0xC000 << 48)) & ((1 << 128) - 1)
_UUID_BITS = (0x4000 << 64) | (0x8000 << 48)
# "MM:SS" for every second of an hour, so a timestamp is one f-string instead of a datetime object.
_MMSS = tuple(f"{s // 60:02d}:{s % 60:02d}" for s in range(3600))


# --------------------------------------------------------------------------------------------- config


@dataclass
class TenantSpec:
    """One tenant: its share of the traffic (weights are normalised) and the size of its user pool."""

    name: str
    weight: float
    users: int = 1_000


def default_tenants() -> list[TenantSpec]:
    """Three tiers (60 / 30 / 10 %) so partition and per-tenant skew exist with the default config."""
    return [TenantSpec("hot", 0.6, 5_000), TenantSpec("medium", 0.3, 2_000), TenantSpec("quiet", 0.1, 300)]


def tiered_tenants(
    hot: int = 1,
    medium: int = 1,
    quiet: int = 1,
    *,
    tier_weights: tuple[float, float, float] = (0.6, 0.3, 0.1),
    tier_users: tuple[int, int, int] = (5_000, 2_000, 300),
) -> list[TenantSpec]:
    """Several tenants per tier (``hot-1``, ``hot-2``, ...) that split their tier's weight evenly.

    Lets a benchmark have many tenants while keeping the hot tier's total share at 60 %.
    """
    specs: list[TenantSpec] = []
    for tier, count, weight, users in zip(
        ("hot", "medium", "quiet"), (hot, medium, quiet), tier_weights, tier_users, strict=True
    ):
        for i in range(count):
            name = tier if count == 1 else f"{tier}-{i + 1}"
            specs.append(TenantSpec(name, weight / count, users))
    return specs


@dataclass
class GeneratorConfig:
    """Everything that shapes the stream; the same config (including ``end``) yields the same events.

    ``total_events`` counts every emitted event, duplicates included: ``round(total * duplicate_ratio)``
    are re-sends and ``round(distinct * late_ratio)`` of the distinct events are late. ``days`` >= 89 is
    clamped to 89 days minus one hour, so no event is older than ingest's 89-day limit.
    """

    seed: int = 0
    end: datetime = field(default_factory=lambda: datetime.now(UTC))
    days: int = 7
    total_events: int = 100_000
    tenants: list[TenantSpec] = field(default_factory=default_tenants)
    event_names: list[str] = field(default_factory=lambda: list(DEFAULT_EVENT_NAMES))
    zipf_exponent: float = 1.1
    late_ratio: float = 0.05
    max_late_days: float = 3.0
    duplicate_ratio: float = 0.01
    # Traffic shape: diurnal sine (peak 15:00 UTC), weekend dip, a few burst hours and burst seconds.
    diurnal_amplitude: float = 0.6
    weekend_factor: float = 0.7
    burst_hours: int = 3
    burst_multiplier: tuple[float, float] = (3.0, 8.0)
    burst_seconds: int = 5
    burst_second_share: float = 0.002
    # Pareto shape of per-user activity: lower = heavier tail (1.5 -> top 1 % of users ~20 % of events).
    user_activity_alpha: float = 1.5

    def __post_init__(self) -> None:
        if self.end.tzinfo is None:
            raise ValueError("end must be timezone-aware")
        self.end = self.end.astimezone(UTC)
        if self.end > datetime.now(UTC) + timedelta(seconds=1):
            raise ValueError("end is in the future; generated timestamps must never be")
        if self.days < 1:
            raise ValueError("days must be >= 1")
        if self.total_events < 0:
            raise ValueError("total_events must be >= 0")
        if not self.tenants or any(t.weight <= 0 or t.users < 1 for t in self.tenants):
            raise ValueError("tenants need positive weights and at least one user each")
        if len({t.name for t in self.tenants}) != len(self.tenants):
            raise ValueError("tenant names must be unique")
        if not self.event_names:
            raise ValueError("event_names must not be empty")
        if not 0.0 <= self.late_ratio <= 1.0:
            raise ValueError("late_ratio must be in [0, 1]")
        if not 0.0 <= self.duplicate_ratio <= 0.5:
            raise ValueError("duplicate_ratio must be in [0, 0.5]")
        if self.max_late_days * 24 <= 1:
            raise ValueError("max_late_days must exceed one hour")

    @property
    def window(self) -> timedelta:
        """Effective window length: ``days``, clamped to ``MAX_AGE_DAYS`` minus a one-hour margin."""
        return min(timedelta(days=self.days), timedelta(days=MAX_AGE_DAYS) - _AGE_MARGIN)

    @property
    def start(self) -> datetime:
        """Inclusive lower bound of every generated timestamp."""
        return self.end - self.window


class GeneratedEvent(msgspec.Struct, omit_defaults=True, gc=False):
    """One event as sent to ``/v1/batch`` plus the tenant its API key binds to.

    Flags are omitted from JSON when False, so a JSONL line is ``{"tenant":..,"payload":{..}}``.
    ``is_late`` on a duplicate mirrors the original event. ``gc=False``: instances never form reference
    cycles, and skipping GC tracking of millions of short-lived events is ~10 % faster.
    """

    tenant: str
    payload: dict[str, Any]
    is_duplicate: bool = False
    is_late: bool = False


# ------------------------------------------------------------------------------------------ generator


def _ceil_ms(dt: datetime) -> int:
    """Milliseconds since epoch, rounded up, so ``ts_ms >= _ceil_ms(x)`` implies ``ts >= x`` exactly."""
    return -((-(dt - _EPOCH) // timedelta(microseconds=1)) // _US_PER_MS)


def _largest_remainder(total: int, weights: list[float]) -> list[int]:
    """Split ``total`` proportionally to ``weights`` into integers that sum exactly to ``total``."""
    wsum = sum(weights)
    if total == 0 or wsum <= 0:
        return [0] * len(weights)
    exact = [total * w / wsum for w in weights]
    counts = [int(x) for x in exact]
    short = total - sum(counts)
    order = sorted(range(len(weights)), key=lambda i: counts[i] - exact[i])  # largest fraction first
    for i in order[:short]:
        counts[i] += 1
    return counts


def _cum(weights: Iterable[float]) -> list[float]:
    return list(itertools.accumulate(weights))


def _hour_prefix(hour_ms: int) -> str:
    return datetime.fromtimestamp(hour_ms / 1000, UTC).strftime("%Y-%m-%dT%H:")


class _Plan:
    """Precomputed tables (hour weights, per-day user populations) so the per-event loop stays cheap."""

    def __init__(self, config: GeneratorConfig) -> None:
        cfg = config
        self.rng = random.Random(cfg.seed)  # noqa: S311 - reproducible synthetic data, never a secret
        self.end_ms = end_ms = _ceil_ms(cfg.end)  # exclusive
        self.start_ms = start_ms = _ceil_ms(cfg.start)  # inclusive
        self.day0_ms = day0_ms = start_ms - start_ms % _MS_PER_DAY
        self.n_days = (end_ms - 1 - day0_ms) // _MS_PER_DAY + 1

        total = cfg.total_events
        self.n_dup = min(round(total * cfg.duplicate_ratio), total // 2)  # each re-send needs an original
        self.n_distinct = total - self.n_dup
        self.n_late = round(self.n_distinct * cfg.late_ratio)
        self.n_ontime = self.n_distinct - self.n_late
        self.max_late_ms = round(cfg.max_late_days * _MS_PER_DAY)

        # Event names and paths: Zipf popularity.
        self.names = list(cfg.event_names)
        self.name_cum = _cum(1.0 / (k**cfg.zipf_exponent) for k in range(1, len(self.names) + 1))
        self.fixed_path = [_FIXED_PATHS.get(n) for n in self.names]
        self.has_amount = [n in _AMOUNT_EVENTS for n in self.names]
        self.paths = list(_PATHS)
        self.path_cum = _cum(1.0 / k for k in range(1, len(self.paths) + 1))

        self._build_users(cfg)
        self._build_hours(cfg)

    def _build_users(self, cfg: GeneratorConfig) -> None:
        """Per UTC day, one population of (tenant, user) records weighted by tenant share x user activity.

        A single weighted draw then picks tenant and user together, keeping tenant shares exact in
        expectation while heavy users dominate within their tenant.
        """
        rng = self.rng
        n_days = self.n_days
        wsum = sum(t.weight for t in cfg.tenants)
        day_recs: list[list[tuple[str, str, str, str, str]]] = [[] for _ in range(n_days)]
        day_w: list[list[float]] = [[] for _ in range(n_days)]
        plans, plan_w = zip(*_PLANS, strict=True)
        countries, country_w = zip(*_COUNTRIES, strict=True)
        devices, device_w = zip(*_DEVICES, strict=True)
        for spec in cfg.tenants:
            n = spec.users
            activity = [min(rng.paretovariate(cfg.user_activity_alpha), 1_000.0) for _ in range(n)]
            u_plan = rng.choices(plans, plan_w, k=n)
            u_country = rng.choices(countries, country_w, k=n)
            u_device = rng.choices(devices, device_w, k=n)
            per_day: list[list[tuple[int, float]]] = [[] for _ in range(n_days)]
            for u, act in enumerate(activity):
                # Heavy users show up most days; the long tail only on one or a few. Spreading `act` over
                # the active days keeps each user's total volume proportional to `act` (Pareto overall).
                k = max(1, min(n_days, round(n_days * min(1.0, 0.1 * act**0.8))))
                per_active_day = act * n_days / k
                for d in rng.sample(range(n_days), k):
                    per_day[d].append((u, per_active_day))
            for d in range(n_days):
                members = per_day[d] or list(enumerate(activity))  # never leave a tenant without users
                members.sort()
                day_total = sum(a for _, a in members)
                scale = spec.weight / wsum / day_total
                for u, act in members:
                    day_recs[d].append((spec.name, f"u-{u}", u_plan[u], u_country[u], u_device[u]))
                    day_w[d].append(act * scale)
        self.day_recs = day_recs
        self.day_cum = [_cum(w) for w in day_w]

    def _build_hours(self, cfg: GeneratorConfig) -> None:
        """Hour buckets over the window with diurnal/weekly weights, burst hours and burst seconds."""
        rng = self.rng
        buckets: list[tuple[int, int, int]] = []  # (hour_ms, lo_offset_ms, hi_offset_ms)
        weights: list[float] = []
        hour = self.start_ms - self.start_ms % _MS_PER_HOUR
        while hour < self.end_ms:
            lo = max(self.start_ms, hour) - hour
            hi = min(self.end_ms, hour + _MS_PER_HOUR) - hour
            hod = (hour // _MS_PER_HOUR) % 24
            weekday = (hour // _MS_PER_DAY + 3) % 7  # 1970-01-01 was a Thursday; Monday = 0
            w = 1.0 + cfg.diurnal_amplitude * math.sin(2 * math.pi * (hod - 9) / 24)
            if weekday >= 5:
                w *= cfg.weekend_factor
            w *= rng.uniform(0.85, 1.15) * (hi - lo) / _MS_PER_HOUR
            buckets.append((hour, lo, hi))
            weights.append(w)
            hour += _MS_PER_HOUR
        for b in rng.sample(range(len(buckets)), min(cfg.burst_hours, len(buckets))):
            weights[b] *= rng.uniform(*cfg.burst_multiplier)

        # Burst seconds: a small share of traffic lands in a handful of single seconds (flash crowds).
        spikes: dict[int, list[tuple[int, int, int]]] = {}
        n_spike = round(self.n_ontime * cfg.burst_second_share) if cfg.burst_seconds > 0 else 0
        if n_spike:
            per = _largest_remainder(n_spike, [1.0] * cfg.burst_seconds)
            for cnt in per:
                b = rng.choices(range(len(buckets)), weights)[0]
                _, lo, hi = buckets[b]
                sec = lo + rng.randrange(hi - lo)
                sec -= sec % _MS_PER_SECOND
                spikes.setdefault(b, []).append((max(sec, lo), min(sec + _MS_PER_SECOND, hi), cnt))
        self.buckets = buckets
        self.hour_weights = weights
        self.bucket_counts = _largest_remainder(self.n_ontime - n_spike, weights)
        self.spikes = spikes


def _distinct_stream(plan: _Plan) -> Iterator[GeneratedEvent]:
    """On-time events in timestamp order, then late events grouped per user like delayed uploads."""
    rng = plan.rng
    rnd = rng.random
    getrandbits = rng.getrandbits
    lognorm = rng.lognormvariate
    choices = rng.choices
    names, name_cum, name_range = plan.names, plan.name_cum, range(len(plan.names))
    paths, path_cum, path_range = plan.paths, plan.path_cum, range(len(plan.paths))
    fixed_path, has_amount = plan.fixed_path, plan.has_amount
    day_recs, day_cum, day0 = plan.day_recs, plan.day_cum, plan.day0_ms
    mmss, mask, bits = _MMSS, _UUID_MASK, _UUID_BITS
    ev = GeneratedEvent

    for (hour, lo, hi), count, spikes in zip(
        plan.buckets,
        plan.bucket_counts,
        (plan.spikes.get(i, ()) for i in range(len(plan.buckets))),
        strict=True,
    ):
        span = hi - lo
        offs = [lo + int(rnd() * span) for _ in range(count)]
        for s_lo, s_hi, s_cnt in spikes:
            offs.extend(s_lo + int(rnd() * (s_hi - s_lo)) for _ in range(s_cnt))
        c = len(offs)
        if not c:
            continue
        offs.sort()
        prefix = _hour_prefix(hour)
        d = (hour - day0) // _MS_PER_DAY
        recs = choices(day_recs[d], cum_weights=day_cum[d], k=c)
        nix = choices(name_range, cum_weights=name_cum, k=c)
        pix = choices(path_range, cum_weights=path_cum, k=c)
        for off, (tenant, did, plan_, country, device), ni, pi in zip(offs, recs, nix, pix, strict=True):
            h = "%032x" % (getrandbits(128) & mask | bits)
            props = {"path": fixed_path[ni] or paths[pi], "plan": plan_, "country": country, "device": device}
            if has_amount[ni]:
                props["amount"] = round(lognorm(3.0, 0.8), 2)
            yield ev(
                tenant,
                {
                    "event": names[ni],
                    "distinct_id": did,
                    "timestamp": f"{prefix}{mmss[off // 1000]}.{off % 1000:03d}000+00:00",
                    "event_id": f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}",
                    "properties": props,
                },
            )

    if not plan.n_late:
        return
    # end_ms = ceil(end), so [end_ms - max_late, end_ms - 1 - 1 h] lies within [end - max_late, end - 1 h).
    late_lo = max(plan.start_ms, plan.end_ms - plan.max_late_ms)
    late_span = plan.end_ms - 1 - _MS_PER_HOUR - late_lo + 1
    items: list[tuple[float, int, tuple[str, str, str, str, str], int, int]] = []
    group_key: dict[tuple[str, str], float] = {}
    for _ in range(plan.n_late):
        ts = late_lo + int(rnd() * late_span)
        d = (ts - day0) // _MS_PER_DAY
        rec = choices(day_recs[d], cum_weights=day_cum[d])[0]
        key = group_key.setdefault((rec[0], rec[1]), rnd())
        items.append((key, ts, rec, choices(name_range, cum_weights=name_cum)[0], int(rnd() * len(paths))))
    items.sort(key=lambda it: (it[0], it[1]))
    prefixes: dict[int, str] = {}
    for _, ts, (tenant, did, plan_, country, device), ni, pi in items:
        hour = ts - ts % _MS_PER_HOUR
        prefix = prefixes.get(hour) or prefixes.setdefault(hour, _hour_prefix(hour))
        off = ts - hour
        h = "%032x" % (getrandbits(128) & mask | bits)
        props = {"path": fixed_path[ni] or paths[pi], "plan": plan_, "country": country, "device": device}
        if has_amount[ni]:
            props["amount"] = round(lognorm(3.0, 0.8), 2)
        yield ev(
            tenant,
            {
                "event": names[ni],
                "distinct_id": did,
                "timestamp": f"{prefix}{mmss[off // 1000]}.{off % 1000:03d}000+00:00",
                "event_id": f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}",
                "properties": props,
            },
            False,
            True,
        )


def generate(config: GeneratorConfig) -> Iterator[GeneratedEvent]:
    """Yield ``config.total_events`` events lazily; identical output for an identical config.

    Duplicates are copies of one of the last 4096 emitted events (SDK retries re-send recent batches),
    inserted right after a randomly chosen distinct event.
    """
    plan = _Plan(config)
    rng = plan.rng
    rnd = rng.random
    dup_after = set(rng.sample(range(1, plan.n_distinct + 1), plan.n_dup)) if plan.n_dup else set()
    ring_size = 4096
    ring: list[GeneratedEvent | None] = [None] * ring_size
    mask = ring_size - 1
    for i, ev in enumerate(_distinct_stream(plan), 1):
        yield ev
        ring[i & mask] = ev
        if i in dup_after:
            src = ring[(i - int(rnd() * min(i, ring_size))) & mask]
            assert src is not None
            p = src.payload
            yield GeneratedEvent(src.tenant, {**p, "properties": dict(p["properties"])}, True, src.is_late)


# --------------------------------------------------------------------------------------- ground truth


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


# -------------------------------------------------------------------------------------------- writers

_ENCODER = msgspec.json.Encoder()
_DECODER = msgspec.json.Decoder(GeneratedEvent)


def write_jsonl(events: Iterable[GeneratedEvent], path: str | os.PathLike[str]) -> int:
    """Write one ``{"tenant":..,"payload":{..}}`` line per event so a run can be replayed; returns count.

    ``is_duplicate`` / ``is_late`` are added to a line only when true, which keeps replays labelled.
    """
    n = 0
    it = iter(events)
    with open(path, "wb") as f:
        while chunk := list(itertools.islice(it, 4096)):
            f.write(_ENCODER.encode_lines(chunk))
            n += len(chunk)
    return n


def read_jsonl(path: str | os.PathLike[str]) -> Iterator[GeneratedEvent]:
    """Stream events back from ``write_jsonl`` output (blank lines ignored)."""
    with open(path, "rb") as f:
        for line in f:
            if line.strip():
                yield _DECODER.decode(line)


def write_ground_truth(gt: GroundTruth, path: str | os.PathLike[str]) -> None:
    """Persist ``gt`` next to the events so a later check needs no regeneration."""
    Path(path).write_text(gt.to_json(), encoding="utf-8")


# ----------------------------------------------------------------------------------------- HTTP send

# Retried: throttling/unavailable plus gateway errors; event_ids make re-sending the same body safe.
_RETRY_STATUSES = frozenset({429, 502, 503, 504})


@dataclass
class SendReport:
    """Outcome of ``send_http``; ``http_errors`` counts every non-2xx response, retried or not."""

    batches: int = 0
    batches_ok: int = 0
    batches_failed: int = 0
    events_sent: int = 0
    events_failed: int = 0
    accepted: int = 0
    rejected: int = 0
    retries: int = 0
    http_errors: int = 0
    connection_errors: int = 0
    status_counts: dict[int, int] = field(default_factory=dict)
    rejected_samples: list[Any] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    elapsed_s: float = 0.0

    @property
    def events_per_second(self) -> float:
        """Events in successfully posted batches per wall-clock second."""
        return self.events_sent / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def _error(self, msg: str) -> None:
        if len(self.errors) < 20:
            self.errors.append(msg)


def _retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or HTTP-date); None if absent/invalid."""
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _backoff(attempt: int) -> float:
    """Exponential backoff with full jitter for failures that carry no Retry-After."""
    return random.uniform(0, min(5.0, 0.1 * 2**attempt))  # noqa: S311 - retry jitter, not a secret


async def _post_batch(
    client: httpx.AsyncClient,
    url: str,
    key: str,
    payloads: list[dict[str, Any]],
    report: SendReport,
    max_retry_seconds: float,
) -> None:
    """POST one batch, retrying the identical events until accepted, refused, or out of time budget.

    ``sent_at`` is refreshed on every attempt: ingest shifts event times by (receive time - sent_at) to
    undo client clock skew, so a stale sent_at on a retry would move events by the retry delay (and
    across UTC day boundaries, breaking the ground truth). Idempotency comes from the event_ids.
    """
    loop = asyncio.get_running_loop()
    batch_json = orjson.dumps(payloads)
    headers = {"X-API-Key": key, "Content-Type": "application/json"}
    deadline = loop.time() + max_retry_seconds
    attempt = 0
    while True:
        try:
            sent_at = datetime.now(UTC).isoformat(timespec="milliseconds").encode()
            body = b'{"batch":' + batch_json + b',"sent_at":"' + sent_at + b'"}'
            resp = await client.post(url, content=body, headers=headers)
        except httpx.TransportError as exc:
            report.connection_errors += 1
            delay = _backoff(attempt)
            reason = f"{type(exc).__name__}: {exc}"
        else:
            status = resp.status_code
            report.status_counts[status] = report.status_counts.get(status, 0) + 1
            if 200 <= status < 300:
                try:
                    doc = resp.json()
                except ValueError:
                    doc = None
                doc = doc if isinstance(doc, dict) else {}
                rejected = doc.get("rejected")
                rejected = rejected if isinstance(rejected, list) else []
                accepted = doc.get("accepted")
                report.accepted += accepted if isinstance(accepted, int) else len(payloads) - len(rejected)
                report.rejected += len(rejected)
                room = 20 - len(report.rejected_samples)
                if room > 0:
                    report.rejected_samples.extend(rejected[:room])
                report.batches_ok += 1
                report.events_sent += len(payloads)
                return
            report.http_errors += 1
            reason = f"HTTP {status}: {resp.text[:200]}"
            if status not in _RETRY_STATUSES:
                break
            ra = _retry_after(resp.headers.get("Retry-After"))
            delay = ra if ra is not None else _backoff(attempt)
        attempt += 1
        if loop.time() + delay > deadline:
            reason = f"gave up after {attempt} attempts: {reason}"
            break
        report.retries += 1
        await asyncio.sleep(delay)
    report.batches_failed += 1
    report.events_failed += len(payloads)
    report._error(reason)


async def send_http(
    events: Iterable[GeneratedEvent],
    base_url: str,
    keys: dict[str, str],
    batch_size: int = 500,
    concurrency: int = 8,
    client: httpx.AsyncClient | None = None,
    *,
    max_retry_seconds: float = 60.0,
) -> SendReport:
    """Replay ``events`` against ``POST {base_url}/v1/batch``, one API key per tenant.

    Events are grouped per tenant into batches of ``batch_size`` in stream order; batches are dispatched
    FIFO to ``concurrency`` workers (so with concurrency > 1 consecutive batches of a tenant may land out
    of order; use 1 for strict ordering). 429/502/503/504 and connection errors are retried with the same
    events (only ``sent_at`` is refreshed), honouring ``Retry-After``, for at most ``max_retry_seconds``
    per batch; other non-2xx responses fail the batch. Raises KeyError for a tenant missing from ``keys``.
    """
    if batch_size < 1 or concurrency < 1:
        raise ValueError("batch_size and concurrency must be >= 1")
    url = base_url.rstrip("/") + "/v1/batch"
    report = SendReport()
    own_client = client is None
    if client is None:
        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        client = httpx.AsyncClient(timeout=httpx.Timeout(30.0), limits=limits)
    http = client
    queue: asyncio.Queue[tuple[str, list[dict[str, Any]]] | None] = asyncio.Queue(maxsize=concurrency * 2)

    async def worker() -> None:
        while (item := await queue.get()) is not None:
            tenant, payloads = item
            try:
                await _post_batch(http, url, keys[tenant], payloads, report, max_retry_seconds)
            except Exception as exc:  # keep the pool alive: one bad batch must not stall the replay
                report.batches_failed += 1
                report.events_failed += len(payloads)
                report._error(f"{type(exc).__name__}: {exc}")

    started = time.perf_counter()
    workers = [asyncio.create_task(worker()) for _ in range(concurrency)]
    try:
        buffers: dict[str, list[dict[str, Any]]] = {}
        for ev in events:
            buf = buffers.get(ev.tenant)
            if buf is None:
                if ev.tenant not in keys:
                    raise KeyError(f"no API key for tenant {ev.tenant!r}")
                buf = buffers[ev.tenant] = []
            buf.append(ev.payload)
            if len(buf) >= batch_size:
                report.batches += 1
                await queue.put((ev.tenant, buf))
                buffers[ev.tenant] = []
        for tenant, buf in buffers.items():
            if buf:
                report.batches += 1
                await queue.put((tenant, buf))
        for _ in workers:
            await queue.put(None)
        await asyncio.gather(*workers)
    finally:
        for w in workers:
            w.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
        if own_client:
            await http.aclose()
        report.elapsed_s = time.perf_counter() - started
    return report


def send_http_sync(
    events: Iterable[GeneratedEvent],
    base_url: str,
    keys: dict[str, str],
    batch_size: int = 500,
    concurrency: int = 8,
    *,
    max_retry_seconds: float = 60.0,
) -> SendReport:
    """Blocking wrapper around ``send_http`` for scripts without an event loop."""
    return asyncio.run(
        send_http(events, base_url, keys, batch_size, concurrency, max_retry_seconds=max_retry_seconds)
    )


# ------------------------------------------------------------------------------------------------ CLI


def _parse_end(value: str) -> datetime:
    dt = datetime.fromisoformat(value)
    if dt.tzinfo is None:
        raise argparse.ArgumentTypeError("--end needs a UTC offset, e.g. 2026-11-20T00:00:00+00:00")
    return dt


def main(argv: list[str] | None = None) -> int:
    """Generate a dataset plus its ground truth into ``--out`` and print a summary."""
    ap = argparse.ArgumentParser(
        prog="python -m pulseops.generator",
        description="Generate a seeded, skewed PulseOps event dataset plus its ground truth.",
    )
    ap.add_argument("--events", type=int, default=100_000, help="events to emit, duplicates included")
    ap.add_argument("--days", type=int, default=7, help="window length in days (clamped to 89 days - 1 h)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--out", type=Path, required=True, help="directory for events.jsonl and ground_truth.json"
    )
    ap.add_argument(
        "--end", type=_parse_end, default=None, help="window end (ISO-8601 with offset); default now"
    )
    ap.add_argument("--late-ratio", type=float, default=0.05)
    ap.add_argument("--duplicate-ratio", type=float, default=0.01)
    args = ap.parse_args(argv)

    cfg = GeneratorConfig(
        seed=args.seed,
        days=args.days,
        total_events=args.events,
        late_ratio=args.late_ratio,
        duplicate_ratio=args.duplicate_ratio,
        **({"end": args.end} if args.end is not None else {}),
    )
    args.out.mkdir(parents=True, exist_ok=True)
    events_path = args.out / "events.jsonl"
    truth_path = args.out / "ground_truth.json"

    gt = GroundTruth()
    n = dups = late = 0
    gen_s = 0.0
    started = time.perf_counter()
    it = generate(cfg)
    gc.disable()  # nothing here creates cycles; collections over millions of live objects only cost time
    try:
        with open(events_path, "wb") as f:
            while True:
                t0 = time.perf_counter()
                chunk = list(itertools.islice(it, 8192))
                gen_s += time.perf_counter() - t0
                if not chunk:
                    break
                f.write(_ENCODER.encode_lines(chunk))
                for ev in chunk:
                    gt.add(ev)
                    dups += ev.is_duplicate
                    late += ev.is_late and not ev.is_duplicate
                n += len(chunk)
    finally:
        gc.enable()
    write_ground_truth(gt, truth_path)
    total_s = time.perf_counter() - started

    rate = n / gen_s if gen_s > 0 else float("inf")
    shares = ", ".join(f"{t}={c / max(gt.total, 1):.1%}" for t, c in sorted(gt.tenant_totals.items()))
    print(f"window    {cfg.start.isoformat()} .. {cfg.end.isoformat()} (seed {cfg.seed})")
    print(f"events    {n} emitted, {gt.total} distinct, {dups} duplicates, {late} late")
    print(f"tenants   {shares}")
    print(f"rate      {rate:,.0f} events/s generation ({gen_s:.2f} s); {total_s:.2f} s incl. writing + truth")
    print(f"wrote     {events_path}, {truth_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
