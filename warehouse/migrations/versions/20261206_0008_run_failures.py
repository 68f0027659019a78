"""Orchestration failures: one row per (job, UTC day) whose last Dagster run(s) did not bring the day up to
date, written by the sensors (orchestration/sensors.py) and read by the pipeline page and /metrics.

`data_key` names the data the failed runs covered (the day's landed versions, definitions stamp): a run that
fails again for the same key counts one more failure and backs off exponentially; after the last allowed
attempt `next_attempt_at` is NULL (given up until the data changes). A later successful run deletes the row.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06
"""

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

UPGRADE = r"""
CREATE TABLE run_failures (
    job              text NOT NULL,
    day              date NOT NULL,
    data_key         text NOT NULL,
    failures         integer NOT NULL,
    first_failed_at  timestamptz NOT NULL,
    last_failed_at   timestamptz NOT NULL,
    next_attempt_at  timestamptz,
    last_run_id      text,
    last_error       text,
    PRIMARY KEY (job, day)
);
"""

DOWNGRADE = r"""
DROP TABLE IF EXISTS run_failures;
"""


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute(DOWNGRADE)
