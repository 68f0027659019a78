"""Aggregates: 15-minute event rollups, per-user activity bitmaps, daily_aggregates, metric definitions.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

UPGRADE = r"""
-- Every real time zone offset is a multiple of 15 minutes (Asia/Kathmandu +05:45, Australia/Lord_Howe
-- +10:30/+11:00), so any local hour or day is a whole number of 15-minute UTC buckets: rollups at this grain
-- answer hourly and daily series in any zone exactly, DST days included.
CREATE TABLE event_rollups (
    project_id  uuid NOT NULL,
    bucket      timestamptz NOT NULL,
    event_name  text NOT NULL,
    events      bigint NOT NULL,
    PRIMARY KEY (project_id, bucket, event_name)
);
CREATE INDEX event_rollups_bucket_idx ON event_rollups (bucket);

-- Exact unique users in any zone: per user and UTC day, a 96-bit map of the 15-minute slots with activity.
-- A local day (or week, month) is a set of slots on one or more UTC days; a user counts once if any of
-- their slots falls inside it.
CREATE TABLE user_activity (
    project_id   uuid NOT NULL,
    day          date NOT NULL,
    distinct_id  text NOT NULL,
    slots        bit(96) NOT NULL,
    events       integer NOT NULL,
    PRIMARY KEY (project_id, day, distinct_id)
);
CREATE INDEX user_activity_day_idx ON user_activity (day);

-- Bits of the 15-minute slots of UTC day `d` inside [s, e).
CREATE FUNCTION slot_mask(d date, s timestamptz, e timestamptz) RETURNS bit(96)
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN hi <= lo THEN repeat('0', 96)::bit(96)
                ELSE (repeat('1', hi - lo) || repeat('0', 96 - (hi - lo)))::bit(96) >> lo END
    FROM (
        SELECT greatest(0, least(96, ceil(extract(epoch FROM s - (d::timestamp AT TIME ZONE 'UTC')) / 900)))::int AS lo,
               greatest(0, least(96, ceil(extract(epoch FROM e - (d::timestamp AT TIME ZONE 'UTC')) / 900)))::int AS hi
    ) b
$$;

-- Custom metrics: event filter, aggregation and dimensions (property keys). The GraphQL API manages them.
CREATE TABLE metric_definitions (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    org_id       uuid NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
    project_id   uuid NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    name         text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    description  text NOT NULL DEFAULT '',
    event_name   text,
    filters      jsonb NOT NULL DEFAULT '{}'::jsonb CHECK (jsonb_typeof(filters) = 'object'),
    aggregation  text NOT NULL CHECK (aggregation IN ('count', 'unique_users', 'sum', 'avg')),
    property     text,
    dimensions   text[] NOT NULL DEFAULT '{}' CHECK (cardinality(dimensions) <= 5),
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    UNIQUE (project_id, name),
    CHECK ((aggregation IN ('sum', 'avg')) = (property IS NOT NULL))
);

-- One row per org, project, metric, UTC date and dimension values. Built-in metrics: 'events' (dimensions {}
-- or {"event": name}) and 'unique_users'; custom ones are 'custom:<definition id>'. `events` is how many raw
-- events contributed and `sum` the numeric total, so avg/sum re-aggregate exactly over several days.
CREATE TABLE daily_aggregates (
    org_id      uuid NOT NULL,
    project_id  uuid NOT NULL,
    metric      text NOT NULL,
    date        date NOT NULL,
    dimensions  jsonb NOT NULL DEFAULT '{}'::jsonb,
    value       double precision NOT NULL,
    events      bigint NOT NULL,
    sum         double precision,
    PRIMARY KEY (project_id, date, metric, dimensions)
);
CREATE INDEX daily_aggregates_date_idx ON daily_aggregates (date);
"""

DOWNGRADE = r"""
DROP TABLE IF EXISTS daily_aggregates;
DROP TABLE IF EXISTS metric_definitions;
DROP FUNCTION IF EXISTS slot_mask(date, timestamptz, timestamptz);
DROP TABLE IF EXISTS user_activity;
DROP TABLE IF EXISTS event_rollups;
"""


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute(DOWNGRADE)
