"""Initial schema: tenants, API keys, day-partitioned raw events, dedup ledger, landed days, dead letters.

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


UPGRADE = r"""
CREATE TABLE orgs (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    slug        text NOT NULL UNIQUE CHECK (slug ~ '^[a-z0-9][a-z0-9-]{0,62}$'),
    name        text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE projects (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    org_id      uuid NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
    slug        text NOT NULL CHECK (slug ~ '^[a-z0-9][a-z0-9-]{0,62}$'),
    name        text NOT NULL,
    timezone    text NOT NULL DEFAULT 'UTC',
    created_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (org_id, slug)
);

-- Only a SHA-256 of the key is stored: keys are 190-bit random tokens, so a fast hash is not brute-forceable.
-- ingest keys may sit in a web page and can only write; read keys are server-side secrets.
-- A read key with project_id NULL reads every project of its org.
CREATE TABLE api_keys (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    org_id        uuid NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
    project_id    uuid REFERENCES projects (id) ON DELETE CASCADE,
    kind          text NOT NULL CHECK (kind IN ('ingest', 'read')),
    name          text NOT NULL DEFAULT '',
    key_hash      bytea NOT NULL UNIQUE,
    key_prefix    text NOT NULL,
    rate_per_s    double precision CHECK (rate_per_s > 0),
    burst         double precision CHECK (burst > 0),
    created_at    timestamptz NOT NULL DEFAULT now(),
    last_used_at  timestamptz,
    revoked_at    timestamptz,
    CHECK (kind = 'read' OR project_id IS NOT NULL)
);
CREATE INDEX api_keys_org_idx ON api_keys (org_id);

-- Raw events, range-partitioned by UTC day of event time (partitions events_pYYYYMMDD).
-- The primary key serves time-range scans per project and keyset pagination.
CREATE TABLE events (
    project_id   uuid NOT NULL,
    event_time   timestamptz NOT NULL,
    event_id     uuid NOT NULL,
    org_id       uuid NOT NULL,
    event_name   text NOT NULL,
    distinct_id  text NOT NULL,
    received_at  timestamptz NOT NULL,
    landed_at    timestamptz NOT NULL DEFAULT now(),
    properties   jsonb NOT NULL DEFAULT '{}'::jsonb,
    PRIMARY KEY (project_id, event_time, event_id)
) PARTITION BY RANGE (event_time);

-- One row per (project, event_id), whatever the event time: a retried request whose clock-skew correction
-- moved the event time by a few milliseconds (or across midnight) must still land once. Rows older than raw
-- retention are pruned with the raw partitions; events that old are refused at ingest and landing.
CREATE TABLE event_ids (
    project_id  uuid NOT NULL,
    event_id    uuid NOT NULL,
    event_time  timestamptz NOT NULL,
    PRIMARY KEY (project_id, event_id)
);

-- Which (project, UTC day) received data, with a version bumped by every landing transaction.
-- An aggregate build records the version it saw (same snapshot as the raw rows it read), so
-- version > built_version means exactly "data landed after that day's aggregate was built".
CREATE TABLE landed_days (
    project_id       uuid NOT NULL,
    day              date NOT NULL,
    version          bigint NOT NULL DEFAULT 1,
    events           bigint NOT NULL DEFAULT 0,
    first_landed_at  timestamptz NOT NULL DEFAULT now(),
    last_landed_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (project_id, day)
);
CREATE INDEX landed_days_day_idx ON landed_days (day);

CREATE TABLE aggregate_builds (
    project_id     uuid NOT NULL,
    day            date NOT NULL,
    built_version  bigint NOT NULL,
    built_at       timestamptz NOT NULL DEFAULT now(),
    run_id         text,
    PRIMARY KEY (project_id, day)
);

CREATE VIEW late_days AS
SELECT l.project_id, l.day, l.version, b.built_version, b.built_at, l.last_landed_at
FROM landed_days l
JOIN aggregate_builds b USING (project_id, day)
WHERE l.version > b.built_version;

CREATE TABLE dead_letters (
    id                bigserial PRIMARY KEY,
    dead_at           timestamptz NOT NULL DEFAULT now(),
    reason            text NOT NULL,
    detail            text NOT NULL DEFAULT '',
    org_id            uuid,
    project_id        uuid,
    payload           bytea NOT NULL,
    payload_sha256    bytea NOT NULL,
    source_topic      text NOT NULL,
    source_partition  integer NOT NULL,
    source_offset     bigint NOT NULL,
    -- a redelivered poison message is recorded once; the hash keeps a reset broker's reused offsets apart
    UNIQUE (source_topic, source_partition, source_offset, payload_sha256)
);
CREATE INDEX dead_letters_project_time_idx ON dead_letters (project_id, dead_at);
CREATE INDEX dead_letters_time_idx ON dead_letters (dead_at);

-- Creates the UTC-day partition of events holding `d` if missing. CREATE + ATTACH (not CREATE ... PARTITION
-- OF) takes only SHARE UPDATE EXCLUSIVE on the parent, so landing transactions keep writing meanwhile.
CREATE FUNCTION ensure_events_partition(d date) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    part text := format('events_p%s', to_char(d, 'YYYYMMDD'));
BEGIN
    IF to_regclass(part) IS NOT NULL THEN
        RETURN false;
    END IF;
    PERFORM pg_advisory_xact_lock(hashtext('pulseops.events_partitions'));
    IF to_regclass(part) IS NOT NULL THEN
        RETURN false;
    END IF;
    EXECUTE format('CREATE TABLE %I (LIKE events INCLUDING DEFAULTS INCLUDING CONSTRAINTS)', part);
    EXECUTE format(
        'ALTER TABLE events ATTACH PARTITION %I FOR VALUES FROM (%L) TO (%L)',
        part, (d::timestamp AT TIME ZONE 'UTC'), ((d + 1)::timestamp AT TIME ZONE 'UTC')
    );
    RETURN true;
END
$$;
"""

DOWNGRADE = r"""
DROP FUNCTION IF EXISTS ensure_events_partition(date);
DROP TABLE IF EXISTS dead_letters;
DROP VIEW IF EXISTS late_days;
DROP TABLE IF EXISTS aggregate_builds;
DROP TABLE IF EXISTS landed_days;
DROP TABLE IF EXISTS event_ids;
DROP TABLE IF EXISTS events CASCADE;
DROP TABLE IF EXISTS api_keys;
DROP TABLE IF EXISTS projects;
DROP TABLE IF EXISTS orgs;
"""


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute(DOWNGRADE)
