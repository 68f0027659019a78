"""Live counts for the `liveEventCounts` subscription: what landed in the last second, minute and UTC day."""

from __future__ import annotations

import uuid
from datetime import date, datetime

import psycopg

_LIVE = """
SELECT count(*) FILTER (WHERE event_time >= %(sec)s AND event_time < %(sec)s + interval '1 second'),
       count(*) FILTER (WHERE event_time >= %(sec)s - interval '59 seconds'),
       (SELECT coalesce(sum(events), 0) FROM landed_days WHERE project_id = %(p)s AND day = %(day)s)
FROM events
WHERE project_id = %(p)s AND event_time >= %(sec)s - interval '59 seconds'
  AND event_time < %(sec)s + interval '1 second'
"""


def live_counts(
    conn: psycopg.Connection, project_id: uuid.UUID, second: datetime, day: date
) -> tuple[int, int, int]:
    """Events landed in the second starting at `second`, in the minute ending with it, and on UTC `day`
    (from the landing ledger, so the day total costs no scan)."""
    return conn.execute(_LIVE, {"p": project_id, "sec": second, "day": day}).fetchone()
