"""The data-set model of the event generator: its tables (event names, paths, plans, countries, devices),
the tenants and the configuration that shapes a stream, and the event record itself (pulseops/generator/)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec

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
