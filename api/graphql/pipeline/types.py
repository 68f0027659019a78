"""Types of the pipeline's health: freshness, dead letters, late arrivals and the build of each landed day."""

from __future__ import annotations

from datetime import date, datetime

import strawberry

from api.graphql.types import Long


@strawberry.type(description="A message the landing workers could not land, as it was received.")
class DeadLetter:
    id: strawberry.ID = strawberry.field(description="The dead letter's id.")
    dead_at: datetime = strawberry.field(description="When the landing worker gave up on it.")
    reason: str = strawberry.field(description="Stable snake_case reason code, e.g. invalid_json.")
    detail: str = strawberry.field(description="What exactly was wrong, if known.")
    payload: str = strawberry.field(description="The original bytes as text, cut at 4 KiB.")
    payload_bytes: int = strawberry.field(description="Size of the original payload.")
    source_topic: str = strawberry.field(description="Kafka topic it was read from.")
    source_partition: int = strawberry.field(description="Partition of that topic.")
    source_offset: Long = strawberry.field(description="Offset in that partition.")


@strawberry.type(description="A landed UTC day and the aggregate build (Dagster run) that last rebuilt it.")
class DayBuild:
    date: date = strawberry.field(description="The UTC day.")
    events: Long = strawberry.field(description="Events landed for the day.")
    landed_version: Long = strawberry.field(description="Bumped by every landing transaction of the day.")
    built_version: Long | None = strawberry.field(description="Null: never built.")
    built_at: datetime | None = strawberry.field(description="When the last build ran.")
    run_id: str | None = strawberry.field(description="Dagster run id of the build; null outside Dagster.")
    stale: bool = strawberry.field(description="Data landed after the build (a rebuild is due).")
    last_landed_at: datetime = strawberry.field(description="When data of the day last landed.")
    build_failures: int = strawberry.field(
        description="Rebuild runs in a row that left this day's data unbuilt (failed or killed); 0 when fine."
    )
    build_error: str | None = strawberry.field(description="Why the last of those runs failed.")
    next_attempt_at: datetime | None = strawberry.field(
        description="When the rebuild is retried; null with buildFailures > 0: given up until new data lands."
    )


@strawberry.type
class DeadLetterCount:
    reason: str = strawberry.field(description="Reason code (see docs/ingest.md).")
    count: Long = strawberry.field(description="Messages.")


@strawberry.type(description="Events of one UTC day and how many of them arrived late.")
class LateArrivalDay:
    date: date = strawberry.field(description="UTC date of the events.")
    events: Long = strawberry.field(description="Events of the day.")
    late: Long = strawberry.field(
        description="Of which arrived more than the late threshold after their event time."
    )
    share: float = strawberry.field(description="late / events.")


@strawberry.type(description="Health of the pipeline for one project.")
class IngestionHealth:
    last_landed_at: datetime | None = strawberry.field(description="Last time rows of the project landed.")
    seconds_since_last_landed: float | None = strawberry.field(description="Seconds since then.")
    events_today: Long = strawberry.field(description="Events of the current UTC day landed so far.")
    consumer_lag: Long | None = strawberry.field(
        description="Messages of all tenants waiting in the broker for the landing workers; null if unknown."
    )
    dead_letters_last_24h: list[DeadLetterCount] = strawberry.field(
        description="Dead-lettered messages of the project by reason."
    )
    late_arrivals: list[LateArrivalDay] = strawberry.field(description="Last 7 UTC days.")
    days_awaiting_rebuild: int = strawberry.field(
        description="Past days whose aggregates miss late data (answers stay exact meanwhile)."
    )
