"""Live counts over graphql-transport-ws: one value per second per subscription."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator
from datetime import UTC, datetime, timedelta
from functools import partial

import strawberry

from api.graphql.arguments import Ctx, ProjectId
from api.graphql.errors import ClientError
from api.graphql.events.types import LiveEventCount
from warehouse.live import live_counts
from warehouse.tenants import key_active

KEY_RECHECK_S = 10.0


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
                if not await ctx.run(lambda conn: key_active(conn, key.id)):
                    raise ClientError("the API key was revoked", "UNAUTHENTICATED")
                checked = time.monotonic()
            now = datetime.now(UTC)
            second = now.replace(microsecond=0) - timedelta(seconds=1)
            counts = partial(live_counts, project_id=project.id, second=second, day=now.date())
            events, minute, today = await ctx.run(counts)
            yield LiveEventCount(second=second, events=events, events_last_minute=minute, events_today=today)
            await asyncio.sleep(max(0.0, interval - (datetime.now(UTC) - now).total_seconds()))
