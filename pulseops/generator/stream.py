"""The generator's event loops: on-time events in timestamp order, then late events, plus exact re-sends.

Speed is the point here (the benchmarks and the demo replay millions of events): each loop binds what it
touches to local variables and builds its payload inline rather than through a per-event helper call.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from datetime import UTC, datetime

from pulseops.generator.model import (
    _MMSS,
    _MS_PER_DAY,
    _MS_PER_HOUR,
    _UUID_BITS,
    _UUID_MASK,
    GeneratedEvent,
    GeneratorConfig,
)
from pulseops.generator.plan import _Plan


def _hour_prefix(hour_ms: int) -> str:
    return datetime.fromtimestamp(hour_ms / 1000, UTC).strftime("%Y-%m-%dT%H:")


def _distinct_stream(plan: _Plan) -> Iterator[GeneratedEvent]:
    """On-time events in timestamp order, then late events grouped per user like delayed uploads.

    Lazy: the late loop draws from the shared RNG only once the on-time loop is done, as one loop would.
    """
    return itertools.chain(_on_time_stream(plan), _late_stream(plan))


def _on_time_stream(plan: _Plan) -> Iterator[GeneratedEvent]:
    """Every hour bucket's events (burst seconds included), sorted by timestamp within the hour."""
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


def _late_stream(plan: _Plan) -> Iterator[GeneratedEvent]:
    """Late events (1 h .. max_late_days old when sent) grouped per user, like delayed mobile uploads."""
    rng = plan.rng
    rnd = rng.random
    getrandbits = rng.getrandbits
    lognorm = rng.lognormvariate
    choices = rng.choices
    names, name_cum, name_range = plan.names, plan.name_cum, range(len(plan.names))
    paths, fixed_path, has_amount = plan.paths, plan.fixed_path, plan.has_amount
    day_recs, day_cum, day0 = plan.day_recs, plan.day_cum, plan.day0_ms
    mmss, mask, bits = _MMSS, _UUID_MASK, _UUID_BITS
    ev = GeneratedEvent

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
