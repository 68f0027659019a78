"""Index on events (project_id, event_name, event_time, event_id) for recentEvents filtered by event name.

Why: `recentEvents(eventNames: [...])` (api/graphql/events/queries.py -> `warehouse.reads.explore.recent_events`) had only the primary key
(project_id, event_time, event_id) to serve it, so it read the day's rows newest-first (or all of them) and
dropped every other name: with 1.2 million rows of another name in today's partition one page of a rare name
read the whole partition (~0.3-0.5 s a query), and the 202 -> visible p95 of benchmarks/freshness.py grew with
the day. With this index a page of one name reads only that name's rows. Created on the partitioned parent as
in 0005: every partition, present and future (ATTACH in `ensure_events_partition` builds it on the new
partition), gets one.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06
"""

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        "CREATE INDEX IF NOT EXISTS events_name_time_idx ON events (project_id, event_name, event_time, event_id)"
    )


def downgrade() -> None:
    op.execute("DROP INDEX IF EXISTS events_name_time_idx")
