"""The generator's plan: every table the per-event loop needs (hour weights, burst seconds, per-day user
populations), computed once per config so the loop of pulseops/generator/stream.py stays cheap."""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Iterable
from datetime import datetime, timedelta

from pulseops.generator.model import (
    _AMOUNT_EVENTS,
    _COUNTRIES,
    _DEVICES,
    _EPOCH,
    _FIXED_PATHS,
    _MS_PER_DAY,
    _MS_PER_HOUR,
    _MS_PER_SECOND,
    _PATHS,
    _PLANS,
    _US_PER_MS,
    GeneratorConfig,
)


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
