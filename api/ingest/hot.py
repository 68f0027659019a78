"""Which projects send far more than the others, in this API process: their messages go to the overflow
topic (`kafka.topic_overflow`, landed by a process of its own: streams/__main__.py), so landing of quiet
projects never shares a worker with a hot one's, as PostHog's capture routes over-limit keys to an overflow
topic. Without one they go to the raw topic's reserved partitions (`kafka.hot_partitions`), landed in a lane
of the same worker (streams/lanes.py). Detection is per process and cheap (a counter per project and second),
with a hold time so a project does not flap between the two.
"""

from __future__ import annotations

import time
import uuid


class HotProjects:
    def __init__(self, events_per_s: float, hold_s: float = 10.0) -> None:
        self.events_per_s = events_per_s
        self.hold_s = hold_s
        self._windows: dict[uuid.UUID, list[float]] = {}  # project -> [window start, events in window]
        self._hot_until: dict[uuid.UUID, float] = {}

    def note(self, project_id: uuid.UUID, events: int) -> bool:
        """Count `events` accepted for the project; True while it is hot (routed to the reserved partitions)."""
        if self.events_per_s <= 0:
            return False
        now = time.monotonic()
        window = self._windows.get(project_id)
        if window is None or now - window[0] >= 1.0:
            if len(self._windows) > 100_000:  # bound memory: windows older than a second carry nothing
                self._windows.clear()
            window = self._windows[project_id] = [now, 0.0]
        window[1] += events
        if window[1] > self.events_per_s:
            self._hot_until[project_id] = now + self.hold_s
            return True
        until = self._hot_until.get(project_id)
        if until is None:
            return False
        if until <= now:
            del self._hot_until[project_id]
            return False
        return True
