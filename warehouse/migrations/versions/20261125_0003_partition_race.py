"""ensure_events_partition: safe when several workers create the same day at once.

The advisory lock of 0001 did not help: a session's catalog snapshot does not see a table another session
committed meanwhile, so the re-check after the lock still missed it (DuplicateTable under concurrency).
SHARE UPDATE EXCLUSIVE on `events` (what ATTACH takes anyway) serialises creators, and a duplicate_table
error is treated as "someone else created it".

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

FUNCTION = r"""
CREATE OR REPLACE FUNCTION ensure_events_partition(d date) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    part text := format('events_p%s', to_char(d, 'YYYYMMDD'));
BEGIN
    IF to_regclass(part) IS NOT NULL THEN
        RETURN false;
    END IF;
    LOCK TABLE events IN SHARE UPDATE EXCLUSIVE MODE;
    IF to_regclass(part) IS NOT NULL THEN
        RETURN false;
    END IF;
    EXECUTE format('CREATE TABLE %I (LIKE events INCLUDING DEFAULTS INCLUDING CONSTRAINTS)', part);
    EXECUTE format(
        'ALTER TABLE events ATTACH PARTITION %I FOR VALUES FROM (%L) TO (%L)',
        part, (d::timestamp AT TIME ZONE 'UTC'), ((d + 1)::timestamp AT TIME ZONE 'UTC')
    );
    RETURN true;
EXCEPTION WHEN duplicate_table THEN
    RETURN false;
END
$$;
"""

PREVIOUS = r"""
CREATE OR REPLACE FUNCTION ensure_events_partition(d date) RETURNS boolean
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


def upgrade() -> None:
    op.execute(FUNCTION)


def downgrade() -> None:
    op.execute(PREVIOUS)
