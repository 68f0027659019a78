"""`pulseops migrate` and `pulseops keys`: the database at head with its day partitions, and API keys."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime

from pulseops.settings import Settings


def migrate(settings: Settings) -> None:
    """Migrate to head, then create the day partitions of the last week and of the days ahead."""
    from warehouse.db import connect
    from warehouse.migrate import upgrade
    from warehouse.partitions import ensure_window

    upgrade(settings.db.url)
    with connect(settings.db.url, autocommit=True) as conn:
        created = ensure_window(
            conn, datetime.now(UTC).date(), back_days=7, ahead_days=settings.warehouse.partitions_ahead_days
        )
    print(f"database migrated to head; {len(created)} day partitions created")


def keys_command(settings: Settings, args: argparse.Namespace) -> None:
    """`keys create|list|revoke`: a key's secret is printed once, at creation; only its hash is stored."""
    from warehouse.db import connect
    from warehouse.tenants import (
        create_api_key,
        ensure_org,
        ensure_project,
        find_org,
        list_api_keys,
        revoke_api_key,
    )

    with connect(settings.db.url, autocommit=True) as conn:
        if args.keys_command == "create":
            if args.kind == "ingest" and not args.project:
                sys.exit("an ingest key needs --project")
            org_id = ensure_org(conn, args.org)
            project_id = ensure_project(conn, org_id, args.project) if args.project else None
            key_id, key = create_api_key(
                conn,
                org_id=org_id,
                project_id=project_id,
                kind=args.kind,
                name=args.name,
                rate_per_s=args.rate,
                burst=args.burst,
            )
            project = project_id if project_id else "all projects of the org (read key)"
            print(f"id:      {key_id}\nkind:    {args.kind}\norg:     {org_id}\nproject: {project}")
            print(f"key:     {key}\n(shown once; only its hash is stored)")
        elif args.keys_command == "list":
            org_id = None
            if args.org:
                org_id = find_org(conn, args.org)
                if org_id is None:
                    sys.exit(f"no org {args.org!r}")
            print(
                f"{'id':36}  {'kind':6}  {'org/project':24}  {'prefix':14}  {'created':19}  {'last used':19}  state"
            )
            for k in list_api_keys(conn, org_id):
                scope = f"{k.org_slug}/{k.project_slug or '*'}"
                print(
                    f"{k.id}  {k.kind:6}  {scope:24}  {k.key_prefix:14}  {_ts(k.created_at):19}  "
                    f"{_ts(k.last_used_at):19}  {'revoked' if k.revoked_at else 'active'}"
                )
        elif args.keys_command == "revoke":
            if not revoke_api_key(conn, args.key_id):
                sys.exit(f"no active key {args.key_id}")
            print(f"revoked {args.key_id} (takes effect within {settings.ingest.key_cache_ttl_s:g}s)")


def _ts(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value else "-"
