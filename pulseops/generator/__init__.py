"""Deterministic, skewed event generator: the demo data of `pulseops up --demo`, benchmarks and correctness drills.

Real analytics traffic is not uniform, and the interesting failures (hot partitions, late-arriving
uploads, client retries) only show up under skew. This package produces a seeded stream that mimics it:

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

# One module per concern (issue 14): model.py (tables, tenants, config, the event record), plan.py (the
# precomputed tables of one config), stream.py (the event loops), truth.py (GroundTruth), files.py (JSONL and
# ground-truth files), send.py (HTTP replay), command.py (the CLI). This package re-exports their public names,
# so `from pulseops.generator import ...` and benchmarks/generator.py keep working.
from pulseops.generator.command import main
from pulseops.generator.files import read_jsonl, write_ground_truth, write_jsonl
from pulseops.generator.model import (
    DEFAULT_EVENT_NAMES,
    MAX_AGE_DAYS,
    GeneratedEvent,
    GeneratorConfig,
    TenantSpec,
    default_tenants,
    tiered_tenants,
)
from pulseops.generator.send import SendReport, send_http, send_http_sync
from pulseops.generator.stream import generate
from pulseops.generator.truth import GroundTruth, ground_truth_for

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
