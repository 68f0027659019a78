"""Saved dashboards, alert rules and alert firings (the web dashboard, issue 6).

`alert_rules.state` and `last_*` are written by the alert evaluator (`python -m alerting`); a rule
row is locked `FOR UPDATE SKIP LOCKED` while it is evaluated, so two evaluators never fire a rule twice.
Webhook secrets live in `channels` (HMAC needs the secret itself, a hash would not do); the API never
returns them after creation.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-26
"""

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

UPGRADE = r"""
CREATE TABLE dashboards (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    org_id      uuid NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
    project_id  uuid NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    name        text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    panels      jsonb NOT NULL DEFAULT '[]'::jsonb CHECK (jsonb_typeof(panels) = 'array'),
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (project_id, name)
);

CREATE TABLE alert_rules (
    id                 uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    org_id             uuid NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
    project_id         uuid NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    name               text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    metric             text NOT NULL CHECK (metric IN
                           ('events', 'unique_users', 'custom_metric', 'dead_letters', 'seconds_since_last_event')),
    event_name         text,
    metric_id          uuid REFERENCES metric_definitions (id) ON DELETE CASCADE,
    comparison         text NOT NULL CHECK (comparison IN ('gt', 'gte', 'lt', 'lte')),
    threshold          double precision NOT NULL,
    window_s           integer NOT NULL CHECK (window_s BETWEEN 60 AND 604800),
    cooldown_s         integer NOT NULL DEFAULT 3600 CHECK (cooldown_s BETWEEN 0 AND 604800),
    channels           jsonb NOT NULL DEFAULT '[]'::jsonb CHECK (jsonb_typeof(channels) = 'array'),
    enabled            boolean NOT NULL DEFAULT true,
    state              text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'ok', 'firing', 'error')),
    last_value         double precision,
    last_evaluated_at  timestamptz,
    last_fired_at      timestamptz,
    last_error         text NOT NULL DEFAULT '',
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    UNIQUE (project_id, name),
    CHECK ((metric = 'custom_metric') = (metric_id IS NOT NULL))
);
CREATE INDEX alert_rules_due_idx ON alert_rules (last_evaluated_at NULLS FIRST) WHERE enabled;

CREATE TABLE alert_firings (
    id          bigserial PRIMARY KEY,
    rule_id     uuid NOT NULL REFERENCES alert_rules (id) ON DELETE CASCADE,
    project_id  uuid NOT NULL,
    fired_at    timestamptz NOT NULL DEFAULT now(),
    value       double precision NOT NULL,
    threshold   double precision NOT NULL,
    comparison  text NOT NULL,
    window_s    integer NOT NULL,
    -- one entry per channel: {"kind", "target", "ok", "status", "error", "attempts"}
    deliveries  jsonb NOT NULL DEFAULT '[]'::jsonb
);
CREATE INDEX alert_firings_rule_idx ON alert_firings (rule_id, fired_at DESC);
CREATE INDEX alert_firings_project_idx ON alert_firings (project_id, fired_at DESC);
CREATE INDEX dead_letters_project_idx ON dead_letters (project_id, dead_at DESC);
"""

DOWNGRADE = r"""
DROP INDEX IF EXISTS dead_letters_project_idx;
DROP TABLE IF EXISTS alert_firings;
DROP TABLE IF EXISTS alert_rules;
DROP TABLE IF EXISTS dashboards;
"""


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute(DOWNGRADE)
