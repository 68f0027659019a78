"""Orgs, projects and API keys. Keys are shown once at creation; only their SHA-256 is stored."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

import psycopg
from psycopg.rows import class_row

KeyKind = Literal["ingest", "read"]
KEY_PREFIX = {"ingest": "po_ingest_", "read": "po_read_"}


def hash_key(key: str) -> bytes:
    """Keys carry 190 random bits, so an unsalted fast hash is safe and lets lookups use an index."""
    return hashlib.sha256(key.encode()).digest()


@dataclass(frozen=True)
class ApiKeyRow:
    id: uuid.UUID
    org_id: uuid.UUID
    project_id: uuid.UUID | None
    kind: str
    name: str
    key_prefix: str
    rate_per_s: float | None
    burst: float | None
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None
    org_slug: str | None = None  # filled by list_api_keys only
    project_slug: str | None = None


@dataclass(frozen=True)
class ProjectRow:
    id: uuid.UUID
    org_id: uuid.UUID
    slug: str
    name: str


def ensure_org(conn: psycopg.Connection, slug: str, name: str | None = None) -> uuid.UUID:
    row = conn.execute(
        """
        INSERT INTO orgs (slug, name) VALUES (%s, %s)
        ON CONFLICT (slug) DO UPDATE SET name = orgs.name
        RETURNING id
        """,
        (slug, name or slug),
    ).fetchone()
    return row[0]


def ensure_project(
    conn: psycopg.Connection, org_id: uuid.UUID, slug: str, name: str | None = None
) -> uuid.UUID:
    row = conn.execute(
        """
        INSERT INTO projects (org_id, slug, name) VALUES (%s, %s, %s)
        ON CONFLICT (org_id, slug) DO UPDATE SET name = projects.name
        RETURNING id
        """,
        (org_id, slug, name or slug),
    ).fetchone()
    return row[0]


def find_org(conn: psycopg.Connection, slug: str) -> uuid.UUID | None:
    row = conn.execute("SELECT id FROM orgs WHERE slug = %s", (slug,)).fetchone()
    return row[0] if row else None


def find_project(conn: psycopg.Connection, org_slug: str, project_slug: str) -> ProjectRow | None:
    with conn.cursor(row_factory=class_row(ProjectRow)) as cur:
        return cur.execute(
            """
            SELECT p.id, p.org_id, p.slug, p.name FROM projects p JOIN orgs o ON o.id = p.org_id
            WHERE o.slug = %s AND p.slug = %s
            """,
            (org_slug, project_slug),
        ).fetchone()


def create_api_key(
    conn: psycopg.Connection,
    *,
    org_id: uuid.UUID,
    project_id: uuid.UUID | None,
    kind: KeyKind,
    name: str = "",
    rate_per_s: float | None = None,
    burst: float | None = None,
) -> tuple[uuid.UUID, str]:
    """Returns (key id, plaintext key). The plaintext is not recoverable afterwards."""
    if kind not in KEY_PREFIX:
        raise ValueError(f"unknown key kind {kind!r}")
    if kind == "ingest" and project_id is None:
        raise ValueError("an ingest key must be bound to one project")
    key = KEY_PREFIX[kind] + secrets.token_urlsafe(24)
    row = conn.execute(
        """
        INSERT INTO api_keys (org_id, project_id, kind, name, key_hash, key_prefix, rate_per_s, burst)
        VALUES (%s, %s, %s, %s, %s, %s, %s, %s) RETURNING id
        """,
        (org_id, project_id, kind, name, hash_key(key), key[: len(KEY_PREFIX[kind]) + 4], rate_per_s, burst),
    ).fetchone()
    return row[0], key


def lookup_api_key(conn: psycopg.Connection, key: str) -> ApiKeyRow | None:
    """The active (not revoked) key row for a plaintext key, or None."""
    with conn.cursor(row_factory=class_row(ApiKeyRow)) as cur:
        return cur.execute(
            f"SELECT {_KEY_COLUMNS} FROM api_keys k WHERE key_hash = %s AND revoked_at IS NULL",  # noqa: S608 - constant column list
            (hash_key(key),),
        ).fetchone()


def list_api_keys(conn: psycopg.Connection, org_id: uuid.UUID | None = None) -> list[ApiKeyRow]:
    with conn.cursor(row_factory=class_row(ApiKeyRow)) as cur:
        return cur.execute(
            f"SELECT {_KEY_COLUMNS}, o.slug AS org_slug, p.slug AS project_slug FROM api_keys k "  # noqa: S608 - constant column list
            "JOIN orgs o ON o.id = k.org_id LEFT JOIN projects p ON p.id = k.project_id "
            "WHERE %(org)s::uuid IS NULL OR k.org_id = %(org)s ORDER BY k.created_at",
            {"org": org_id},
        ).fetchall()


def revoke_api_key(conn: psycopg.Connection, key_id: uuid.UUID) -> bool:
    row = conn.execute(
        "UPDATE api_keys SET revoked_at = now() WHERE id = %s AND revoked_at IS NULL RETURNING id", (key_id,)
    ).fetchone()
    return row is not None


def touch_api_keys(conn: psycopg.Connection, key_ids: list[uuid.UUID]) -> None:
    """Record last use; callers batch this (at most once a minute per key) to keep it off the hot path."""
    if key_ids:
        conn.execute("UPDATE api_keys SET last_used_at = now() WHERE id = ANY(%s)", (key_ids,))


_KEY_COLUMNS = (
    "k.id, k.org_id, k.project_id, k.kind, k.name, k.key_prefix, k.rate_per_s, k.burst, k.created_at, "
    "k.last_used_at, k.revoked_at"
)


def readable_projects(
    conn: psycopg.Connection, org_id: uuid.UUID, project_id: uuid.UUID | None
) -> list[tuple[uuid.UUID, uuid.UUID, str, str, str, str]]:
    """(id, org_id, slug, name, org slug, timezone) of the projects a read key may read: its org's, or only
    its own project when the key is bound to one."""
    return conn.execute(
        """
        SELECT p.id, p.org_id, p.slug, p.name, o.slug, p.timezone
        FROM projects p JOIN orgs o ON o.id = p.org_id
        WHERE p.org_id = %s AND (%s::uuid IS NULL OR p.id = %s) ORDER BY o.slug, p.slug
        """,
        (org_id, project_id, project_id),
    ).fetchall()


def key_active(conn: psycopg.Connection, key_id: uuid.UUID) -> bool:
    """False once the key is revoked (or gone): long-lived streams re-check their key with this."""
    row = conn.execute("SELECT revoked_at IS NULL FROM api_keys WHERE id = %s", (key_id,)).fetchone()
    return bool(row and row[0])
