"""When the embedded broker is idle enough to recycle at no cost: the keeper's (pulseops/broker.py) third reason.

Why: the keeper's limits (resident size, stored records) recycle Tansu only once it is large, and then mostly
under load, when a recycle costs something: requests wait for the new broker (api/ingest/publisher.py, up to
kafka.outage_wait_ms), the landing worker restarts beside live traffic and the spool re-publishes what was not
landed. Below the limits the stored batches stay, and Tansu lists all of them on every produce and fetch, so
ingest after a busy period runs slower than before it for as long as that broker lives:
benchmarks/sustained.py at medium (docs/benchmarks/2026-12-07-suite-medium-b.md): single events after 10 M
batched events 1,750 req/s against 2,922 before (0.60x), Tansu 47 % of a core against 27 %, 0 recycles (the
broker held ~70 k records, under the 200,000 limit).

A quiet moment is when a recycle is free: the landing group committed everything (nothing for the spool to
publish again) and no record arrived for `kafka.embedded_idle_recycle_s`, so no request is in flight and none
waits for a produce. Then the keeper recycles a broker that holds at least `kafka.embedded_idle_recycle_records`
records; a record count is an upper bound of the batches (what Tansu's CPU follows, pulseops/broker_batches.py)
that costs the keeper nothing, and the floor keeps an idle system with a trickle of events from recycling after
every lull. "No record arrived" is read from the stored count (the sum of high watermarks, which only grows on
one broker) at the keeper's passes, so the quiet is measured from the first pass that saw the count, not from
the last produce: never shorter than the setting, up to one check interval longer.
"""

from __future__ import annotations

import time
from collections.abc import Callable

LANDING_S = 10.0  # the landing group counts as catching up while its unlanded count moved this recently


class IdleWatch:
    """Follows one broker's stored count across the keeper's passes; `due` says when an idle recycle is free."""

    def __init__(self, quiet_s: float, min_records: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.quiet_s = quiet_s
        self.min_records = min_records
        self.clock = clock
        self.stored: int | None = None  # the count at the last pass (None: a new broker, or unknown)
        self.since = 0.0  # when the count was first seen at its current value
        self.unlanded: int | None = None  # at the last pass
        self.moved = 0.0  # when the unlanded count last changed

    @property
    def enabled(self) -> bool:
        return self.quiet_s > 0 and self.min_records > 0

    def reset(self) -> None:
        """A new broker (or an unknown count): its quiet starts at the next pass."""
        self.stored = self.unlanded = None

    def observe(self, stored: int, unlanded: int | None) -> None:
        now = self.clock()
        if stored != self.stored:
            self.stored, self.since = stored, now
        if unlanded != self.unlanded:
            self.unlanded, self.moved = unlanded, now

    def due(self) -> bool:
        """The count held still for `quiet_s` and everything on it is landed (after `observe`)."""
        return self._big() and self.unlanded == 0 and self.clock() - self.since >= self.quiet_s

    def pending(self) -> bool:
        """A recycle may be due soon: big enough and all landed, or the group catching up. The keeper keeps its
        passes at the check interval meanwhile instead of backing off (a backed-off pass up to 30 s late would
        recycle when traffic may be back); a group whose commits stopped for LANDING_S short of the end lets it
        back off again."""
        landing = self.unlanded is not None and self.clock() - self.moved < LANDING_S
        return self._big() and (self.unlanded == 0 or landing)

    def _big(self) -> bool:
        return self.enabled and self.stored is not None and self.stored >= self.min_records
