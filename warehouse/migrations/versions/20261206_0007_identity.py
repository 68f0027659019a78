"""Identity: links between distinct ids of a project, the person each id belongs to, person properties.

A person is a connected component of linked ids. `identity_persons` materialises it for every id that is part
of a link: person_id = the smallest id of the component (byte order), so the mapping is a pure function of the
set of links, whatever order they arrive in, and a late link that merges two persons relabels the smaller
side's rows in the same transaction that lands it. Ids in no link are persons of their own (no row).
`person_properties` keeps per id and key the last `$set` and the first `$set_once` (by event time, then
event id), merged over the person's ids when read. `identity_versions` moves when links or properties change
(the GraphQL cache key of person counts) and its row lock serialises identity writes of one project.
warehouse/identity.py writes all four inside the landing transaction.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06
"""

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

UPGRADE = r"""
-- One row per unordered pair: id_a < id_b in byte order, so a link and its reverse are the same row.
CREATE TABLE identity_links (
    project_id  uuid NOT NULL,
    id_a        text NOT NULL,
    id_b        text NOT NULL,
    kind        text NOT NULL CHECK (kind IN ('identify', 'alias')),
    -- the earliest event (by event time, then id) that made the link
    event_id    uuid NOT NULL,
    event_time  timestamptz NOT NULL,
    linked_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (project_id, id_a, id_b),
    CHECK (id_a COLLATE "C" < id_b COLLATE "C")
);

CREATE TABLE identity_persons (
    project_id   uuid NOT NULL,
    distinct_id  text NOT NULL,
    person_id    text NOT NULL,
    PRIMARY KEY (project_id, distinct_id)
);
CREATE INDEX identity_persons_person_idx ON identity_persons (project_id, person_id);

CREATE TABLE person_properties (
    project_id   uuid NOT NULL,
    distinct_id  text NOT NULL,
    key          text NOT NULL,
    set_value    jsonb,
    set_at       timestamptz,
    set_event    uuid,
    once_value   jsonb,
    once_at      timestamptz,
    once_event   uuid,
    PRIMARY KEY (project_id, distinct_id, key)
);

CREATE TABLE identity_versions (
    project_id  uuid PRIMARY KEY,
    links       bigint NOT NULL DEFAULT 0,
    properties  bigint NOT NULL DEFAULT 0,
    updated_at  timestamptz NOT NULL DEFAULT now()
);
"""

DOWNGRADE = r"""
DROP TABLE IF EXISTS identity_versions;
DROP TABLE IF EXISTS person_properties;
DROP TABLE IF EXISTS identity_persons;
DROP TABLE IF EXISTS identity_links;
"""


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute(DOWNGRADE)
