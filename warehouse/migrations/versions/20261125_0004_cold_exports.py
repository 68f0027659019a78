"""Cold tier: one row per (dataset, project, UTC day) exported to Parquet, with its parity verdict.

Retention may drop a raw day partition only when every project of the day has an `events` export whose
parity check passed (`status = 'verified'`) for the landed version it read (`source_version`): data that
landed after the export makes it stale, and the day is exported again.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

UPGRADE = r"""
CREATE TABLE cold_exports (
    dataset         text NOT NULL CHECK (dataset IN ('events', 'event_rollups', 'daily_aggregates')),
    project_id      uuid NOT NULL,
    day             date NOT NULL,
    rows            bigint NOT NULL,
    -- order-independent sum of a 60-bit hash (of md5) per row, computed identically by PostgreSQL and DuckDB
    checksum        numeric NOT NULL,
    path            text NOT NULL,
    bytes           bigint NOT NULL,
    -- events: landed_days.version read in the export's snapshot; aggregates: aggregate_builds.built_version
    source_version  bigint NOT NULL,
    exported_at     timestamptz NOT NULL DEFAULT now(),
    status          text NOT NULL DEFAULT 'exported' CHECK (status IN ('exported', 'verified', 'failed')),
    verified_at     timestamptz,
    detail          text NOT NULL DEFAULT '',
    PRIMARY KEY (dataset, project_id, day)
);
CREATE INDEX cold_exports_day_idx ON cold_exports (day);
"""

DOWNGRADE = r"""
DROP TABLE IF EXISTS cold_exports;
"""


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute(DOWNGRADE)
