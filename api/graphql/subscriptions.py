"""Live counts over graphql-transport-ws: one value per second per subscription."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator
from datetime import UTC, datetime, timedelta

import strawberry

from api.graphql.errors import ClientError
from api.graphql.queries import Ctx, ProjectId
from api.graphql.types import LiveEventCount

_LIVE = """
SELECT count(*) FILTER (WHERE event_time >= %(sec)s AND event_time < %(sec)s + interval '1 second'),
       count(*) FILTER (WHERE event_time >= %(sec)s - interval '59 seconds'),
       (SELECT coalesce(sum(events), 0) FROM landed_days WHERE project_id = %(p)s AND day = %(day)s)
FROM events
WHERE project_id = %(p)s AND event_time >= %(sec)s - interval '59 seconds'
  AND event_time < %(sec)s + interval '1 second'
"""


KEY_RECHECK_S = 10.0


def _key_active(conn, key_id) -> bool:
    row = conn.execute("SELECT revoked_at IS NULL FROM api_keys WHERE id = %s", (key_id,)).fetchone()
    return bool(row and row[0])


@strawberry.type
class Subscription:
    @strawberry.subscription(
        description="Every second: events of the last complete second, of the last minute, and of the UTC day, "
        "as landed so far (an event shows up within the landing latency, typically under a second)."
    )
    async def live_event_counts(
        self, info: Ctx, project_id: ProjectId
    ) -> AsyncGenerator[LiveEventCount, None]:
        ctx = info.context
        project = await ctx.project(project_id)
        key = await ctx.key()
        interval = ctx.settings.live_interval_s
        checked = time.monotonic()
        while True:
            if time.monotonic() - checked >= KEY_RECHECK_S:  # a revoked key stops streaming within this bound
                if not await ctx.run(lambda conn: _key_active(conn, key.id)):
                    raise ClientError("the API key was revoked", "UNAUTHENTICATED")
                checked = time.monotonic()
            now = datetime.now(UTC)
            second = now.replace(microsecond=0) - timedelta(seconds=1)
            params = {"p": project.id, "sec": second, "day": now.date()}
            events, minute, today = await ctx.run(
                lambda conn, params=params: conn.execute(_LIVE, params).fetchone()
            )
            yield LiveEventCount(second=second, events=events, events_last_minute=minute, events_today=today)
            await asyncio.sleep(max(0.0, interval - (datetime.now(UTC) - now).total_seconds()))
