"""Builders for tenants and keys (plain functions, not fixtures)."""

from __future__ import annotations

import uuid

import psycopg

from warehouse.tenants import create_api_key, ensure_org, ensure_project


def make_tenant(conn: psycopg.Connection, org: str = "acme", project: str = "web") -> dict:
    org_id = ensure_org(conn, org)
    project_id = ensure_project(conn, org_id, project)
    key_id, ingest_key = create_api_key(conn, org_id=org_id, project_id=project_id, kind="ingest")
    read_id, read_key = create_api_key(conn, org_id=org_id, project_id=project_id, kind="read")
    return {
        "org_id": org_id,
        "project_id": project_id,
        "ingest_key": ingest_key,
        "ingest_key_id": key_id,
        "read_key": read_key,
        "read_key_id": read_id,
    }


def new_event(**overrides) -> dict:
    return {"event": "page_view", "distinct_id": "u-1", "event_id": str(uuid.uuid4()), **overrides}
