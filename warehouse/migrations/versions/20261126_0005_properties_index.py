"""GIN index on events.properties (jsonb_path_ops) for the API's property filters.

Equality and IN filters compile to `properties @> '{"key": value}'`, which this index serves; jsonb_path_ops
is smaller and faster for containment than the default jsonb_ops (which would also serve `?`, a rarely
selective operator here). Created on the partitioned parent: every partition, present and future, gets one.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26
"""

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        "CREATE INDEX IF NOT EXISTS events_properties_gin ON events USING gin (properties jsonb_path_ops)"
    )


def downgrade() -> None:
    op.execute("DROP INDEX IF EXISTS events_properties_gin")
