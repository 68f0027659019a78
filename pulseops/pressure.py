"""The embedded broker's memory pressure, as a file the keeper writes and the ingest processes read.

Why a file: the embedded Tansu holds every record in memory until the keeper (pulseops/broker.py) restarts
it, which it does only once the landing workers committed (nearly) everything. When ingest outruns landing
for long, that moment never comes and the broker grows without bound. So while the broker is over its limit
and too much is unlanded, the keeper marks pressure here and the ingest API answers 503 with Retry-After
(api/ingest/service.py) until the workers caught up and the broker was recycled: bounded memory for a short
pause, the backpressure a client already handles. Keeper and API run on one host (the embedded broker exists
only there) and share the state dir; a real Kafka or Redpanda never writes this file.

The file holds an expiry (the keeper refreshes it on every pass): a keeper that died leaves no pressure behind
for longer than that.
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path

FILE_NAME = "broker-pressure"


def pressure_path(state_dir: str | Path) -> Path:
    return Path(state_dir) / FILE_NAME


def raise_pressure(path: Path, for_s: float) -> None:
    """Mark pressure until `for_s` seconds from now (wall clock: other processes read it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(f"{time.time() + for_s:.3f}\n")
    os.replace(tmp, path)


def release_pressure(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


class PressureGauge:
    """What an ingest process reads on every request: the file is looked at most every `interval_s`."""

    def __init__(self, path: Path, interval_s: float = 0.25) -> None:
        self.path = path
        self.interval_s = interval_s
        self._checked = 0.0
        self._until = 0.0

    def active(self) -> bool:
        now = time.monotonic()
        if now - self._checked >= self.interval_s:
            self._checked = now
            try:
                self._until = float(self.path.read_text())
            except (FileNotFoundError, ValueError):
                self._until = 0.0
        return self._until > time.time()
