"""``python -m pulseops.generator``: a seeded data set and its ground truth written into one directory."""

from __future__ import annotations

import argparse
import gc
import itertools
import time
from datetime import datetime
from pathlib import Path

from pulseops.generator.files import _ENCODER, write_ground_truth
from pulseops.generator.model import GeneratorConfig
from pulseops.generator.stream import generate
from pulseops.generator.truth import GroundTruth


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
